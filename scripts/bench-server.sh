#!/usr/bin/env bash
# Benchmark (not a test): one backup of a db of a few hundred MiB through the
# real `omni` server (release build, local store), side by side with
# `etcdctl snapshot save` to disk in the same run. Prints MB/s for both and
# the server's peak RSS (VmHWM) before and after the backup.
#   scripts/bench-server.sh [MiB]      (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
MIB="${1:-200}"
eval "$(scripts/setup-test-deps.sh)"
cargo build --release -q --bins
OMNI=target/release/omni
OMNICTL=target/release/omnictl
ETCD=$OMNI_TEST_ETCD_BIN
ETCDCTL=$OMNI_TEST_ETCDCTL_BIN
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cport=$(free_port); pport=$(free_port); oport=$(free_port)
"$ETCD" --name b0 --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$cport" \
  --advertise-client-urls "http://127.0.0.1:$cport" --listen-peer-urls "http://127.0.0.1:$pport" \
  --initial-advertise-peer-urls "http://127.0.0.1:$pport" --initial-cluster "b0=http://127.0.0.1:$pport" \
  --quota-backend-bytes $((8 * 1024 * 1024 * 1024)) >"$work/etcd.log" 2>&1 &
etcd_pid=$!
omni_pid=""
cleanup() { kill $etcd_pid ${omni_pid:+$omni_pid} 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ep="http://127.0.0.1:$cport"
for _ in $(seq 100); do "$ETCDCTL" --endpoints "$ep" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done

# Values: 1 MiB each, half random and half zeros (about 50 % compressible).
python3 - "$MIB" > "$work/values" <<'PY'
import os, sys
for _ in range(int(sys.argv[1])):
    sys.stdout.write(os.urandom(384 * 1024).hex()[:512 * 1024] + "0" * (512 * 1024) + "\n")
PY
i=0
while IFS= read -r v; do
  "$ETCDCTL" --endpoints "$ep" put "/bench/$i" -- "$v" >/dev/null 2>&1 || { printf '%s' "$v" | "$ETCDCTL" --endpoints "$ep" put "/bench/$i" >/dev/null; }
  i=$((i + 1))
done < "$work/values"

start=$(date +%s.%N)
"$ETCDCTL" --endpoints "$ep" snapshot save "$work/plain.db" >/dev/null 2>&1
end=$(date +%s.%N)
size=$(stat -c %s "$work/plain.db")
python3 -c "s=$size/1048576; t=$end-$start; print(f'etcdctl snapshot save   {s:7.1f} MiB in {t:5.2f} s = {s/t:6.1f} MiB/s')"

"$OMNI" --data-dir "$work/omni" --bind "127.0.0.1:$oport" --etcd-backup-tick 1s >"$work/omni.log" 2>&1 &
omni_pid=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$oport/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
export OMNICTL_ENDPOINT="http://127.0.0.1:$oport" OMNICTL_TOKEN="$(cat "$work/omni/admin-token")"
cat > "$work/cluster.yaml" <<YAML
metadata: {type: Machines.omni.sidero.dev, id: b0}
spec: {etcdendpoints: ["$ep"]}
---
metadata:
  type: MachineSetNodes.omni.sidero.dev
  id: b0
  labels: {omni.sidero.dev/cluster: bench, omni.sidero.dev/role-controlplane: ""}
spec: {}
---
metadata: {type: Clusters.omni.sidero.dev, id: bench}
spec: {}
YAML
"$OMNICTL" apply -f "$work/cluster.yaml" >/dev/null
sleep 1
rss() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$omni_pid/status"; }
before=$(rss VmHWM)
printf 'metadata: {type: EtcdManualBackups.omni.sidero.dev, id: bench}\nspec: {backupat: {seconds: %s, nanos: 0}}\n' "$(date +%s)" > "$work/backup.yaml"
start=$(date +%s.%N)
"$OMNICTL" apply -f "$work/backup.yaml" >/dev/null
until "$OMNICTL" get etcdbackupstatus bench -o json 2>/dev/null | grep -q '"status": [12]'; do sleep 0.05; done
end=$(date +%s.%N)
"$OMNICTL" get etcdbackupstatus bench -o json | grep -q '"status": 1' || { echo "backup failed:"; "$OMNICTL" get etcdbackupstatus bench -o yaml; exit 1; }
after=$(rss VmHWM)
stored=$(du -sb "$work/omni/backups" | cut -f1)
python3 -c "s=$size/1048576; t=$end-$start; print(f'omni backup (server)    {s:7.1f} MiB in {t:5.2f} s = {s/t:6.1f} MiB/s, stored {$stored/1048576:.1f} MiB')"
echo "omni peak RSS (VmHWM): $((before / 1024)) MiB before the backup, $((after / 1024)) MiB after"
