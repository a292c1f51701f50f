# shellcheck shell=bash
# Helpers shared by scripts/docker-engine.sh, scripts/images.sh and
# scripts/test-env.sh. Source it; it defines functions only.

log() { printf '[%s] %s\n' "${PGSPEC_LOG_PREFIX:-pgspec}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Run as root, or through a password-less sudo when there is one.
as_root() {
	if [ "$(id -u)" = 0 ]; then
		"$@"
	elif command -v sudo > /dev/null 2>&1 && sudo -n true 2> /dev/null; then
		sudo -n "$@"
	else
		die "needs root for: $* (run as root or set up password-less sudo)"
	fi
}

# apt-get update at most once per process tree, then install what is missing.
apt_install() {
	if [ -z "${PGSPEC_APT_UPDATED:-}" ]; then
		log "apt-get update"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq > /dev/null \
			|| die "apt-get update failed"
		export PGSPEC_APT_UPDATED=1
	fi
	log "apt-get install $*"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends -o Dpkg::Use-Pty=0 "$@" > /dev/null \
		|| die "apt-get install $* failed"
}

# Pick the docker client. The one first on PATH may be newer than the engine
# (Debian's docker.io speaks API 1.41); docker clients negotiate the API
# version down, but if that one still cannot talk to the engine and Debian's
# /usr/bin/docker can, use that. Sets DOCKER (a command name or path).
# Returns non-zero when no client reaches an engine.
pick_docker_client() {
	local c
	for c in ${DOCKER:-} docker /usr/bin/docker; do
		if command -v "$c" > /dev/null 2>&1 && "$c" version --format '{{.Server.APIVersion}}' > /dev/null 2>&1; then
			DOCKER="$c"
			export DOCKER
			return 0
		fi
	done
	return 1
}
