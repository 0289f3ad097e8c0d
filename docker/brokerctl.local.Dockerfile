# brokerctl image, offline build: the raftq command-line tool.
#
# make docker (scripts/docker-build.sh) compiles static binaries on the host
# (CGO_ENABLED=0) and prepares this build context, bin/docker/brokerctl/:
#   brokerctl
#   etc/   passwd and group (user raftq, 65532), ssl/certs/ca-certificates.crt
#   data/ tmp/
# so no image has to be pulled. docker/brokerctl.Dockerfile builds the same
# image from source for those who can pull golang.
FROM scratch
COPY etc/ /etc/
COPY tmp/ /tmp/
COPY brokerctl /usr/local/bin/
ENV RAFTQ_BROKERS=brokerd1:7101,brokerd2:7101,brokerd3:7101
# Not root.
USER 65532:65532
# The Go binary is PID 1: it handles SIGTERM itself (graceful shutdown).
STOPSIGNAL SIGTERM
HEALTHCHECK NONE
ENTRYPOINT ["/usr/local/bin/brokerctl"]
# docker run --rm --network NET raftq/brokerctl enqueue --payload hi
CMD ["status"]
