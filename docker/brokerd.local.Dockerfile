# brokerd image, offline build: one raftq broker node (Raft + the gRPC API).
#
# make docker (scripts/docker-build.sh) compiles static binaries on the host
# (CGO_ENABLED=0) and prepares this build context, bin/docker/brokerd/:
#   brokerd raftq-healthcheck
#   etc/   passwd and group (user raftq, 65532), ssl/certs/ca-certificates.crt
#   data/ tmp/
# so no image has to be pulled. docker/brokerd.Dockerfile builds the same
# image from source for those who can pull golang.
FROM scratch
COPY etc/ /etc/
COPY --chown=65532:65532 data/ /data/
COPY tmp/ /tmp/
COPY brokerd raftq-healthcheck /usr/local/bin/
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
