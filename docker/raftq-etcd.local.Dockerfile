# raftq-etcd image, offline build: etcd for development and tests (cmd/raftq-etcd: etcd's embedded server).
#
# make docker (scripts/docker-build.sh) compiles static binaries on the host
# (CGO_ENABLED=0) and prepares this build context, bin/docker/raftq-etcd/:
#   raftq-etcd raftq-healthcheck
#   etc/   passwd and group (user raftq, 65532), ssl/certs/ca-certificates.crt
#   data/ tmp/
# so no image has to be pulled. docker/raftq-etcd.Dockerfile builds the same
# image from source for those who can pull golang.
FROM scratch
COPY etc/ /etc/
COPY --chown=65532:65532 data/ /data/
COPY tmp/ /tmp/
COPY raftq-etcd raftq-healthcheck /usr/local/bin/
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
