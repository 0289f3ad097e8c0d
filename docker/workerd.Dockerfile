# workerd image built from source: the raftq worker daemon with its built-in job types.
# Needs network (pulls golang and Go modules). From the repository root:
#
#   docker build -f docker/workerd.Dockerfile -t raftq/workerd .
#
# Offline, make docker builds the same image from host-built binaries
# (docker/workerd.local.Dockerfile).
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries: a scratch image has no libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/workerd ./cmd/raftq-healthcheck
# /etc/passwd, /etc/group, CA certificates, /data, /tmp (same script as make docker).
RUN sh scripts/docker-rootfs.sh /rootfs

FROM scratch
COPY --from=build /rootfs/etc/ /etc/
COPY --from=build /rootfs/tmp/ /tmp/
COPY --from=build /out/workerd /out/raftq-healthcheck /usr/local/bin/
# Not root.
USER 65532:65532
EXPOSE 9102
# The Go binary is PID 1: it handles SIGTERM itself (graceful shutdown).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/raftq-healthcheck", "http", "http://127.0.0.1:9102/metrics"]
ENTRYPOINT ["/usr/local/bin/workerd"]
# The HEALTHCHECK reads /metrics: keep --metrics-addr on port 9102 when
# overriding the command.
CMD ["--brokers=brokerd1:7101,brokerd2:7101,brokerd3:7101", "--queues=default:8", "--metrics-addr=0.0.0.0:9102"]
