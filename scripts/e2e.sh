#!/usr/bin/env bash
# Runs the Playwright specs in e2e/ against Debian's Chromium, installing it
# when missing (Playwright's own browser download does not work here).
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s nullglob
specs=(e2e/*.spec.ts)
if [ ${#specs[@]} -eq 0 ]; then
  echo "e2e: no specs"
  exit 0
fi
CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  echo "e2e: installing Debian's chromium (apt-get)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
export CHROMIUM_PATH="$CHROMIUM"
# The coordinator serves web-client/dist: build it from the current sources.
node scripts/build-web-client.mjs
exec npx playwright test --config e2e/playwright.config.ts "$@"
