#!/usr/bin/env bash
# Install Debian's chromium and chromium-driver for the browser tests (tests/ui) when they are missing.
# It never fails the caller: when the install fails it says why, and the browser tests then FAIL with
# that reason (they never skip).
set -u
have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }
if have; then
  echo "browser: $(chromium --version 2>/dev/null | head -1); chromedriver at $(command -v chromedriver)"
  exit 0
fi
echo "browser: chromium or chromedriver missing; installing Debian's chromium and chromium-driver ..."
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
log="$(mktemp)"
if command -v apt-get >/dev/null 2>&1 \
   && $SUDO apt-get update -qq >"$log" 2>&1 \
   && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >>"$log" 2>&1 && have; then
  echo "browser: installed $(chromium --version 2>/dev/null | head -1)"
else
  echo "browser: could not install chromium/chromium-driver (the browser tests will fail):"
  tail -5 "$log"
fi
rm -f "$log"
exit 0
