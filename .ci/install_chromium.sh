#!/usr/bin/env bash
# Install Debian's chromium for the report's browser test (tests/report/test_browser.py).
# Never fails the CI run: when it cannot install, it says why and the test skips.
set -u
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    echo "chromium already installed: $(command -v chromium || command -v chromium-browser)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium: no apt-get here; the browser test will skip"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install_chromium: not root and no passwordless sudo; the browser test will skip"
        exit 0
    fi
fi
if $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; then
    echo "chromium installed: $(command -v chromium)"
else
    echo "install_chromium: apt-get install chromium failed; the browser test will skip"
fi
exit 0
