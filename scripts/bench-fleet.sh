#!/usr/bin/env bash
# Benchmark (not a test): one `omni` (release build, local store) managing N
# clusters, each one Machine + one MachineSetNode + one Cluster, all members
# on one small real etcd. The fleet is applied first without schedules (so
# no backup runs during the apply), then every cluster gets its automatic
# backup interval at once. Prints the apply time and server CPU (from
# /proc/PID/stat), CPU per applied resource, CPU per cluster for its first
# backup,
# idle CPU over a quiet window, RSS, the skew of the second round of
# automatic backups (actual start minus due), and the latency to list all
# backup statuses.
#   scripts/bench-fleet.sh N [--interval SECONDS] [--idle SECONDS] [--idle-delay SECONDS]
#       [--state-etcd] [--bin-dir DIR] [-- extra omni flags...]
# --state-etcd starts a second etcd for omni's own state and replaces
# {state_etcd} in the extra flags with its client URL, e.g.
#   scripts/bench-fleet.sh 1000 --state-etcd -- --state etcd --state-etcd-endpoints {state_etcd}
# --bin-dir runs prebuilt omni/omnictl (e.g. an older build to compare).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:?usage: scripts/bench-fleet.sh N [options] [-- omni flags]}"
shift
bin_dir=""
py_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --) shift; break ;;
    *) py_args+=("$1"); shift ;;
  esac
done
eval "$(scripts/setup-test-deps.sh)"
if [ -z "$bin_dir" ]; then
  cargo build --release -q --bin omni
  bin_dir=target/release
fi
exec python3 scripts/bench_fleet.py --n "$N" --omni "$bin_dir/omni" \
  --etcd "$OMNI_TEST_ETCD_BIN" --etcdctl "$OMNI_TEST_ETCDCTL_BIN" ${py_args[@]+"${py_args[@]}"} -- "$@"
