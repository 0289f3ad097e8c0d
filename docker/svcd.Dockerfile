# svcd image built from source: the raftq results service.
# Needs network (pulls golang and Go modules). From the repository root:
#
#   docker build -f docker/svcd.Dockerfile -t raftq/svcd .
#
# Offline, make docker builds the same image from host-built binaries
# (docker/svcd.local.Dockerfile).
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries: a scratch image has no libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/svcd ./cmd/raftq-healthcheck
# /etc/passwd, /etc/group, CA certificates, /data, /tmp (same script as make docker).
RUN sh scripts/docker-rootfs.sh /rootfs

FROM scratch
COPY --from=build /rootfs/etc/ /etc/
COPY --chown=65532:65532 --from=build /rootfs/data/ /data/
COPY --from=build /rootfs/tmp/ /tmp/
COPY --from=build /out/svcd /out/raftq-healthcheck /usr/local/bin/
# Not root: uid 65532 owns /data.
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
EXPOSE 7400 7401
# The Go binary is PID 1: it handles SIGTERM itself (graceful shutdown).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/raftq-healthcheck", "grpc", "127.0.0.1:7400", "raftq.v1.Results"]
ENTRYPOINT ["/usr/local/bin/svcd"]
# Default: SQLite in the /data volume. For PostgreSQL pass
# --db=postgres --dsn=... (deploy/compose.yaml, profile prod).
CMD ["--listen-grpc=0.0.0.0:7400", "--listen-http=0.0.0.0:7401", "--db=sqlite", "--data-dir=/data"]
