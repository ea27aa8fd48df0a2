#!/bin/sh
# Debian's chromium for the dashboard's browser tests: installed when missing (needs root).
set -eu
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "ensure-chromium: chromium is missing; run as root: apt-get update && apt-get install -y chromium" >&2
    exit 1
fi
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
command -v chromium >/dev/null
