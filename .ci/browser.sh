#!/usr/bin/env bash
# Install Debian's chromium and DejaVu Sans (when missing) for the end-to-end browser test (tests/test_browser*.py)
# and the σ labels of review strips (tests/test_strips.py).
# Playwright drives this system browser through executable_path=/usr/bin/chromium; no browser download.
#
# Idempotent: when both are there it only prints chromium's version. Runs as root on Debian 12.
set -euo pipefail

if [ ! -x /usr/bin/chromium ] || [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
    echo "browser.sh: installing chromium and fonts-dejavu-core" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi

/usr/bin/chromium --version
