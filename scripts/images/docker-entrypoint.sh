#!/usr/bin/env bash
# Entrypoint of the locally built pgspec-test/postgres:NN images.
#
# It follows the contract of the official `postgres` image's
# docker-entrypoint.sh so that what works against these images works against
# the real one:
#   POSTGRES_PASSWORD / POSTGRES_PASSWORD_FILE, POSTGRES_USER (default postgres),
#   POSTGRES_DB (default $POSTGRES_USER), POSTGRES_INITDB_ARGS,
#   POSTGRES_INITDB_WALDIR, POSTGRES_HOST_AUTH_METHOD (default: the server's
#   password_encryption, i.e. scram-sha-256), PGDATA (default
#   /var/lib/postgresql/data); first start initialises only when PGDATA holds
#   no cluster; /docker-entrypoint-initdb.d/*.sh, *.sql, *.sql.gz run once at
#   first start; `postgres -c name=value ...` and `-c ...` go to the server;
#   any other command is exec'd as given (psql, pg_dump, bash, ...).
set -Eeo pipefail

# usage: file_env VAR [DEFAULT]
#    ie: file_env 'POSTGRES_PASSWORD' 'example'
# (reads "$VAR" or "$VAR_FILE", never both)
file_env() {
	local var="$1"
	local fileVar="${var}_FILE"
	local def="${2:-}"
	if [ "${!var:-}" ] && [ "${!fileVar:-}" ]; then
		printf >&2 'error: both %s and %s are set (but are exclusive)\n' "$var" "$fileVar"
		exit 1
	fi
	local val="$def"
	if [ "${!var:-}" ]; then
		val="${!var}"
	elif [ "${!fileVar:-}" ]; then
		val="$(< "${!fileVar}")"
	fi
	export "$var"="$val"
	unset "$fileVar"
}

# run as root? then fix ownership and re-exec ourselves as postgres
as_postgres() {
	exec setpriv --reuid=postgres --regid=postgres --init-groups \
		env HOME=/var/lib/postgresql USER=postgres LOGNAME=postgres "$@"
}

docker_create_db_directories() {
	local user
	user="$(id -u)"

	mkdir -p "$PGDATA"
	# ignore failure: the directory may be a mount we cannot chmod
	chmod 00700 "$PGDATA" || :

	# /var/run/postgresql may be a tmpfs
	mkdir -p /var/run/postgresql || :
	chmod 03777 /var/run/postgresql || :

	if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
		mkdir -p "$POSTGRES_INITDB_WALDIR"
		if [ "$user" = '0' ]; then
			find "$POSTGRES_INITDB_WALDIR" \! -user postgres -exec chown postgres '{}' +
		fi
		chmod 700 "$POSTGRES_INITDB_WALDIR"
	fi

	if [ "$user" = '0' ]; then
		find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
		find /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
	fi
}

docker_verify_minimum_env() {
	if [ -z "$POSTGRES_PASSWORD" ] && [ 'trust' != "$POSTGRES_HOST_AUTH_METHOD" ]; then
		cat >&2 <<-'EOE'
			Error: Database is uninitialized and superuser password is not specified.
			       You must specify POSTGRES_PASSWORD to a non-empty value for the
			       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

			       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
			       connections without a password. This is *not* recommended.
		EOE
		exit 1
	fi
	if [ 'trust' = "$POSTGRES_HOST_AUTH_METHOD" ]; then
		printf >&2 'WARNING: POSTGRES_HOST_AUTH_METHOD has been set to "trust".\n'
	fi
}

docker_init_database_dir() {
	if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
		set -- --waldir "$POSTGRES_INITDB_WALDIR" "$@"
	fi
	# --pwfile refuses an empty password; the password goes through a pipe,
	# never through the command line
	# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is word-split on purpose
	eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"' "$@"'
}

# appends "host all all all $POSTGRES_HOST_AUTH_METHOD" to the pg_hba.conf
# written by initdb (local and loopback connections stay "trust", as in the
# official image)
pg_setup_hba_conf() {
	if [ "${1:-}" = 'postgres' ]; then
		shift
	fi
	local auth
	auth="$(postgres -C password_encryption "$@")"
	: "${POSTGRES_HOST_AUTH_METHOD:=$auth}"
	{
		printf '\n'
		if [ 'trust' = "$POSTGRES_HOST_AUTH_METHOD" ]; then
			printf '# warning trust is enabled for all connections\n'
		fi
		printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
	} >> "$PGDATA/pg_hba.conf"
}

docker_temp_server_start() {
	if [ "${1:-}" = 'postgres' ]; then
		shift
	fi
	# internal start: no TCP, only the unix socket
	set -- "$@" -c listen_addresses='' -p "${PGPORT:-5432}"
	PGUSER="${PGUSER:-$POSTGRES_USER}" \
		pg_ctl -D "$PGDATA" -o "$(printf '%q ' "$@")" -w start
}

docker_temp_server_stop() {
	PGUSER="${PGUSER:-postgres}" \
		pg_ctl -D "$PGDATA" -m fast -w stop
}

docker_process_sql() {
	local query_runner=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
	if [ -n "$POSTGRES_DB" ]; then
		query_runner+=(--dbname "$POSTGRES_DB")
	fi
	PGHOST='' PGHOSTADDR='' "${query_runner[@]}" "$@"
}

docker_setup_db() {
	local dbAlreadyExists
	dbAlreadyExists="$(
		# shellcheck disable=SC2097,SC2098 # db= must see the real POSTGRES_DB
		POSTGRES_DB='' docker_process_sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only <<-'EOSQL'
			SELECT 1 FROM pg_database WHERE datname = :'db' ;
		EOSQL
	)"
	if [ -z "$dbAlreadyExists" ]; then
		# shellcheck disable=SC2097,SC2098 # db= must see the real POSTGRES_DB
		POSTGRES_DB='' docker_process_sql --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
			CREATE DATABASE :"db" ;
		EOSQL
		printf '\n'
	fi
}

# runs /docker-entrypoint-initdb.d/* in name order: *.sh (sourced unless
# executable), *.sql, *.sql.gz, *.sql.xz, *.sql.zst
docker_process_init_files() {
	printf '\n'
	local f
	for f; do
		case "$f" in
			*.sh)
				if [ -x "$f" ]; then
					printf '%s: running %s\n' "$0" "$f"
					"$f"
				else
					printf '%s: sourcing %s\n' "$0" "$f"
					# shellcheck disable=SC1090
					. "$f"
				fi
				;;
			*.sql)     printf '%s: running %s\n' "$0" "$f"; docker_process_sql -f "$f"; printf '\n' ;;
			*.sql.gz)  printf '%s: running %s\n' "$0" "$f"; gunzip -c "$f" | docker_process_sql; printf '\n' ;;
			*.sql.xz)  printf '%s: running %s\n' "$0" "$f"; xzcat "$f" | docker_process_sql; printf '\n' ;;
			*.sql.zst) printf '%s: running %s\n' "$0" "$f"; zstd -dc "$f" | docker_process_sql; printf '\n' ;;
			*)         printf '%s: ignoring %s\n' "$0" "$f" ;;
		esac
		printf '\n'
	done
}

docker_setup_env() {
	file_env 'POSTGRES_PASSWORD'
	file_env 'POSTGRES_USER' 'postgres'
	file_env 'POSTGRES_DB' "$POSTGRES_USER"
	file_env 'POSTGRES_INITDB_ARGS'
	: "${POSTGRES_HOST_AUTH_METHOD:=}"

	declare -g DATABASE_ALREADY_EXISTS
	: "${DATABASE_ALREADY_EXISTS:=}"
	if [ -s "$PGDATA/PG_VERSION" ]; then
		DATABASE_ALREADY_EXISTS='true'
	fi
}

# The official image from PostgreSQL 18 on keeps PGDATA in
# /var/lib/postgresql/MAJOR/docker under VOLUME /var/lib/postgresql, and
# refuses to start when something is mounted at the old place: the data in
# such a mount would be ignored and a new, empty cluster made beside it.
docker_refuse_old_data_mount() {
	local old=/var/lib/postgresql/data
	if [ "$PGDATA" != "$old" ] && [ "${PGDATA#"$old"/}" = "$PGDATA" ] && mountpoint -q "$old"; then
		printf >&2 'Error: in 18+, these Docker images are configured to store database data in
'
		printf >&2 '       a format which is compatible with "pg_ctlcluster" (PGDATA=%s),
' "$PGDATA"
		printf >&2 '       but there appears to be a mount at %s (unused mount/volume).
' "$old"
		printf >&2 '       Mount the volume at /var/lib/postgresql instead.
'
		exit 1
	fi
}

# does the server command ask for help or a config value only (no init then)?
_pg_want_help() {
	local arg
	for arg; do
		case "$arg" in
			-'?'|--help|--describe-config|-V|--version) return 0 ;;
		esac
	done
	return 1
}

_main() {
	# "docker run IMAGE -c x=y" means "postgres -c x=y"
	if [ "${1:0:1}" = '-' ]; then
		set -- postgres "$@"
	fi

	if [ "$1" = 'postgres' ] && ! _pg_want_help "$@"; then
		docker_refuse_old_data_mount
		docker_setup_env
		docker_create_db_directories
		if [ "$(id -u)" = '0' ]; then
			as_postgres "${BASH_SOURCE[0]}" "$@"
		fi

		if [ -z "$DATABASE_ALREADY_EXISTS" ]; then
			docker_verify_minimum_env

			# check the init directory is readable before initdb does anything
			ls /docker-entrypoint-initdb.d/ > /dev/null

			docker_init_database_dir
			pg_setup_hba_conf "$@"

			# PGPASSWORD is needed by psql when POSTGRES_HOST_AUTH_METHOD is not trust
			export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
			docker_temp_server_start "$@"

			docker_setup_db
			docker_process_init_files /docker-entrypoint-initdb.d/*

			docker_temp_server_stop
			unset PGPASSWORD

			printf '\nPostgreSQL init process complete; ready for start up.\n\n'
		else
			printf '\nPostgreSQL Database directory appears to contain a database; Skipping initialization\n\n'
		fi
	fi

	exec "$@"
}

# the empty glob must expand to nothing for docker_process_init_files
shopt -s nullglob
_main "$@"
