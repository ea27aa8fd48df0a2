#!/bin/sh
# PostgreSQL 15 (the tests start one in a temporary directory): Debian's `postgresql` package
# when its initdb is missing (needs root). Quiet and quick when it is there.
set -eu
INITDB=/usr/lib/postgresql/15/bin/initdb
if [ -x "$INITDB" ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -q || true
    # the package starts a cluster where an init system runs: the tests start their own
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
    [ -x "$INITDB" ] && exit 0
fi
echo "ensure-postgres: $INITDB is missing; run as root: apt-get update && apt-get install -y postgresql" >&2
exit 1
