#!/usr/bin/env bash
# docker-multistage-check.sh [NAME...] — builds the multi-stage Dockerfiles
# (docker/NAME.Dockerfile, the ones for hosts that can pull golang) with no
# registry, to check them here: a stand-in builder image is made FROM
# scratch out of busybox (Debian's busybox-static), this host's Go and its
# module cache (served to the build as a file GOPROXY), and passed as
# GO_IMAGE. Each image is built, started, waited on until healthy (if it
# has a healthcheck and a default command that runs alone), and removed.
# Slow (every image compiles from scratch inside docker build): not part of
# make docker-test; run it after changing a Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(brokerd svcd workerd brokerctl raftq-etcd)
export DOCKER_BUILDKIT=0
builder=raftq-local/gobuilder:$(go env GOVERSION)

if ! docker image inspect "$builder" >/dev/null 2>&1; then
  command -v busybox >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null; }
  # Make sure the module cache holds everything go.mod needs.
  go mod download
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  mkdir -p "$ctx/bin" "$ctx/etc/ssl/certs"
  cp "$(command -v busybox)" "$ctx/bin/busybox"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/etc/ssl/certs/"
  cp -a "$(go env GOROOT)" "$ctx/go"
  cp -a "$(go env GOMODCACHE)/cache/download" "$ctx/goproxy"
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY bin/busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY etc/ /etc/
COPY go/ /usr/local/go/
COPY goproxy/ /goproxy/
ENV PATH=/usr/local/go/bin:/bin GOPROXY=file:///goproxy GOSUMDB=off GOTOOLCHAIN=local HOME=/root GOPATH=/root/go
RUN mkdir -p /tmp /root && chmod 1777 /tmp
DOCKERFILE
  echo "multistage-check: making the stand-in builder $builder"
  docker build -q -t "$builder" "$ctx" >"$ctx/build.log" 2>&1 || { cat "$ctx/build.log" >&2; exit 1; }
fi

for n in "${names[@]}"; do
  img=raftq-multistage-check/$n
  echo "multistage-check: docker build -f docker/$n.Dockerfile (GO_IMAGE=$builder)"
  log=$(mktemp)
  # The legacy builder warns on every build: show its output on failure only.
  docker build -q --build-arg GO_IMAGE="$builder" -f "docker/$n.Dockerfile" -t "$img" . >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; exit 1; }
  rm -f "$log"
  if [ "$(docker inspect "$img" --format '{{if .Config.Healthcheck}}{{index .Config.Healthcheck.Test 0}}{{end}}')" = CMD ] && [ "$n" != workerd ]; then
    c=$(docker run -d "$img")
    state=starting
    for _ in $(seq 60); do
      state=$(docker inspect "$c" --format '{{.State.Health.Status}}')
      [ "$state" = starting ] || break
      sleep 1
    done
    docker rm -f -v "$c" >/dev/null
    [ "$state" = healthy ] || { echo "multistage-check: $n: $state" >&2; exit 1; }
  fi
  docker rmi "$img" >/dev/null
  # The legacy builder leaves the build stage (1.5 GB) as an untagged image:
  # remove the untagged images made from the stand-in builder since.
  docker images -q -f dangling=true -f since="$builder" | xargs -r docker rmi >/dev/null 2>&1 || true
  echo "multistage-check: $n OK"
done
