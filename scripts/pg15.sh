#!/usr/bin/env bash
# Runs a command against a throwaway cluster of Debian's packaged PostgreSQL
# (15 on Debian 12), installing it with apt-get when missing:
#   bash scripts/pg15.sh npx vitest run test/production
# The cluster lives in a temporary folder, runs as user postgres (Postgres
# refuses root) on a free port, and is stopped and removed when the command
# ends, however it ends. The command sees TEST_DATABASE_URL (the cluster's
# superuser), which test/support/global-setup.ts uses instead of the
# embedded Postgres.
set -euo pipefail
cd "$(dirname "$0")/.."

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
PG_BIN="${PG_BIN:-$(find_bin)}"
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
  echo "pg15: installing Debian's postgresql (apt-get)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
  PG_BIN="$(find_bin)"
fi
[ -x "$PG_BIN/initdb" ] || { echo "pg15: no initdb under /usr/lib/postgresql/*/bin after installing postgresql" >&2; exit 1; }

# As root the cluster runs as postgres (created by the package); otherwise as ourselves.
if [ "$(id -u)" -eq 0 ]; then AS=(runuser -u postgres --); else AS=(); fi

DIR="$(mktemp -d "${TMPDIR:-/tmp}/mana-ai-pg15-XXXXXX")"
PASSWORD="$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
PORT="$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")"
printf '%s\n' "$PASSWORD" > "$DIR/pwfile"
[ "$(id -u)" -eq 0 ] && chown -R postgres "$DIR"

cleanup() {
  "${AS[@]}" "$PG_BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

"${AS[@]}" "$PG_BIN/initdb" -D "$DIR/data" -U postgres --pwfile="$DIR/pwfile" \
  --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >"$DIR/initdb.log" 2>&1 \
  || { cat "$DIR/initdb.log" >&2; exit 1; }
# Throwaway data: no fsync; connections for parallel test files.
"${AS[@]}" "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w \
  -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=300 -c shared_buffers=128MB" start >/dev/null \
  || { cat "$DIR/server.log" >&2; exit 1; }

VERSION="$("$PG_BIN/postgres" --version)"
echo "pg15: $VERSION on 127.0.0.1:$PORT ($DIR)"
export TEST_DATABASE_URL="postgres://postgres:$PASSWORD@127.0.0.1:$PORT/postgres"
set +e
"$@"
status=$?
set -e
exit $status
