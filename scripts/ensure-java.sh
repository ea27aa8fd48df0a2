#!/usr/bin/env bash
# Make sure Java 17+ and Maven are installed: the local Kafka broker runs on Java and its jars
# come from Maven Central. Installs Debian's packages when missing and we are root; otherwise
# says what to install.
set -euo pipefail

java_major() {
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\)\(\.\([0-9]*\)\)\{0,1\}.*/\1 \3/p' | head -n1 |
    awk '{ if ($1 == 1) print $2; else print $1 }'
}

need=()
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then
  need+=(openjdk-17-jre-headless)
fi
command -v mvn >/dev/null 2>&1 || need+=(maven)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} (for the local Kafka broker)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "axmon's local Kafka broker needs: ${need[*]}" >&2
  echo "install them (e.g. sudo apt-get install ${need[*]}), or use Docker:" >&2
  echo "  docker compose up -d kafka   and pass --bootstrap 127.0.0.1:9092" >&2
  exit 1
fi
