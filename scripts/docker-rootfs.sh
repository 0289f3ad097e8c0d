#!/bin/sh
# docker-rootfs.sh DIR — writes the few files a FROM-scratch raftq image
# needs besides its binaries: /etc/passwd and /etc/group with the non-root
# user raftq (uid/gid 65532, as distroless "nonroot"), the CA certificates,
# an empty /data (the volume; the Dockerfiles chown it to 65532) and /tmp.
#
# Used by scripts/docker-build.sh on the host (make docker) and inside the
# multi-stage Dockerfiles (docker/*.Dockerfile), so both builds make the
# same files. POSIX sh: it runs in golang images and on Debian hosts.
set -eu
dir=${1:?usage: docker-rootfs.sh DIR}
certs=${RAFTQ_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}
if [ ! -s "$certs" ]; then
  echo "docker-rootfs: no CA certificates at $certs (Debian: apt-get install ca-certificates)" >&2
  exit 1
fi
mkdir -p "$dir/etc/ssl/certs" "$dir/data" "$dir/tmp"
printf 'root:x:0:0:root:/root:/sbin/nologin\nraftq:x:65532:65532:raftq:/data:/sbin/nologin\n' >"$dir/etc/passwd"
printf 'root:x:0:\nraftq:x:65532:\n' >"$dir/etc/group"
cp "$certs" "$dir/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$dir/etc/passwd" "$dir/etc/group" "$dir/etc/ssl/certs/ca-certificates.crt"
chmod 0700 "$dir/data"
chmod 1777 "$dir/tmp"
