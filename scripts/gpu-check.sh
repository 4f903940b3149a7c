#!/usr/bin/env bash
# One prepared GPU check for a session lent a GPU (a few minutes): CUDA float32 and float16 rendering against CPU
# float32 on the demo model and a 256-px / 512-channel random network, and the GPU's throughput, as JSON.
#
#   scripts/gpu-check.sh [OUTPUT]     # OUTPUT: a file or folder (default: $OUT if set, else the current folder)
#
# Uses .venv/bin/python where it exists and imports torch, else $PYTHON or python3 with this checkout on the path
# (a GPU machine's own CUDA build of torch). Without a GPU it says so, writes that into the JSON and exits 0.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="${1:-${OUT:-.}}"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$root/.venv/bin/python" ]] && "$root/.venv/bin/python" -c "import torch" 2>/dev/null; then
        python="$root/.venv/bin/python"
    else
        python="python3"
    fi
fi
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -c "import sys; from cli.main import main; sys.argv[0] = 'atelier'; main()" bench gpu --out "$target"
