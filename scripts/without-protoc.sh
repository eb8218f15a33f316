#!/usr/bin/env bash
# Runs a command as on a machine without protoc: PROTOC unset and a PATH
# that finds no protoc, whatever is installed. No privileges needed: PATH
# becomes one directory of links to every other program on the old PATH.
#   scripts/without-protoc.sh cargo build --workspace
set -euo pipefail

farm=$(mktemp -d "${TMPDIR:-/tmp}/omni-no-protoc.XXXXXX")
trap 'rm -rf "$farm"' EXIT
IFS=: read -ra dirs <<<"$PATH"
for dir in "${dirs[@]}"; do
  [ -d "$dir" ] || continue
  for f in "$dir"/*; do
    name=${f##*/}
    # First on PATH wins, as in a PATH lookup.
    if [ "$name" != protoc ] && [ -x "$f" ] && [ ! -e "$farm/$name" ]; then
      ln -s "$f" "$farm/$name"
    fi
  done
done
if PATH=$farm command -v protoc >/dev/null 2>&1; then
  echo "without-protoc: protoc still on PATH" >&2
  exit 1
fi
# Not exec: the trap removes the farm afterwards.
PATH=$farm env -u PROTOC "$@"
