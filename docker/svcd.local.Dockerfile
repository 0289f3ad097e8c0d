# svcd image, offline build: the raftq results service.
#
# make docker (scripts/docker-build.sh) compiles static binaries on the host
# (CGO_ENABLED=0) and prepares this build context, bin/docker/svcd/:
#   svcd raftq-healthcheck
#   etc/   passwd and group (user raftq, 65532), ssl/certs/ca-certificates.crt
#   data/ tmp/
# so no image has to be pulled. docker/svcd.Dockerfile builds the same
# image from source for those who can pull golang.
FROM scratch
COPY etc/ /etc/
COPY --chown=65532:65532 data/ /data/
COPY tmp/ /tmp/
COPY svcd raftq-healthcheck /usr/local/bin/
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
