#!/usr/bin/env bash
# Bring up examples/small.yaml with pgspec on this machine, from nothing:
# starts a Docker engine when none answers, makes sure the example's image
# (postgres:17) is present — pulled, or where no registry can be reached, the
# locally built PostgreSQL 17 image tagged as postgres:17 — then runs
# `pgspec apply` and `pgspec drift` on the example.
#
# The superuser password comes from PGSPEC_EXAMPLE_PASSWORD; when it is unset
# a random one is generated into .pgspec-example-password (mode 600, ignored
# by git) and reused on the next run.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
here="$PWD/scripts"
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
PGSPEC_LOG_PREFIX=example

bash "$here/docker-engine.sh"
pick_docker_client || die "no Docker engine answers"

image=postgres:17
if ! "$DOCKER" image inspect "$image" > /dev/null 2>&1; then
	if "$DOCKER" pull "$image" > /dev/null 2>&1; then
		log "pulled $image"
	else
		log "$image cannot be pulled here; using the locally built PostgreSQL 17 image instead"
		bash "$here/images.sh" postgres:17
		"$DOCKER" tag pgspec-test/postgres:17 "$image"
	fi
fi

if [ -z "${PGSPEC_EXAMPLE_PASSWORD:-}" ]; then
	secret_file=.pgspec-example-password
	if [ ! -s "$secret_file" ]; then
		(umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > "$secret_file")
		log "generated the superuser password into $secret_file"
	fi
	PGSPEC_EXAMPLE_PASSWORD="$(cat "$secret_file")"
fi
export PGSPEC_EXAMPLE_PASSWORD

cargo build -q
target/debug/pgspec apply -f examples/small.yaml --auto-approve
target/debug/pgspec drift -f examples/small.yaml
log "connect with: psql postgresql://postgres@127.0.0.1:5432/app (password in \$PGSPEC_EXAMPLE_PASSWORD or .pgspec-example-password)"
