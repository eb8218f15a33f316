#!/usr/bin/env bash
# The one test command: installs what the tests need (idempotent, cached under
# ~/.cache/omni-rs), builds the binaries the end-to-end tests drive, and runs
# every test in the workspace against real etcd and a real S3 server.
set -euo pipefail
cd "$(dirname "$0")/.."
# The build needs no protoc of the machine's (.cargo/config.toml finds one):
# prove it first, with PROTOC unset and none on PATH, and keep omnictl free of
# the etcd/gRPC/S3 stack that brought the need.
scripts/test-apt-mirror.sh
scripts/without-protoc.sh .cargo/protoc --version >/dev/null
scripts/without-protoc.sh cargo build --workspace --bins
omnictl_tree=$(cargo tree -p omnictl -e normal,build --prefix none)
if heavy=$(grep -E '^(etcd-client|tonic|tonic-[a-z-]+|prost|prost-[a-z-]+|object_store|protoc-bin-vendored[a-z0-9_-]*) ' <<<"$omnictl_tree"); then
  echo "omnictl must build without protoc, but its dependency tree has:" >&2
  sort -u <<<"$heavy" >&2
  exit 1
fi
eval "$(scripts/setup-test-deps.sh)"
export OMNI_TEST_ETCD_BIN OMNI_TEST_ETCDCTL_BIN OMNI_TEST_ETCDUTL_BIN OMNI_TEST_S3S_BIN
export OMNI_TEST_PROMTOOL_BIN
export OMNI_TEST_CHROMEDRIVER OMNI_TEST_CHROMIUM
# Bounded fuzzing of the HTTP API from its OpenAPI document: no 5xx, no panic.
scripts/fuzz-api.sh
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast "$@"
fi
