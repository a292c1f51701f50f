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

# Install Debian packages non-interactively. apt-get update runs once: not
# again in this process tree, nor when the package lists are under an hour
# old (docker-engine.sh and images.sh each may install something). apt's
# chatter is shown only when it fails.
apt_install() {
	local out rc=0
	out="$(mktemp "${TMPDIR:-/tmp}/pgspec-apt.XXXXXX")"
	if [ -z "${PGSPEC_APT_UPDATED:-}" ] \
		&& [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -60 -print -quit 2> /dev/null)" ]; then
		log "apt-get update"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update > "$out" 2>&1 || rc=$?
		if [ "$rc" != 0 ]; then
			cat "$out" >&2
			rm -f "$out"
			die "apt-get update failed"
		fi
	fi
	export PGSPEC_APT_UPDATED=1
	log "apt-get install $*"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		-o Dpkg::Use-Pty=0 "$@" > "$out" 2>&1 || rc=$?
	if [ "$rc" != 0 ]; then
		tail -n 40 "$out" >&2
		rm -f "$out"
		die "apt-get install $* failed"
	fi
	rm -f "$out"
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
