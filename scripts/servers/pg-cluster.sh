#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback for tests and the multi-machine trial (PostgreSQL from
# Debian's packages; scripts/setup.sh installs postgresql when it is missing and it runs as root).
#   bash scripts/servers/pg-cluster.sh PORT
# initdb into a fresh temp dir (trust auth, superuser "kiln"), pg_ctl start on 127.0.0.1:PORT,
# prints "ready postgres postgres://kiln@127.0.0.1:PORT/postgres", then runs until its stdin closes
# (the starting process exits or is killed -9): then the cluster is stopped and its dir removed.
# PostgreSQL refuses to run as root: as root the cluster runs as the "postgres" system user.
set -euo pipefail
PORT=${1:?usage: pg-cluster.sh PORT}
BIN=${KILN_PG_BIN:-}
if [ -z "$BIN" ]; then
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && BIN=$d; done
fi
[ -n "$BIN" ] && [ -x "$BIN/initdb" ] || { echo "pg-cluster: PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin. Fix: apt-get install postgresql (npm run setup does it as root), or set KILN_PG_BIN." >&2; exit 4; }
DIR=$(mktemp -d /tmp/kiln-pg-XXXXXX)
chmod 755 "$DIR"
AS=()
if [ "$(id -u)" = "0" ]; then
  id postgres >/dev/null 2>&1 || { echo "pg-cluster: running as root and there is no postgres user. Fix: apt-get install postgresql (creates it) or run as a non-root user." >&2; exit 4; }
  chown postgres "$DIR"
  AS=(runuser -u postgres --)
fi
cleanup() {
  "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT
"${AS[@]}" "$BIN/initdb" -D "$DIR/data" -U kiln --auth=trust -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
  || { cat "$DIR/initdb.log" >&2; exit 1; }
"${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories=$DIR -c fsync=off -c max_connections=200" start >/dev/null \
  || { cat "$DIR/server.log" >&2; exit 1; }
echo "ready postgres postgres://kiln@127.0.0.1:$PORT/postgres"
cat >/dev/null || true
