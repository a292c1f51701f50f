#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine.
#
# Idempotent: when `docker version` reaches an engine, it does nothing.
# Otherwise (as root, or with password-less sudo) it installs Debian's
# docker.io when dockerd is missing, starts dockerd detached in the background
# (it outlives this script), and waits up to PGSPEC_DOCKERD_TIMEOUT seconds
# (default 60) for it to answer.
#
# dockerd's log: ${XDG_STATE_HOME:-$HOME/.local/state}/pgspec/dockerd.log
# Prints nothing on stdout; progress goes to stderr.
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
PGSPEC_LOG_PREFIX=docker-engine

timeout_s="${PGSPEC_DOCKERD_TIMEOUT:-60}"
log_start_line=1
state_dir="${XDG_STATE_HOME:-$HOME/.local/state}/pgspec"
dockerd_log="$state_dir/dockerd.log"

# the last lines dockerd wrote since this script started it
show_log_tail() {
	log "last lines of $dockerd_log:"
	tail -n "+$log_start_line" "$dockerd_log" 2> /dev/null | tail -n 25 >&2 || true
}

engine_summary() {
	"$DOCKER" version --format \
		'engine {{.Server.Version}} (API {{.Server.APIVersion}}), client {{.Client.Version}} via '"$DOCKER" \
		2> /dev/null || true
}

if pick_docker_client; then
	log "already running: $(engine_summary)"
	exit 0
fi

# When DOCKER_HOST points somewhere else, starting a local engine would not help.
case "${DOCKER_HOST:-unix:///var/run/docker.sock}" in
	unix:///var/run/docker.sock | unix:///run/docker.sock) ;;
	*) die "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local engine for it" ;;
esac

if ! command -v dockerd > /dev/null 2>&1 || ! command -v docker > /dev/null 2>&1; then
	# docker.io brings dockerd, containerd, runc, tini and the 20.10 client;
	# cgroupfs-mount for machines whose init mounts no cgroups.
	apt_install docker.io cgroupfs-mount
fi
command -v dockerd > /dev/null 2>&1 || die "dockerd still missing after installing docker.io"

dockerd_running() {
	local pid
	[ -r /var/run/docker.pid ] || return 1
	pid="$(cat /var/run/docker.pid 2> /dev/null)" || return 1
	[ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2> /dev/null)" = dockerd ]
}

if dockerd_running; then
	log "dockerd is running (pid $(cat /var/run/docker.pid)) but does not answer yet; waiting"
else
	# cgroups: dockerd needs them mounted; init systems normally do it
	if ! grep -q ' /sys/fs/cgroup' /proc/mounts && command -v cgroupfs-mount > /dev/null 2>&1; then
		log "mounting cgroups (cgroupfs-mount)"
		as_root cgroupfs-mount || log "cgroupfs-mount failed; trying dockerd anyway"
	fi
	# a pid file left by a dockerd that died makes the next one refuse to start
	if [ -e /var/run/docker.pid ]; then
		as_root rm -f /var/run/docker.pid
	fi
	mkdir -p "$state_dir"
	touch "$dockerd_log"
	log_start_line=$(($(wc -l < "$dockerd_log") + 1))
	log "starting dockerd (log: $dockerd_log)"
	printf '\n=== %s: dockerd started by pgspec scripts/docker-engine.sh ===\n' "$(date -u +%FT%TZ)" >> "$dockerd_log"
	# setsid + nohup: own session, no controlling terminal, survives this
	# script and its caller's SIGHUP
	as_root setsid nohup dockerd >> "$dockerd_log" 2>&1 < /dev/null &
	disown || true
fi

deadline=$((SECONDS + timeout_s))
until pick_docker_client; do
	if [ "$SECONDS" -ge "$deadline" ]; then
		log "dockerd did not answer within ${timeout_s}s"
		show_log_tail
		die "no Docker engine (see $dockerd_log)"
	fi
	if ! dockerd_running && [ "$SECONDS" -ge $((deadline - timeout_s + 5)) ]; then
		log "dockerd exited"
		show_log_tail
		die "dockerd failed to start (see $dockerd_log)"
	fi
	sleep 1
done
log "ready: $(engine_summary)"
