#!/usr/bin/env bash
# Compiles the XDP programs in src/xdp to BPF objects with Debian's clang (scripts/ensure-deps.sh installs clang,
# llvm and libbpf-dev): DIR/gateway.bpf.o (the gateway datapath), DIR/icmp.bpf.o (its ICMP error copies, tc ingress,
# loaded from beside gateway.bpf.o) and DIR/pass.bpf.o (passes every frame; the peer of a veth that runs the
# gateway). Usage: build-xdp.sh [DIR]; default build/.
set -euo pipefail
# DIR is taken relative to the caller's directory (the default, build/, to the checkout or installed package).
if [[ $# -gt 0 ]]; then out="$(realpath -m -- "$1")"; else out=build; fi
cd "$(dirname "$0")/.."
mkdir -p "$out"
multiarch="$(gcc -print-multiarch 2>/dev/null || echo "$(uname -m)-linux-gnu")"
for prog in gateway pass icmp; do
  clang -O2 -g -Wall -Werror -target bpf -I"/usr/include/$multiarch" -c "src/xdp/$prog.bpf.c" -o "$out/$prog.bpf.o"
done
