#!/bin/sh
# ExecStartPre of sluice-store.service: creates (bootstrap member) or joins (the others) the Raft clusters of the
# store's two databases, each the first time its file does not exist: Sluice (/var/lib/sluice/sluice.db) and
# Sluice_Status (/var/lib/sluice/sluice-status.db, heartbeats and reports; docs/design/ovsdb.md, "ovsdb-server's transaction history").
# An existing file is never touched, so a store made before Sluice_Status existed gets it at its next start
# (docs/deploy.md, "Upgrades"). Values come from /etc/sluice/store.env; nothing is interpolated into a shell command
# string (each value is one argument).
set -eu
share=/opt/sluice/lib/node_modules/sluice/schema
# Raft between members over mutual TLS (ssl:): ovsdb-server uses its --private-key/--certificate/--ca-cert for it.
# Each database is its own Raft cluster, on its own port.
cluster() { # <file> <schema> <database name> <raft port>
  [ -e "$1" ] && return 0
  self="ssl:${SLUICE_STORE_ADDRESS}:$4"
  if [ "${SLUICE_STORE_BOOTSTRAP}" = "${SLUICE_STORE_ADDRESS}" ]; then
    ovsdb-tool create-cluster "$1" "$2" "$self"
  else
    ovsdb-tool join-cluster "$1" "$3" "$self" "ssl:${SLUICE_STORE_BOOTSTRAP}:$4"
  fi
}
cluster /var/lib/sluice/sluice.db "${SLUICE_SCHEMA:-$share/sluice.ovsschema}" Sluice "${SLUICE_STORE_RAFT_PORT}"
cluster /var/lib/sluice/sluice-status.db "${SLUICE_STATUS_SCHEMA:-$share/sluice-status.ovsschema}" Sluice_Status \
  "${SLUICE_STORE_STATUS_RAFT_PORT:-6646}"
