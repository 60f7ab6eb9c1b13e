#!/usr/bin/env bash
# Make sure Debian's Chromium is installed for the Playwright browser tests (tests/test_viz_browser.py).
# Playwright's own browser download does not work offline, so the tests launch this one by path.
# Skips apt when a Chromium is already there; fails loudly when none can be installed.
set -euo pipefail

find_chromium() {
    local c
    for c in "${CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
        if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
    done
    return 1
}

if path=$(find_chromium); then
    echo "setup-browser: using $path" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-browser: ERROR: no Chromium found and no apt-get to install it." \
         "Install Chromium and set CHROMIUM=/path/to/chromium." >&2
    exit 1
fi
as_root=()
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    else
        echo "setup-browser: ERROR: Chromium is missing and installing it needs root (apt-get install chromium)." >&2
        exit 1
    fi
fi
echo "setup-browser: installing chromium with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
for attempt in 1 2; do
    if ${as_root[@]+"${as_root[@]}"} apt-get update -qq && ${as_root[@]+"${as_root[@]}"} apt-get install -y -qq chromium >/dev/null; then
        break
    fi
    if [ "$attempt" = 2 ]; then
        echo "setup-browser: ERROR: apt-get could not install chromium (see the messages above)." >&2
        exit 1
    fi
    sleep 5
done
if ! path=$(find_chromium); then
    echo "setup-browser: ERROR: apt-get finished but no chromium executable is on the usual paths." >&2
    exit 1
fi
echo "setup-browser: installed $path" >&2
