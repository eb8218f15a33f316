#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis (PyPI),
# bounded in time: any 5xx or crash fails the run. Installs schemathesis into
# a cached virtualenv on first use. Needs the debug omni binary (built by test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${OMNI_CACHE_DIR:-$HOME/.cache/omni-rs}"
VENV="$CACHE/venv"
MAX_TIME="${OMNI_FUZZ_SECONDS:-90}"
if [ ! -x "$VENV/bin/schemathesis" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'schemathesis>=4,<5'
fi
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
OMNI_BIN="${CARGO_TARGET_DIR:-target}/debug/omni"
[ -x "$OMNI_BIN" ] || { echo "fuzz-api: $OMNI_BIN missing; run cargo build --workspace --bins" >&2; exit 1; }
"$OMNI_BIN" --data-dir "$work/data" --bind "127.0.0.1:$port" --state memory \
  --api-rate-limit 100000 --api-rate-burst 100000 >"$work/omni.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
ready=0
for _ in $(seq 300); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && { ready=1; break; }
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  echo "fuzz-api: omni did not become ready; log:" >&2
  cat "$work/omni.log" >&2
  exit 1
fi
token=$(cat "$work/data/admin-token")
status=0
# schemathesis keeps a cache in the working directory; keep it out of the repo.
(cd "$work" && "$VENV/bin/schemathesis" run "http://127.0.0.1:$port/openapi.json" \
  -H "Authorization: Bearer $token" \
  --checks not_a_server_error \
  --max-time "$MAX_TIME" --workers 2 --seed 42 \
  --suppress-health-check all \
  --warnings off) || status=$?
if ! kill -0 $pid 2>/dev/null; then
  echo "fuzz-api: omni died during the run; log:" >&2
  tail -50 "$work/omni.log" >&2
  exit 1
fi
if grep -q "panicked" "$work/omni.log"; then
  echo "fuzz-api: omni panicked:" >&2
  grep -A5 panicked "$work/omni.log" >&2
  exit 1
fi
exit $status
