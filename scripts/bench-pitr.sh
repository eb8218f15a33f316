#!/usr/bin/env bash
# Benchmark (not a test): continuous backup of one cluster under a steady
# load of 1 KiB puts, at each rate given (default 100 and 1000 writes/s).
# Per rate it prints: the recovery point (now minus the newest restorable
# point, sampled every second from /metrics) p50/p99, omni's CPU (share of
# one core) and RSS while it watches, bytes of delta segments per hour, and
# the time of a point-in-time restore to the last write (full backup +
# replay of everything the load wrote).
#   scripts/bench-pitr.sh [SECONDS] [RATE...]      (default 60 s; 100 1000)
# With DESTROY=1 the etcd is SIGKILLed at a random moment of the load
# instead, and it prints what was lost: the acknowledged writes after the
# newest restorable point, and the time between the last acknowledged
# write and that point (the test only checks that nothing omni reported as
# stored is lost). PROFILE=dev runs debug builds (no release build needed).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-60}"; shift || true
RATES=("${@:-100 1000}"); RATES=(${RATES[@]})
eval "$(scripts/setup-test-deps.sh)"
PROFILE="${PROFILE:-release}"; DESTROY="${DESTROY:-}"
dir=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
cargo build --profile "$PROFILE" -q -p omni -p omnictl --bins
cargo build --profile "$PROFILE" -q -p omni-backup --example pitr_load
OMNI=target/$dir/omni
OMNICTL=target/$dir/omnictl
LOAD=target/$dir/examples/pitr_load
ETCD=$OMNI_TEST_ETCD_BIN
ETCDCTL=$OMNI_TEST_ETCDCTL_BIN
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

for RATE in "${RATES[@]}"; do
  d="$work/r$RATE"; mkdir -p "$d"
  cport=$(free_port); pport=$(free_port); oport=$(free_port)
  "$ETCD" --name b0 --data-dir "$d/etcd" --listen-client-urls "http://127.0.0.1:$cport" \
    --advertise-client-urls "http://127.0.0.1:$cport" --listen-peer-urls "http://127.0.0.1:$pport" \
    --initial-advertise-peer-urls "http://127.0.0.1:$pport" --initial-cluster "b0=http://127.0.0.1:$pport" \
    --quota-backend-bytes $((4 * 1024 * 1024 * 1024)) >"$d/etcd.log" 2>&1 &
  etcd_pid=$!; pids+=("$etcd_pid")
  ep="http://127.0.0.1:$cport"
  for _ in $(seq 100); do "$ETCDCTL" --endpoints "$ep" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
  "$OMNI" --data-dir "$d/omni" --bind "127.0.0.1:$oport" --etcd-bin "$ETCD" --etcdutl-bin "$OMNI_TEST_ETCDUTL_BIN" \
    --etcd-backup-drill-dir "$d/drills" --etcd-backup-drill-timeout 30m >"$d/omni.log" 2>&1 &
  omni_pid=$!; pids+=("$omni_pid")
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$oport/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  export OMNICTL_ENDPOINT="http://127.0.0.1:$oport" OMNICTL_TOKEN="$(cat "$d/omni/admin-token")"
  cat > "$d/cluster.yaml" <<YAML
metadata: {type: Machines.omni.sidero.dev, id: b0}
spec: {etcdendpoints: ["$ep"]}
---
metadata:
  type: MachineSetNodes.omni.sidero.dev
  id: b0
  labels: {omni.sidero.dev/cluster: bench, omni.sidero.dev/machine-set: bench-control-planes, omni.sidero.dev/role-controlplane: ""}
spec: {}
---
metadata: {type: Clusters.omni.sidero.dev, id: bench}
spec:
  kubernetesversion: 1.28.2
  talosversion: 1.5.5
  backupconfiguration:
    interval: {seconds: 3600, nanos: 0}
    continuous: true
YAML
  "$OMNICTL" apply -f "$d/cluster.yaml" >/dev/null
  points() { curl -fsS -H "Authorization: Bearer $OMNICTL_TOKEN" "$OMNICTL_ENDPOINT/api/v1/etcd-restore-points/bench"; }
  for _ in $(seq 300); do points 2>/dev/null | grep -q '"newest":{' && break; sleep 0.2; done
  rss_idle=$(rss_kib "$omni_pid")
  c0=$(cpu_ticks "$omni_pid"); t0=$(date +%s.%N)
  "$LOAD" "$ep" "$RATE" "$SECS" > "$d/load.out" &
  load_pid=$!
  if [ -n "$DESTROY" ]; then
    # A moment between 30 % and 90 % of the load, not chosen by anyone.
    at=$(python3 -c "import random; print(round($SECS * random.uniform(0.3, 0.9), 2))")
    (sleep "$at"; kill -9 "$etcd_pid") &
  fi
  : > "$d/rpo"; rss_max=0
  while kill -0 "$load_pid" 2>/dev/null; do
    curl -fsS -H "Authorization: Bearer $OMNICTL_TOKEN" "$OMNICTL_ENDPOINT/metrics" \
      | awk '/^omni_continuous_recovery_point_seconds\{cluster="bench"\}/ {print $2}' >> "$d/rpo" || true
    r=$(rss_kib "$omni_pid"); [ "$r" -gt "$rss_max" ] && rss_max=$r
    sleep 1
  done
  wait "$load_pid"
  c1=$(cpu_ticks "$omni_pid"); t1=$(date +%s.%N)
  if [ -n "$DESTROY" ]; then
    # The chain ends after storing what it received; then the full backup
    # a new chain needs is tried, and fails with etcd gone.
    for _ in $(seq 600); do
      "$OMNICTL" get etcdbackupstatus bench -o json 2>/dev/null | grep -q '"status": 2' && break; sleep 0.2
    done
    points | python3 -c '
import json, re, sys
from datetime import datetime
load = open(sys.argv[1]).read()
rate = int(sys.argv[2])
last = int(re.search(r"last_revision=(\d+)", load).group(1))
ack = int(re.search(r"last_ack_ms=(\d+)", load).group(1)) / 1000
n = json.load(sys.stdin)["newest"]
rev = n["revision"]
point = datetime.fromisoformat(n["time"].replace("Z", "+00:00")).timestamp()
print(f"{rate:5d} writes/s, etcd destroyed: last acknowledged write rev {last}, newest restorable rev {rev}: "
      f"{max(0, last - rev)} revisions lost; last acknowledged write {ack - point:+.2f} s after the newest restorable point")
' "$d/load.out" "$RATE"
    kill "$omni_pid" 2>/dev/null || true; wait "$omni_pid" 2>/dev/null || true
    rm -rf "$d"; continue
  fi
  last=$(sed -n 's/.*last_revision=\([0-9]*\).*/\1/p' "$d/load.out")
  for _ in $(seq 600); do
    rev=$(points | python3 -c 'import json,sys; n=json.load(sys.stdin)["newest"]; print(n["revision"] if n else 0)')
    [ "$rev" -ge "$last" ] && break; sleep 0.2
  done
  bytes=$(points | python3 -c 'import json,sys; print(sum(c["bytes"] for c in json.load(sys.stdin)["chains"]))')
  rs=$(date +%s.%N)
  "$OMNICTL" etcd-backup download --cluster bench --to-revision "$last" -o "$d/pitr.db" > "$d/restore.out"
  re=$(date +%s.%N)
  replayed=$(sed -n 's/.*plus \([0-9]*\) revisions.*/\1/p' "$d/restore.out")
  python3 - "$RATE" "$SECS" "$d/rpo" "$c0" "$c1" "$t0" "$t1" "$ticks" "$rss_idle" "$rss_max" "$bytes" "$rs" "$re" "$replayed" <<'PY'
import sys
rate, secs, rpo_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c0, c1, t0, t1, ticks = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]), int(sys.argv[8])
rss_idle, rss_max, stored = int(sys.argv[9]), int(sys.argv[10]), int(sys.argv[11])
rs, re, replayed = float(sys.argv[12]), float(sys.argv[13]), int(sys.argv[14] or 0)
rpo = sorted(float(l) for l in open(rpo_file) if l.strip())
q = lambda p: rpo[min(len(rpo) - 1, int(p * len(rpo)))] if rpo else float("nan")
cpu = (c1 - c0) / ticks / (t1 - t0) * 100
print(f"{rate:5d} writes/s for {secs}s: recovery point p50 {q(0.5):5.1f} s p99 {q(0.99):5.1f} s | "
      f"omni CPU {cpu:5.1f} % of a core, RSS {rss_idle/1024:5.1f} -> {rss_max/1024:5.1f} MiB | "
      f"deltas {stored/1048576:7.1f} MiB = {stored/1048576*3600/secs:8.1f} MiB/h | "
      f"restore to the last write: {re-rs:5.1f} s ({replayed} revisions replayed)")
PY
  kill "$omni_pid" "$etcd_pid" 2>/dev/null || true; wait "$omni_pid" "$etcd_pid" 2>/dev/null || true
  rm -rf "$d"
done
