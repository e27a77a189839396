#!/usr/bin/env bash
# Installs the system packages the tests need (PostgreSQL and Redis servers,
# from Debian's packages) when they are missing. Needs root or sudo; on other
# systems it says what to install and exits 1.
set -euo pipefail

have_pg() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; }
have_redis() { command -v redis-server >/dev/null 2>&1; }
have_go() { command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ]; }

missing=()
have_pg || missing+=(postgresql)
have_redis || missing+=(redis-server)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: missing ${missing[*]}; install PostgreSQL and Redis with your package manager (the tests start their own instances on loopback)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup: missing ${missing[*]}; run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
echo "setup: installing ${missing[*]} from Debian packages" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages start system-wide services; the tests run their own instances, so stop those.
$SUDO service postgresql stop >/dev/null 2>&1 || true
$SUDO service redis-server stop >/dev/null 2>&1 || true
have_go || echo "setup: note: no Go toolchain found; the Temporal CLI must then be on PATH or in TEMPORAL_CLI_PATH" >&2
