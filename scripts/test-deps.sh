#!/usr/bin/env bash
# What the test suite needs beyond pip: a system Chromium and its driver, for report.html's browser test.
# Installs them with apt-get when they are missing and this is a Debian/Ubuntu machine where we may;
# elsewhere it says what is missing and carries on (that one test then skips, except under CI=true).
set -uo pipefail
if command -v chromedriver >/dev/null && { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then
    exit 0
fi
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null \
        && exit 0
fi
echo "scripts/test-deps.sh: no system Chromium + chromedriver here (Debian: apt-get install chromium chromium-driver);" \
     "the report.html browser test will skip" >&2
exit 0
