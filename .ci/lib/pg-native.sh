#!/usr/bin/env bash
# A native PostgreSQL 15 cluster for CI (no Docker), on 127.0.0.1:25432.
#
#   bash .ci/lib/pg-native.sh start    # prints the DSN on stdout (logs go to stderr)
#   bash .ci/lib/pg-native.sh stop
#   bash .ci/lib/pg-native.sh status   # exit 0 when it accepts connections
#   bash .ci/lib/pg-native.sh dsn      # prints the DSN
#   source .ci/lib/pg-native.sh; ci_pg_native_start   # also exports CHRONICLE_CI_PG_DSN
#
# Superuser postgres / password postgres, database `chronicle`, data directory
# $CI_PG_NATIVE_ROOT/data (default /tmp/chronicle-ci-pg), server log
# $CI_PG_NATIVE_ROOT/postgres.log, unix socket in $CI_PG_NATIVE_ROOT.
# The server runs as the OS user `postgres` (initdb refuses root); it is
# created if missing, and Debian's postgresql-15 is installed if missing.
# Idempotent: a server already answering on the port is reused; an existing
# data directory is started again, or recreated when it cannot be.
# Durability and JIT are off (fsync, synchronous_commit, full_page_writes, jit):
# CI only. CI_PG_NATIVE_DURABLE=1 keeps PostgreSQL's defaults (for benchmarks;
# use a fresh CI_PG_NATIVE_ROOT, the setting is written when the cluster is made).

# Below Linux's ephemeral range, as nats.sh's port.
CI_PG_NATIVE_PORT="${CI_PG_NATIVE_PORT:-25432}"
CI_PG_NATIVE_ROOT="${CI_PG_NATIVE_ROOT:-/tmp/chronicle-ci-pg}"
CI_PG_NATIVE_DB=chronicle
CI_PG_NATIVE_USER=postgres
CI_PG_NATIVE_PASSWORD=postgres
CI_PG_NATIVE_OS_USER="${CI_PG_NATIVE_OS_USER:-postgres}"
CI_PG_NATIVE_BIN="${CI_PG_NATIVE_BIN:-/usr/lib/postgresql/15/bin}"
CI_PG_NATIVE_DSN="postgres://$CI_PG_NATIVE_USER:$CI_PG_NATIVE_PASSWORD@127.0.0.1:$CI_PG_NATIVE_PORT/$CI_PG_NATIVE_DB?sslmode=disable"

_CI_PG_NATIVE_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=.ci/lib/docker.sh
. "$_CI_PG_NATIVE_LIB_DIR/docker.sh" # ci_log, ci_apt_install (does not start docker)

_ci_pg_data() { printf '%s/data' "$CI_PG_NATIVE_ROOT"; }

# _ci_pg_as_user CMD...: run CMD as the cluster's OS user.
_ci_pg_as_user() {
	if [ "$(id -un)" = "$CI_PG_NATIVE_OS_USER" ]; then
		"$@"
	else
		# from / : the caller's working directory may be unreadable for that user
		(cd / && exec setpriv --reuid="$CI_PG_NATIVE_OS_USER" --regid="$CI_PG_NATIVE_OS_USER" --init-groups -- "$@")
	fi
}

_ci_pg_psql() {
	PGPASSWORD="$CI_PG_NATIVE_PASSWORD" PGCONNECT_TIMEOUT=5 "$CI_PG_NATIVE_BIN/psql" \
		-X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$CI_PG_NATIVE_PORT" -U "$CI_PG_NATIVE_USER" "$@"
}

ci_pg_native_ready() {
	"$CI_PG_NATIVE_BIN/pg_isready" -q -h 127.0.0.1 -p "$CI_PG_NATIVE_PORT" -t 2 >/dev/null 2>&1
}

_ci_pg_native_prereqs() {
	if [ ! -x "$CI_PG_NATIVE_BIN/initdb" ] || [ ! -x "$CI_PG_NATIVE_BIN/psql" ]; then
		ci_apt_install postgresql-15 postgresql-client-15 || return 1
	fi
	if ! id -u "$CI_PG_NATIVE_OS_USER" >/dev/null 2>&1; then
		ci_log "creating OS user $CI_PG_NATIVE_OS_USER"
		useradd --system --home-dir /var/lib/postgresql --shell /bin/bash "$CI_PG_NATIVE_OS_USER" || return 1
	fi
}

_ci_pg_native_init() {
	local data pwfile
	data="$(_ci_pg_data)"
	ci_log "initdb $data"
	rm -rf "$CI_PG_NATIVE_ROOT"
	mkdir -p "$CI_PG_NATIVE_ROOT"
	chown "$CI_PG_NATIVE_OS_USER:" "$CI_PG_NATIVE_ROOT"
	chmod 700 "$CI_PG_NATIVE_ROOT"
	pwfile="$CI_PG_NATIVE_ROOT/pwfile"
	printf '%s\n' "$CI_PG_NATIVE_PASSWORD" >"$pwfile"
	chown "$CI_PG_NATIVE_OS_USER:" "$pwfile"
	_ci_pg_as_user "$CI_PG_NATIVE_BIN/initdb" -D "$data" -U "$CI_PG_NATIVE_USER" --pwfile="$pwfile" \
		--auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 --no-sync >"$CI_PG_NATIVE_ROOT/initdb.log" 2>&1 || {
		cat "$CI_PG_NATIVE_ROOT/initdb.log" >&2
		return 1
	}
	rm -f "$pwfile"
	cat >>"$data/postgresql.conf" <<CONF

# chronicle CI (.ci/lib/pg-native.sh)
listen_addresses = '127.0.0.1'
port = $CI_PG_NATIVE_PORT
unix_socket_directories = '$CI_PG_NATIVE_ROOT'
max_connections = 300
timezone = 'UTC'
log_timezone = 'UTC'
CONF
	if [ "${CI_PG_NATIVE_DURABLE:-}" = 1 ]; then
		# Benchmarks: PostgreSQL's default durability and JIT, as users run it.
		echo "# durable: PostgreSQL defaults for fsync, synchronous_commit, full_page_writes, jit" >>"$data/postgresql.conf"
	else
		printf '%s\n' 'fsync = off' 'synchronous_commit = off' 'full_page_writes = off' 'jit = off' >>"$data/postgresql.conf"
	fi
}

# The port is given at each start: a cluster made by an earlier run with
# another port in its postgresql.conf starts on this one.
_ci_pg_native_pgctl_start() {
	_ci_pg_as_user "$CI_PG_NATIVE_BIN/pg_ctl" -D "$(_ci_pg_data)" -l "$CI_PG_NATIVE_ROOT/postgres.log" \
		-o "-p $CI_PG_NATIVE_PORT" -w -t 60 start >&2
}

ci_pg_native_start() {
	_ci_pg_native_prereqs || return 1
	if ci_pg_native_ready; then
		if _ci_pg_psql -d postgres -tAc 'select 1' >/dev/null 2>&1; then
			ci_log "reusing the PostgreSQL server already running on 127.0.0.1:$CI_PG_NATIVE_PORT"
		else
			ci_log "something answers on 127.0.0.1:$CI_PG_NATIVE_PORT but the CI credentials do not work"
			return 1
		fi
	else
		local data
		data="$(_ci_pg_data)"
		if [ -s "$data/PG_VERSION" ] && [ "$(cat "$data/PG_VERSION")" = 15 ] &&
			[ "$(stat -c %U "$data")" = "$CI_PG_NATIVE_OS_USER" ] && _ci_pg_native_pgctl_start; then
			ci_log "restarted the existing cluster in $data"
		else
			# no cluster yet, or a stale/broken one: start over
			[ -d "$data" ] && ci_log "recreating the cluster in $data"
			_ci_pg_as_user "$CI_PG_NATIVE_BIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
			_ci_pg_native_init || return 1
			_ci_pg_native_pgctl_start || {
				tail -n 30 "$CI_PG_NATIVE_ROOT/postgres.log" >&2 2>/dev/null
				return 1
			}
		fi
	fi
	if [ -z "$(_ci_pg_psql -d postgres -tAc "select 1 from pg_database where datname = '$CI_PG_NATIVE_DB'")" ]; then
		_ci_pg_psql -d postgres -c "create database $CI_PG_NATIVE_DB" || return 1
	fi
	export CHRONICLE_CI_PG_DSN="$CI_PG_NATIVE_DSN"
	ci_log "native PostgreSQL ready: $CI_PG_NATIVE_DSN"
}

ci_pg_native_stop() {
	local data
	data="$(_ci_pg_data)"
	if [ -f "$data/postmaster.pid" ] && [ -x "$CI_PG_NATIVE_BIN/pg_ctl" ]; then
		_ci_pg_as_user "$CI_PG_NATIVE_BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >&2 ||
			_ci_pg_as_user "$CI_PG_NATIVE_BIN/pg_ctl" -D "$data" -m immediate -w stop >&2 || true
	else
		ci_log "native PostgreSQL is not running (no $data/postmaster.pid)"
	fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	set -euo pipefail
	case "${1:-}" in
	start) ci_pg_native_start && printf '%s\n' "$CI_PG_NATIVE_DSN" ;;
	stop) ci_pg_native_stop ;;
	status) ci_pg_native_ready ;;
	dsn) printf '%s\n' "$CI_PG_NATIVE_DSN" ;;
	*)
		echo "usage: $0 start|stop|status|dsn" >&2
		exit 2
		;;
	esac
fi
