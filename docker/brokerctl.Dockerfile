# brokerctl image built from source: the raftq command-line tool.
# Needs network (pulls golang and Go modules). From the repository root:
#
#   docker build -f docker/brokerctl.Dockerfile -t raftq/brokerctl .
#
# Offline, make docker builds the same image from host-built binaries
# (docker/brokerctl.local.Dockerfile).
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries: a scratch image has no libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/brokerctl
# /etc/passwd, /etc/group, CA certificates, /data, /tmp (same script as make docker).
RUN sh scripts/docker-rootfs.sh /rootfs

FROM scratch
COPY --from=build /rootfs/etc/ /etc/
COPY --from=build /rootfs/tmp/ /tmp/
COPY --from=build /out/brokerctl /usr/local/bin/
ENV RAFTQ_BROKERS=brokerd1:7101,brokerd2:7101,brokerd3:7101
# Not root.
USER 65532:65532
# The Go binary is PID 1: it handles SIGTERM itself (graceful shutdown).
STOPSIGNAL SIGTERM
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/brokerctl"]
# docker run --rm --network NET raftq/brokerctl enqueue --payload hi
CMD ["status"]
