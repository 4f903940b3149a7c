#!/usr/bin/env bash
# Install Debian's chromium (when missing) for the end-to-end browser test (tests/test_browser*.py).
# Playwright drives this system browser through executable_path=/usr/bin/chromium; no browser download.
#
# Idempotent: when /usr/bin/chromium exists it only prints its version. Runs as root on Debian 12.
set -euo pipefail

if [ ! -x /usr/bin/chromium ]; then
    echo "browser.sh: installing chromium" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi

/usr/bin/chromium --version
