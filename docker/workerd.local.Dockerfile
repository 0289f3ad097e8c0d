# workerd image, offline build: the raftq worker daemon with its built-in job types.
#
# make docker (scripts/docker-build.sh) compiles static binaries on the host
# (CGO_ENABLED=0) and prepares this build context, bin/docker/workerd/:
#   workerd raftq-healthcheck
#   etc/   passwd and group (user raftq, 65532), ssl/certs/ca-certificates.crt
#   data/ tmp/
# so no image has to be pulled. docker/workerd.Dockerfile builds the same
# image from source for those who can pull golang.
FROM scratch
COPY etc/ /etc/
COPY tmp/ /tmp/
COPY workerd raftq-healthcheck /usr/local/bin/
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
