#!/usr/bin/env bash
# Builds promtool (github.com/prometheus/prometheus/cmd/promtool) once into
# the user cache dir where internal/promcheck looks for it, so the metrics
# tests of brokerd, svcd and workerd run the real `promtool check metrics`.
# Idempotent: does nothing when the binary is already built. The first build
# takes a few minutes (a large module); the Go build cache makes later ones
# fast. Keep VERSION equal to promcheck.Version.
set -euo pipefail
VERSION=v0.316.0
dir="${XDG_CACHE_HOME:-$HOME/.cache}/raftq/promtool/$VERSION"
if [ -x "$dir/promtool" ]; then
  exit 0
fi
mkdir -p "$dir"
cd "$dir"
GOBIN="$dir" GOFLAGS=-mod=mod GOWORK=off go install "github.com/prometheus/prometheus/cmd/promtool@$VERSION"
"$dir/promtool" --version >/dev/null
echo "promtool $VERSION built into $dir"
