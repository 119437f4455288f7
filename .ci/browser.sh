#!/usr/bin/env bash
# Install Debian's Chromium for tests/test_report_browser.py (the HTML report opened headless,
# network off). No browser download: the Debian package only. Idempotent; the lead's .ci/run
# calls it before the tests. In CI (CI=true) the browser test fails instead of skipping when
# /usr/bin/chromium is missing, so this must have run.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version 2>/dev/null | grep -v '^\[' || true
