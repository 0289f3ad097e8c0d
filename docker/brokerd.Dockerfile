# brokerd image built from source: one raftq broker node (Raft + the gRPC API).
# Needs network (pulls golang and Go modules). From the repository root:
#
#   docker build -f docker/brokerd.Dockerfile -t raftq/brokerd .
#
# Offline, make docker builds the same image from host-built binaries
# (docker/brokerd.local.Dockerfile).
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries: a scratch image has no libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/brokerd ./cmd/raftq-healthcheck
# /etc/passwd, /etc/group, CA certificates, /data, /tmp (same script as make docker).
RUN sh scripts/docker-rootfs.sh /rootfs

FROM scratch
COPY --from=build /rootfs/etc/ /etc/
COPY --chown=65532:65532 --from=build /rootfs/data/ /data/
COPY --from=build /rootfs/tmp/ /tmp/
COPY --from=build /out/brokerd /out/raftq-healthcheck /usr/local/bin/
# Not root: uid 65532 owns /data.
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
EXPOSE 7101 7201
# The Go binary is PID 1: it handles SIGTERM itself (graceful shutdown).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/raftq-healthcheck", "grpc", "127.0.0.1:7101", "raftq.v1.Broker"]
ENTRYPOINT ["/usr/local/bin/brokerd"]
# Default: a single-node cluster (docker run -p 7101:7101 raftq/brokerd).
# deploy/compose.yaml passes the flags of a 3-node cluster instead.
CMD ["--id=n1", "--data-dir=/data", "--raft-addr=127.0.0.1:7201", "--grpc-addr=0.0.0.0:7101", "--grpc-advertise=127.0.0.1:7101", "--bootstrap-expect=1", "--peers=n1=127.0.0.1:7201"]
