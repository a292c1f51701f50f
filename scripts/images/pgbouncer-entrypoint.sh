#!/usr/bin/env bash
# Entrypoint of the locally built pgspec-test/pgbouncer:1 image.
#
# Runs Debian's pgbouncer in the foreground as PID 1, as the unprivileged user
# `postgres`, on a config file written into the container by its user (pgspec
# writes it; the image ships none that is meant to be used as is).
#
#   docker run IMAGE                          -> pgbouncer $PGBOUNCER_CONFIG
#   docker run IMAGE /path/to/pgbouncer.ini   -> pgbouncer /path/to/pgbouncer.ini
#   docker run IMAGE -v -R                    -> pgbouncer -v -R $PGBOUNCER_CONFIG
#   docker run IMAGE -v /path/to/x.ini        -> pgbouncer -v /path/to/x.ini
#   docker run IMAGE psql ...                 -> psql ... (any other command, as is)
#
# PGBOUNCER_CONFIG defaults to /etc/pgbouncer/pgbouncer.ini. SIGHUP reloads the
# config, SIGINT is a safe shutdown, SIGTERM (docker stop) an immediate one.
set -Eeo pipefail

: "${PGBOUNCER_CONFIG:=/etc/pgbouncer/pgbouncer.ini}"
PGBOUNCER_USER=postgres

# only asks for the version or help: no config needed
_pgb_want_help() {
	local arg
	for arg; do
		case "$arg" in
			-V | --version | -h | --help) return 0 ;;
		esac
	done
	return 1
}

if [ "$#" -eq 0 ]; then
	set -- pgbouncer
elif [ "${1:0:1}" = '-' ] || [[ "$1" == *.ini ]]; then
	# options and/or a config path for pgbouncer
	set -- pgbouncer "$@"
fi

if [ "$1" = 'pgbouncer' ]; then
	if _pgb_want_help "$@"; then
		exec "$@"
	fi
	# add the default config unless the last argument names one
	last="${!#}"
	if [ "$#" -eq 1 ] || [ "${last:0:1}" = '-' ]; then
		set -- "$@" "$PGBOUNCER_CONFIG"
	fi
	config="${!#}"
	if [ ! -f "$config" ]; then
		printf >&2 'pgbouncer-entrypoint: config file %s not found: write one into the container (docker cp / archive API) before starting it, or set PGBOUNCER_CONFIG or pass its path\n' "$config"
		exit 1
	fi
	if [ "$(id -u)" = '0' ]; then
		# pgbouncer refuses to run as root; files written into the container
		# by `docker cp` / the archive API belong to root
		mkdir -p /var/run/postgresql /var/log/postgresql
		chown "$PGBOUNCER_USER:" /var/run/postgresql /var/log/postgresql
		# (a config outside /etc/pgbouncer must be readable by postgres)
		chown -R "$PGBOUNCER_USER:" /etc/pgbouncer 2>/dev/null || :
		exec setpriv --reuid="$PGBOUNCER_USER" --regid="$PGBOUNCER_USER" --init-groups \
			env HOME=/var/lib/postgresql USER="$PGBOUNCER_USER" LOGNAME="$PGBOUNCER_USER" "$@"
	fi
fi

exec "$@"
