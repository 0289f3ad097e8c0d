# raftq-etcd image built from source: etcd for development and tests (cmd/raftq-etcd: etcd's embedded server).
# Needs network (pulls golang and Go modules). From the repository root:
#
#   docker build -f docker/raftq-etcd.Dockerfile -t raftq/raftq-etcd .
#
# Offline, make docker builds the same image from host-built binaries
# (docker/raftq-etcd.local.Dockerfile).
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries: a scratch image has no libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/raftq-etcd ./cmd/raftq-healthcheck
# /etc/passwd, /etc/group, CA certificates, /data, /tmp (same script as make docker).
RUN sh scripts/docker-rootfs.sh /rootfs

FROM scratch
COPY --from=build /rootfs/etc/ /etc/
COPY --chown=65532:65532 --from=build /rootfs/data/ /data/
COPY --from=build /rootfs/tmp/ /tmp/
COPY --from=build /out/raftq-etcd /out/raftq-healthcheck /usr/local/bin/
# Not root: uid 65532 owns /data.
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
EXPOSE 2379 2380
# The Go binary is PID 1: it handles SIGTERM itself (graceful shutdown).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/raftq-healthcheck", "http", "http://127.0.0.1:2379/health"]
ENTRYPOINT ["/usr/local/bin/raftq-etcd"]
# Default: one member named etcd, reached as etcd:2379 on a compose network.
CMD ["--name=etcd", "--data-dir=/data", "--listen-client=0.0.0.0:2379", "--advertise-client=http://etcd:2379", "--listen-peer=0.0.0.0:2380", "--advertise-peer=http://etcd:2380", "--initial-cluster=etcd=http://etcd:2380"]
