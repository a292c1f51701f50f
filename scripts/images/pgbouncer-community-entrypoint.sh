#!/bin/sh
# Entrypoint of the locally built pgspec-test/pgbouncer:community image.
#
# It follows the contract of the common community PgBouncer images (an
# entrypoint script, then `pgbouncer /etc/pgbouncer/pgbouncer.ini` as CMD,
# running as the unprivileged user the image declares with USER): when no
# pgbouncer.ini exists it writes one from DB_HOST, DB_PORT, DB_USER and
# DB_NAME; an existing one (written into the container before it starts) is
# used as it is. Then it runs the command it is given.
set -e

config_dir=/etc/pgbouncer
if [ ! -f "$config_dir/pgbouncer.ini" ]; then
	if [ -z "${DB_HOST:-}" ]; then
		echo "entrypoint: $config_dir/pgbouncer.ini does not exist and DB_HOST is not set" >&2
		exit 1
	fi
	cat > "$config_dir/pgbouncer.ini" <<-INI
		[databases]
		${DB_NAME:-*} = host=$DB_HOST port=${DB_PORT:-5432}${DB_USER:+ user=$DB_USER}

		[pgbouncer]
		listen_addr = 0.0.0.0
		listen_port = 6432
		auth_type = ${AUTH_TYPE:-scram-sha-256}
		auth_file = $config_dir/userlist.txt
	INI
fi

# `docker run IMAGE -v` means `pgbouncer -v …`
if [ "${1#-}" != "$1" ]; then
	set -- pgbouncer "$@"
fi
exec "$@"
