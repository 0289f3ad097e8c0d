#!/usr/bin/env bash
# docker-build.sh — builds raftq's container images with no registry: the
# binaries are compiled on the host as static executables (CGO_ENABLED=0),
# each image's build context is prepared under bin/docker/NAME/, and
# docker/NAME.local.Dockerfile turns it into an image FROM scratch.
#
#   scripts/docker-build.sh [NAME...]   # default: every image
#
# Images: raftq/brokerd raftq/workerd raftq/svcd raftq/brokerctl
# raftq/raftq-etcd, tagged $RAFTQ_TAG (default latest). Idempotent: Go and
# Docker caches make a rebuild with no change quick.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
TAG=${RAFTQ_TAG:-latest}
all=(brokerd workerd svcd brokerctl raftq-etcd)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")

if ! docker info >/dev/null 2>&1; then
  echo "docker-build: no Docker engine answers (docker info failed)" >&2
  exit 1
fi

out=bin/docker
mkdir -p "$out/bin"
# One go build for every binary: packages shared between them compile once.
pkgs=(./cmd/raftq-healthcheck)
for n in "${names[@]}"; do
  [ -f "docker/$n.local.Dockerfile" ] || { echo "docker-build: unknown image $n (have: ${all[*]})" >&2; exit 2; }
  pkgs+=("./cmd/$n")
done
echo "docker-build: go build (static) ${pkgs[*]}"
# --version: the same stamp as make build (internal/version).
vpkg=github.com/raftq/raftq/internal/version
stamp="-X $vpkg.Version=$(git describe --tags --always --dirty 2>/dev/null) -X $vpkg.Commit=$(git rev-parse HEAD 2>/dev/null)"
CGO_ENABLED=0 "$GO" build -trimpath -ldflags="-s -w $stamp" -o "$out/bin/" "${pkgs[@]}"

for n in "${names[@]}"; do
  ctx="$out/$n"
  rm -rf "$ctx"
  mkdir -p "$ctx"
  scripts/docker-rootfs.sh "$ctx"
  # Hard links when possible: the context is only read by docker build.
  ln "$out/bin/$n" "$ctx/$n" 2>/dev/null || cp "$out/bin/$n" "$ctx/$n"
  ln "$out/bin/raftq-healthcheck" "$ctx/raftq-healthcheck" 2>/dev/null || cp "$out/bin/raftq-healthcheck" "$ctx/raftq-healthcheck"
  echo "docker-build: raftq/$n:$TAG"
  # The legacy builder (no buildx here) warns on every build; show its
  # output only when the build fails.
  if ! DOCKER_BUILDKIT=0 docker build -q -f "docker/$n.local.Dockerfile" -t "raftq/$n:$TAG" \
    --label "org.opencontainers.image.source=https://github.com/raftq/raftq" \
    --label "org.opencontainers.image.revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$ctx" >"$out/build-$n.log" 2>&1; then
    cat "$out/build-$n.log" >&2
    exit 1
  fi
done
# A rebuild leaves the image it replaced untagged: drop those (only ours).
docker image prune -f --filter "label=org.opencontainers.image.source=https://github.com/raftq/raftq" >/dev/null
docker images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep '^raftq/' | sort
