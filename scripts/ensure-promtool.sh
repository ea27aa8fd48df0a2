#!/bin/sh
# promtool (lints the Prometheus exposition in the tests): Debian's `prometheus` package when
# missing (needs root); else `go install` of Prometheus' cmd/promtool from the Go module proxy.
set -eu
if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -q || true
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; then
        # the package starts a Prometheus server where an init system runs: the tests need only promtool
        command -v promtool >/dev/null && exit 0
    fi
fi
if command -v go >/dev/null 2>&1; then
    echo "ensure-promtool: no Debian package; trying go install (Go module proxy)" >&2
    GOBIN="${GOBIN:-$(go env GOPATH)/bin}"
    GOBIN="$GOBIN" go install github.com/prometheus/prometheus/cmd/promtool@v0.42.0
    echo "ensure-promtool: installed $GOBIN/promtool; put $GOBIN on PATH" >&2
    [ -x "$GOBIN/promtool" ] && exit 0
fi
echo "ensure-promtool: promtool is missing; run as root: apt-get update && apt-get install -y prometheus" >&2
exit 1
