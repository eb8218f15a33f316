#!/usr/bin/env bash
# Checks scripts/apt-debian-mirror.sh against made-up apt configurations.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
passed=0 failed=0

# case NAME WANT (empty: must fail) then files as PATH=CONTENT pairs
case_() {
  local name=$1 want=$2 dir="$root/$1" got rc
  shift 2
  mkdir -p "$dir/sources.list.d"
  while [ $# -gt 0 ]; do
    printf '%s\n' "${1#*=}" >"$dir/${1%%=*}"
    shift
  done
  got=$(scripts/apt-debian-mirror.sh "$dir" 2>"$dir.err"); rc=$?
  if { [ -n "$want" ] && [ "$rc" = 0 ] && [ "$got" = "$want" ]; } ||
     { [ -z "$want" ] && [ "$rc" != 0 ] && [ -z "$got" ] && grep -q "no Debian archive" "$dir.err"; }; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAIL $name: want '${want:-<error>}', got '$got' (exit $rc): $(cat "$dir.err")" >&2
  fi
}

case_ deb822 "http://mirror.example/pub/debian" "sources.list.d/debian.sources=Types: deb
# a comment
URIs: http://mirror.example/pub/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main"

case_ security-first "https://archive.example/d" "sources.list.d/debian.sources=Types: deb
URIs: https://security.example/ds
Suites: trixie-security
Components: main

Types: deb-src deb
URIs: https://archive.example/d https://other.example/d
Suites: trixie
Components: main"

case_ one-line "http://apt-cache.example:3142/debian" "sources.list=# deb http://commented.example/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://apt-cache.example:3142/debian bookworm main non-free-firmware
deb http://security.example/debian-security bookworm-security main"

case_ skips-third-party "http://ftp.example/debian" "sources.list.d/a.list=deb https://vendor.example/apt cloud-sdk-bookworm main
deb https://vendor2.example/repo bookworm stable" "sources.list.d/b.sources=Types: deb
URIs: https://nodes.example/node_20.x
Suites: nodistro
Components: main

Types: deb
URIs: http://disabled.example/debian
Suites: sid
Components: main
Enabled: no

Types: deb
URIs: http://ftp.example/debian
Suites: stable
Components: main"

case_ deb-src-only "" "sources.list=deb-src http://src.example/debian bookworm main"
case_ only-security "" "sources.list.d/s.sources=Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main"
case_ nothing ""

echo "apt mirror: $passed passed, $failed failed"
[ "$failed" = 0 ]
