#!/usr/bin/env bash
# Installs what the jepsen harness needs (idempotent; root): iproute2 (ip
# netns, veth, bridge, tc) and iptables. Checks the kernel can do network
# namespaces, veth and bridges before a run starts.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v tc >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "$(id -u)" != 0 ]; then
  echo "jepsen-deps: must run as root (network namespaces, iptables)" >&2
  exit 1
fi
probe=rqjprobe$$
ip netns add "$probe"
trap 'ip netns del "$probe" 2>/dev/null || true' EXIT
ip -n "$probe" link add br0 type bridge
ip -n "$probe" link add jv0 type veth peer name jv1
ip netns exec "$probe" iptables -N JEPSEN-PROBE
ip netns exec "$probe" iptables -A JEPSEN-PROBE -m statistic --mode random --probability 0.1 -j DROP
ip netns exec "$probe" tc qdisc add dev jv0 root tbf rate 1mbit burst 4kb latency 100ms
echo "jepsen-deps: $(ip -V | grep -o 'iproute2-[^ ,]*'), $(iptables -V), namespaces/veth/bridge/tbf ok"
