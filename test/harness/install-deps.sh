#!/usr/bin/env bash
# Owns: installing the Debian packages that `npm run sandbox` and the integration harness
# need. The README lists the same packages, one line each; keep the two in step.
#   python3-keystone            Keystone itself: keystone-manage and the WSGI application
#   keystone                    Debian's service packaging around it; never started
#   uwsgi-core                  the server the harness runs Keystone in
#   uwsgi-plugin-python3        its Python 3 plugin, which loads Keystone
#   postgresql                  Keystone's database (a private cluster per run)
#   python3-psycopg2            Keystone's PostgreSQL driver
#   memcached                   Keystone's cache and the regions' shared tier
#   python3-keystonemiddleware  the reference the edge's headers are compared with
#   python3-openstackclient     a real client of the edge's Identity face
#   tempest                     Keystone's own API tests, run through the Identity face
#   chromium                    the status page test (headless, through playwright-core)
#   prometheus                  promtool for the alert rules, and a real Prometheus
# Idempotent: does nothing when everything is already installed.
#
# Usage: test/harness/install-deps.sh [--check]
#   --check  only report; exit 0 when all packages are installed, 1 otherwise.
#
# Services shipped by these packages (postgresql, memcached, keystone) must not
# be left running by the install: the harness starts its own throwaway
# instances on free loopback ports. When no policy-rc.d is present we install a
# temporary one that denies service starts (exit 101) and remove it afterwards.
set -euo pipefail

PACKAGES=(
  python3-keystone
  keystone
  python3-keystonemiddleware
  memcached
  uwsgi-core
  uwsgi-plugin-python3
  postgresql
  python3-psycopg2
  python3-openstackclient
  tempest
  chromium
  prometheus
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
  if [[ "$status" != "installed" ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all harness packages are installed"
  exit 0
fi

echo "install-deps: missing packages: ${missing[*]}" >&2
if [[ "${1:-}" == "--check" ]]; then
  exit 1
fi

if [[ "$(id -u)" -ne 0 ]]; then
  echo "install-deps: must run as root to install: ${missing[*]}" >&2
  echo "install-deps: run: sudo $0   (or install them with apt-get yourself)" >&2
  exit 1
fi

policy=/usr/sbin/policy-rc.d
temp_policy=0
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\n# temporary: installed by keystone-edge install-deps.sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  temp_policy=1
fi
cleanup() {
  if [[ "$temp_policy" -eq 1 ]]; then
    rm -f "$policy"
  fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"

# Belt and braces: if a service we just installed got started anyway (e.g. a
# pre-existing policy-rc.d allowed it), stop it so the Debian default instance
# does not hold well-known ports. Services that were installed before this run
# are left alone.
if command -v service >/dev/null 2>&1; then
  for svc in postgresql memcached keystone; do
    if [[ " ${missing[*]} " == *" $svc "* ]]; then
      service "$svc" stop >/dev/null 2>&1 || true
    fi
  done
fi

echo "install-deps: installed ${missing[*]}"
