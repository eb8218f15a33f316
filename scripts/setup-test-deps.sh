#!/usr/bin/env bash
# Installs what the test suite needs, idempotently: etcd 3.5 + etcdctl +
# etcdutl and promtool (from Debian trixie, unpacked into a cache dir),
# s3s-fs 0.14.1 (a real S3 server, built with cargo install --locked), age
# and zstd, and
# chromium + chromedriver (the console's browser tests). Not protoc:
# the build finds its own (.cargo/config.toml).
# Fast when everything is already present. Prints the env lines tests read.
set -euo pipefail

CACHE="${OMNI_CACHE_DIR:-$HOME/.cache/omni-rs}"
mkdir -p "$CACHE"
log() { echo "setup: $*" >&2; }

apt_updated=0
apt_update_once() {
  if [ "$apt_updated" = 0 ]; then
    apt-get update -qq >/dev/null
    apt_updated=1
  fi
}

# --- age and zstd: open a backup without omni, as a user would -----------
missing=()
command -v age >/dev/null 2>&1 || missing+=(age)
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt_update_once
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- headless Chromium and chromedriver: the console's browser tests --------
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  log "installing chromium and chromium-driver"
  apt_update_once
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# --- Debian trixie packages, unpacked (not installed) into a cache dir -----
# debian_unpack DIR PKG...: downloads the packages from the machine's own
# Debian archive (the helper says why when there is none) and unpacks them
# into DIR, replacing it whole so a half-done fetch never counts.
debian_unpack() {
  local dir=$1 mirror tmp opts deb
  shift
  mirror=$("$(dirname "$0")/apt-debian-mirror.sh")
  tmp=$(mktemp -d)
  mkdir -p "$tmp/lists/partial" "$tmp/archives/partial"
  echo "deb [trusted=yes] $mirror trixie main" >"$tmp/sources.list"
  opts=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o "Dir::Etc::SourceParts=-"
        -o "Dir::State::Lists=$tmp/lists" -o "APT::Get::List-Cleanup=0"
        -o "Acquire::Check-Valid-Until=false")
  apt-get "${opts[@]}" update -qq >/dev/null
  (cd "$tmp" && apt-get "${opts[@]}" download "$@" >/dev/null)
  rm -rf "$dir.new" && mkdir -p "$dir.new"
  for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$dir.new"; done
  rm -rf "$dir" "$tmp" && mv "$dir.new" "$dir"
}

# --- etcd 3.5 from trixie -------------------------------------------------
ETCD_DIR="$CACHE/etcd"
if [ ! -x "$ETCD_DIR/usr/bin/etcd" ] || [ ! -x "$ETCD_DIR/usr/bin/etcdutl" ]; then
  log "fetching etcd-server/etcd-client from trixie"
  debian_unpack "$ETCD_DIR" etcd-server etcd-client
fi

# --- promtool: checks the shipped alert rules and a live /metrics scrape.
# Since trixie Debian ships it apart from the prometheus package. ----------
PROM_DIR="$CACHE/promtool"
if [ ! -x "$PROM_DIR/usr/bin/promtool" ]; then
  log "fetching promtool from trixie"
  debian_unpack "$PROM_DIR" promtool
fi

# --- s3s-fs ----------------------------------------------------------------
S3_ROOT="$CACHE/s3s-fs"
if [ ! -x "$S3_ROOT/bin/s3s-fs" ]; then
  log "building s3s-fs 0.14.1 (cargo install --locked, one-off)"
  cargo install --locked --quiet s3s-fs --version 0.14.1 --features binary --root "$S3_ROOT" \
    || cargo install --locked --quiet s3s-fs --version 0.14.1 --root "$S3_ROOT"
fi

cat <<ENV
export OMNI_TEST_ETCD_BIN=$ETCD_DIR/usr/bin/etcd
export OMNI_TEST_ETCDCTL_BIN=$ETCD_DIR/usr/bin/etcdctl
export OMNI_TEST_ETCDUTL_BIN=$ETCD_DIR/usr/bin/etcdutl
export OMNI_TEST_S3S_BIN=$S3_ROOT/bin/s3s-fs
export OMNI_TEST_PROMTOOL_BIN=$PROM_DIR/usr/bin/promtool
export OMNI_TEST_CHROMEDRIVER=$(command -v chromedriver)
export OMNI_TEST_CHROMIUM=$(command -v chromium)
ENV
