#!/usr/bin/env bash
# Installs the system packages the tests need, from Debian's packages, when
# they are missing: PostgreSQL and Redis servers, Chromium (the Web UI tests
# drive it headless through playwright-core; no browser is downloaded) and
# Prometheus (promtool checks the metrics endpoints; prometheus scrapes a
# worker for the dashboard test) and nginx (the compose front door's config
# runs for real in test/compose/nginx.test.ts). One apt-get install for all of them, and
# apt-get update only when something is missing: a second run does nothing.
# Needs root or sudo; on other systems it says what to install and exits 1.
set -euo pipefail

have_pg() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; }
have_redis() { command -v redis-server >/dev/null 2>&1; }
have_chromium() { [ -x /usr/bin/chromium ]; }
have_prometheus() { [ -x /usr/bin/promtool ] && [ -x /usr/bin/prometheus ]; }
have_nginx() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }
have_go() { command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ]; }

missing=()
have_pg || missing+=(postgresql)
have_redis || missing+=(redis-server)
have_chromium || missing+=(chromium)
have_prometheus || missing+=(prometheus)
have_nginx || missing+=(nginx)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: missing ${missing[*]} (Debian package names); install PostgreSQL, Redis, Chromium (at /usr/bin/chromium, or set CHROMIUM_PATH), Prometheus with promtool, and nginx with your package manager (the tests start their own instances on loopback)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup: missing ${missing[*]}; run as root: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi
echo "setup: installing ${missing[*]} from Debian packages" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages start system-wide services; the tests run their own instances, so stop those.
for service in postgresql redis-server prometheus prometheus-node-exporter nginx; do
  $SUDO service "$service" stop >/dev/null 2>&1 || true
done
have_go || echo "setup: note: no Go toolchain found; the Temporal CLI must then be on PATH or in TEMPORAL_CLI_PATH" >&2
