#!/usr/bin/env bash
# The one test command: installs what the tests need (idempotent, cached under
# ~/.cache/omni-rs), builds the binaries the end-to-end tests drive, and runs
# every test in the workspace against real etcd and a real S3 server.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/setup-test-deps.sh)"
export PROTOC OMNI_TEST_ETCD_BIN OMNI_TEST_ETCDCTL_BIN OMNI_TEST_ETCDUTL_BIN OMNI_TEST_S3S_BIN
export OMNI_TEST_CHROMEDRIVER OMNI_TEST_CHROMIUM
cargo build --workspace --bins
# Bounded fuzzing of the HTTP API from its OpenAPI document: no 5xx, no panic.
scripts/fuzz-api.sh
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
  cargo test --workspace --doc
else
  cargo test --workspace --no-fail-fast "$@"
fi
