#!/usr/bin/env bash
# Benchmark (not a test): backup and restore of one real 3-member etcd 3.5
# filled with MIB MiB of ~3:1 compressible values, side by side in one run on
# the same etcd and the same S3 server (s3s-fs):
#   C   etcd's snapshot stream thrown away (the ceiling etcd sets)
#   A   etcdctl snapshot save to a file
#   B   etcdctl snapshot save + zstd -T0 + aws s3 cp (the users' script)
#   ours  a manual backup into S3 through omni's API, request to status ok
# and both restores (aws s3 cp + zstd -d + etcdutl vs omnictl etcd-backup
# restore). Medians of --runs, ratios, CPU seconds per GB of snapshot per
# process, peak RSS (VmHWM) of omni and omnictl.
#   scripts/bench-backup.sh MIB [--runs N] [--perf FILE] [--perf-restore PREFIX]
#                          [--restore-only] [--bin-dir DIR] [--keep] [-- omni flags...]
# With perf installed, one extra untimed backup runs under `perf record -g`
# and omni's CPU s/GB by stage is printed (snapshot read, zstd, age, hash,
# upload); --perf FILE keeps that recording.
# --perf-restore adds one untimed restore under perf (omni, omnictl, etcdutl).
# --restore-only times the backup paths once, the restores --runs times.
# --bin-dir runs prebuilt omni/omnictl/snapshot_null (e.g. an older build).
# Needs MIB x 3 (members) x ~2 (WAL) of free disk under $TMPDIR, plus snapshots.
# The aws CLI is taken from PATH, else installed from PyPI into the cache dir.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB="${1:?usage: scripts/bench-backup.sh MIB [options] [-- omni flags]}"
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
CACHE="${OMNI_CACHE_DIR:-$HOME/.cache/omni-rs}"
aws_bin=$(command -v aws || true)
if [ -z "$aws_bin" ]; then
  if [ ! -x "$CACHE/awscli/bin/aws" ]; then
    echo "bench: installing awscli from PyPI into $CACHE/awscli" >&2
    python3 -m venv "$CACHE/awscli"
    "$CACHE/awscli/bin/pip" install -q awscli
  fi
  aws_bin="$CACHE/awscli/bin/aws"
fi
if [ -z "$bin_dir" ]; then
  cargo build --release -q --bin omni --bin omnictl
  cargo build --release -q -p omni-backup --example snapshot_null
  bin_dir=target/release
  null_bin=target/release/examples/snapshot_null
else
  null_bin="$bin_dir/snapshot_null"
  [ -x "$null_bin" ] || null_bin=target/release/examples/snapshot_null
fi
exec python3 scripts/bench_backup.py --mib "$MIB" --omni "$bin_dir/omni" --omnictl "$bin_dir/omnictl" \
  --snapshot-null "$null_bin" --etcd "$OMNI_TEST_ETCD_BIN" --etcdctl "$OMNI_TEST_ETCDCTL_BIN" \
  --etcdutl "$OMNI_TEST_ETCDUTL_BIN" --s3s "$OMNI_TEST_S3S_BIN" --aws "$aws_bin" \
  ${py_args[@]+"${py_args[@]}"} -- "$@"
