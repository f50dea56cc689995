#!/bin/bash
# Entrypoint of the locally built chronicle-postgres:15 test image.
#
# A small re-implementation of the official postgres image's
# docker-entrypoint.sh, honouring the same contract that testcontainers-go's
# postgres module relies on:
#   - command "postgres [-c name=value ...]" (or only flags starting with "-");
#   - POSTGRES_USER (default postgres), POSTGRES_PASSWORD (required unless
#     POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_DB (default $POSTGRES_USER),
#     POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD, PGDATA;
#   - /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz run once after initdb;
#   - on first start a temporary server (unix socket only) is started for the
#     set-up and stopped again, then the real server is exec'd, so the log line
#     "database system is ready to accept connections" appears twice, exactly
#     like the official image (postgres.BasicWaitStrategies waits for that).
# Started as root it prepares the directories and drops to the postgres user
# with setpriv; started as another uid (docker run --user) it runs as that.
set -Eeo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC' 2>/dev/null || true)" "$*"; }
die() { log "error: $*" >&2; exit 1; }

# "docker run image -c foo=bar" => "postgres -c foo=bar"
if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

if [ "$1" != 'postgres' ]; then
	exec "$@"
fi
# "postgres --version" and the like need no cluster
for arg in "${@:2}"; do
	case "$arg" in -'?' | --help | --describe-config | -V | --version) exec "$@" ;; esac
done

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ "$(id -u)" = '0' ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chmod 00700 "$PGDATA"
	chmod 03775 /var/run/postgresql
	# only chown what is not ours yet (a reused volume may be large)
	find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
	chown postgres:postgres /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
fi

: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
export POSTGRES_USER POSTGRES_DB

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != 'trust' ]; then
		die 'POSTGRES_PASSWORD is empty: set it, or set POSTGRES_HOST_AUTH_METHOD=trust'
	fi
	mkdir -p "$PGDATA" 2>/dev/null || true
	chmod 00700 "$PGDATA" 2>/dev/null || true

	# initdb: the superuser is POSTGRES_USER, its password POSTGRES_PASSWORD.
	# --no-sync: a throw-away test container has no use for durability.
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is split on purpose
	initdb --username="$POSTGRES_USER" \
		--pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") \
		--encoding=UTF8 --locale=C --no-sync \
		${POSTGRES_INITDB_ARGS:-} -D "$PGDATA"

	# Remote (host) connections authenticate with a password, like the
	# official image; unix-socket connections inside the container are trusted
	# (initdb's default), which "docker exec ... psql -U user" relies on.
	printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
	{
		printf '\n# added by chronicle-postgres docker-entrypoint.sh\n'
		printf "listen_addresses = '*'\n"
		printf "unix_socket_directories = '/var/run/postgresql'\n"
		# llvmjit is not copied into the image
		printf 'jit = off\n'
		printf "timezone = 'UTC'\n"
		printf "log_timezone = 'UTC'\n"
	} >>"$PGDATA/postgresql.conf"

	# Temporary server: unix socket only, so nothing can connect over TCP
	# before the set-up is complete.
	PGUSER="$POSTGRES_USER" PGPASSWORD="${POSTGRES_PASSWORD:-}" \
		pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start

	psql_cmd=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --no-password --host /var/run/postgresql --port 5432)
	if [ "$POSTGRES_DB" != 'postgres' ]; then
		exists="$("${psql_cmd[@]}" --dbname postgres -tA -v db="$POSTGRES_DB" <<<"SELECT 1 FROM pg_database WHERE datname = :'db';")"
		if [ -z "$exists" ]; then
			"${psql_cmd[@]}" --dbname postgres -v db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
		fi
	fi

	shopt -s nullglob
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
		*.sh)
			if [ -x "$f" ]; then
				log "running $f"
				"$f"
			else
				log "sourcing $f"
				# shellcheck disable=SC1090
				. "$f"
			fi
			;;
		*.sql)
			log "running $f"
			"${psql_cmd[@]}" --dbname "$POSTGRES_DB" -f "$f"
			;;
		*.sql.gz)
			log "running $f"
			gzip -dc "$f" | "${psql_cmd[@]}" --dbname "$POSTGRES_DB"
			;;
		*) log "ignoring $f" ;;
		esac
	done
	shopt -u nullglob

	pg_ctl -D "$PGDATA" -m fast -w stop
	log 'PostgreSQL init process complete; ready for start up.'
else
	log 'PostgreSQL database directory appears to contain a database; skipping initialization'
fi

exec "$@"
