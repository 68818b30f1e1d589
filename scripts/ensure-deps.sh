#!/usr/bin/env bash
# Installs the Debian packages sluice's lab and end-to-end tests need, if any is missing.
# Idempotent; does nothing when everything is present. Needs root (the lab needs it anyway).
# --with-browser (the test command passes it): also Debian's chromium, which the status page's e2e test drives
# headless (test/e2e/status-page.test.ts); the lab and the demo do not need it.
set -euo pipefail
browser=0
[ "${1:-}" = --with-browser ] && browser=1
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ovs-vswitchd || need+=(openvswitch-switch)
have ovsdb-server || need+=(openvswitch-common)
have ip || need+=(iproute2)
have ethtool || need+=(ethtool)
have socat || need+=(socat)
have iperf3 || need+=(iperf3)
have curl || need+=(curl)
have ps || need+=(procps)
have tcpdump || need+=(tcpdump)
have ping || need+=(iputils-ping)
have hping3 || need+=(hping3)
have bird || need+=(bird2)
# OVN's northbound/southbound databases, ovn-northd and ovn-nbctl/-sbctl (test/e2e/ovn-sync.test.ts starts its own;
# the package's system services are not used), and ovn-controller (docs/ovn.md)
have ovn-northd || need+=(ovn-central)
have ovn-controller || need+=(ovn-host)
# The XDP gateway datapath (src/xdp, docs/design/xdp.md): clang compiles it to BPF (llvm: its BPF back end and
# llvm-objdump), libbpf-dev gives the BPF helper headers, bpftool loads it and runs its program tests.
have clang || need+=(clang)
have llvm-objdump || need+=(llvm)
[ -f /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
# The traffic harness's TCP_USER_TIMEOUT library (src/lab/tcp-user-timeout.ts) is C built with that clang: libc's headers.
[ -f /usr/include/netinet/tcp.h ] || need+=(libc6-dev)
have bpftool || [ -x /usr/sbin/bpftool ] || need+=(bpftool)
if [ $browser = 1 ]; then [ -x /usr/bin/chromium ] || need+=(chromium); fi
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "sluice: missing packages (${need[*]}); run as root to install them" >&2
  exit 1
fi
echo "sluice: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The Debian package may start a system-wide OVS; sluice runs its own per-node instances and never uses it.
