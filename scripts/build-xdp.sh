#!/usr/bin/env bash
# Compiles the XDP gateway datapath (src/xdp/gateway.bpf.c) to a BPF object with Debian's clang (scripts/ensure-deps.sh
# installs clang, llvm and libbpf-dev). Usage: build-xdp.sh [OUT]; default build/gateway.bpf.o.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/gateway.bpf.o}"
mkdir -p "$(dirname "$out")"
multiarch="$(gcc -print-multiarch 2>/dev/null || echo "$(uname -m)-linux-gnu")"
clang -O2 -g -Wall -Werror -target bpf -I"/usr/include/$multiarch" -c src/xdp/gateway.bpf.c -o "$out"
