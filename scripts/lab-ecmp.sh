#!/bin/bash
# Lab fencing helper (fast: no node start-up): withdraw a gateway's next hop from the lab router's ECMP routes, or
# announce it again. Usage: lab-ecmp.sh <lock-file> <router-netns> <withdraw|announce> <vip>=<next-hop> [...]
# One pair per VIP (an IPv6 VIP takes the gateway's IPv6 underlay next hop). Read-modify-write of the multipath route,
# serialised across processes with flock on <lock-file> (in the lab's run directory, not a guessable /tmp path a
# local user could plant). Built by labEcmpCommand() in src/lab/ecmp.ts.
set -euo pipefail
lock=$1
ns=$2
action=$3
shift 3
case $action in withdraw | announce) ;; *) echo "lab-ecmp.sh: withdraw or announce, not $action" >&2; exit 2 ;; esac
exec 9>"$lock"
flock -w 10 9
for pair in "$@"; do
  vip=${pair%%=*}
  hop=${pair#*=}
  fam=-4
  plen=32
  case $vip in *:*) fam=-6; plen=128 ;; esac
  hops=$(ip netns exec "$ns" ip "$fam" route show "$vip/$plen" | grep -o 'via [^ ]*' | awk '{print $2}' | grep -vxF "$hop" || true)
  if [ "$action" = announce ]; then hops="$hops $hop"; fi
  args=""
  for h in $(echo $hops | tr ' ' '\n' | sort -u); do args="$args nexthop via $h dev eth0"; done
  if [ -z "$args" ]; then
    ip netns exec "$ns" ip "$fam" route replace unreachable "$vip/$plen"
  else
    # shellcheck disable=SC2086
    ip netns exec "$ns" ip "$fam" route replace "$vip/$plen" $args
  fi
done
