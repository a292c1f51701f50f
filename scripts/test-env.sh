#!/usr/bin/env bash
# Prepare everything the integration tests need, from a bare Debian machine:
# a running Docker engine (scripts/docker-engine.sh), the locally built
# test images (scripts/images.sh), promtool and openssh-server (for the
# SSH engine of tests/remote.rs). Idempotent and quick when all is there.
# Run it before `cargo test`. Arguments are passed to images.sh.
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
PGSPEC_LOG_PREFIX=test-env

started=$SECONDS
log "docker engine"
"$here/docker-engine.sh"
log "test images"
"$here/images.sh" "$@"
# promtool checks the file of `pgspec monitoring rules` (tests/monitoring_rules.rs).
# Debian's prometheus package ships it; only that binary is taken from the
# package (about 20 MB to download), not the server and its web assets.
if ! command -v promtool > /dev/null 2>&1; then
	log "promtool (from Debian's prometheus package)"
	if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -60 -print -quit 2> /dev/null)" ]; then
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update > /dev/null 2>&1 || die "apt-get update failed"
	fi
	deb_dir="$(mktemp -d "${TMPDIR:-/tmp}/pgspec-promtool.XXXXXX")"
	(cd "$deb_dir" && apt-get download prometheus > /dev/null 2>&1) || die "apt-get download prometheus failed"
	dpkg-deb --fsys-tarfile "$deb_dir"/prometheus_*.deb | tar -x -C "$deb_dir" ./usr/bin/promtool
	as_root install -m 0755 "$deb_dir/usr/bin/promtool" /usr/local/bin/promtool
	rm -rf "$deb_dir"
fi
# sshd for the SSH engine of tests/remote.rs, which runs its own sshd on a
# loopback port as a child process; Debian's service is not started here.
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen > /dev/null 2>&1; then
	log "openssh-server (tests/remote.rs)"
	apt_install openssh-server
fi
log "ready in $((SECONDS - started))s"
