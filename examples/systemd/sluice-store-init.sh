#!/bin/sh
# ExecStartPre of sluice-store.service: creates (bootstrap member) or joins (the others) the Raft cluster the first
# time, when /var/lib/sluice/sluice.db does not exist. Values come from /etc/sluice/store.env; nothing is interpolated
# into a shell command string (each value is one argument).
set -eu
db=/var/lib/sluice/sluice.db
[ -e "$db" ] && exit 0
schema=${SLUICE_SCHEMA:-/opt/sluice/lib/node_modules/sluice/schema/sluice.ovsschema}
# Raft between members over mutual TLS (ssl:): ovsdb-server uses its --private-key/--certificate/--ca-cert for it.
self="ssl:${SLUICE_STORE_ADDRESS}:${SLUICE_STORE_RAFT_PORT}"
if [ "${SLUICE_STORE_BOOTSTRAP}" = "${SLUICE_STORE_ADDRESS}" ]; then
  exec ovsdb-tool create-cluster "$db" "$schema" "$self"
fi
exec ovsdb-tool join-cluster "$db" Sluice "$self" "ssl:${SLUICE_STORE_BOOTSTRAP}:${SLUICE_STORE_RAFT_PORT}"
