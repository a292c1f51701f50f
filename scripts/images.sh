#!/usr/bin/env bash
# Build the Docker images the tests run, from Debian packages only (no
# registry is needed): debootstrap a minbase root filesystem with the
# packages, add an entrypoint from scripts/images/, `docker import` it, and
# give it its config (ENTRYPOINT, ENV, STOPSIGNAL...) with a Dockerfile.
#
#   pgspec-test/postgres:15   bookworm, postgresql-15  (official postgres image contract)
#   pgspec-test/postgres:17   trixie,   postgresql-17  (same contract)
#   pgspec-test/pgbouncer:1   bookworm, pgbouncer + postgresql-client
#   pgspec-test/postgres:latest  postgres:17's file system with the layout of
#                             the official image from PostgreSQL 18 on (as
#                             `postgres:latest` is): PGDATA=/var/lib/postgresql/17/docker
#                             under VOLUME /var/lib/postgresql; its tag does not
#                             spell the major
#   pgspec-test/pgbouncer:community  pgbouncer:1's file system with the contract
#                             of the common community PgBouncer images: an
#                             entrypoint script, `pgbouncer /etc/pgbouncer/pgbouncer.ini`
#                             as CMD, USER postgres
#
# An image is rebuilt only when missing or when the hash of its build inputs
# (this script, its entrypoint, suite and package list) differs from the
# image's org.pgspec.build-hash label; the `# >>> derived` blocks are left
# out of the debootstrap images' hash, so a change to a derived image does
# not rebuild them. Missing images are built in parallel, derived ones after
# their base.
#
# Usage: scripts/images.sh [--force] [IMAGE...]   (IMAGE: postgres:15, postgres:17, pgbouncer:1)
# Env:   PGSPEC_DEBIAN_MIRROR  Debian mirror (default: the one apt uses here,
#                              else http://deb.debian.org/debian)
#        PGSPEC_BUILD_DIR      where root filesystems are assembled
#                              (default ${TMPDIR:-/var/tmp}; needs ~700 MB each)
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"
PGSPEC_LOG_PREFIX=images

REPO=pgspec-test
LABEL_IMAGE=org.pgspec.test-image
LABEL_HASH=org.pgspec.build-hash

# name:tag -> "suite|packages|entrypoint file"
declare -A RECIPE=(
	[postgres:15]="bookworm|postgresql-15,locales|docker-entrypoint.sh"
	[postgres:17]="trixie|postgresql-17,locales|docker-entrypoint.sh"
	[pgbouncer:1]="bookworm|pgbouncer,postgresql-client|pgbouncer-entrypoint.sh"
)
# >>> derived (the build hash of the debootstrap images leaves these blocks out)
# Images made from another one's file system instead of debootstrap:
# name:tag -> "base image|function printing the Dockerfile after FROM|file
# of scripts/images/ put into the build context (optional)".
declare -A DERIVED=(
	[postgres:latest]="postgres:17|dockerfile_postgres_18_layout|"
	[pgbouncer:community]="pgbouncer:1|dockerfile_pgbouncer_community|pgbouncer-community-entrypoint.sh"
)
# <<< derived
ALL=(postgres:15 postgres:17 pgbouncer:1 postgres:latest pgbouncer:community)
# >>> derived (kept out of the other images' build hash, so adding these
# rebuilds nothing that exists)
# The metrics exporters `monitoring.exporter` runs, from Debian's packages:
#   pgspec-test/exporters:1           bookworm, prometheus-postgres-exporter +
#                                     prometheus-pgbouncer-exporter (the base,
#                                     no entrypoint of its own)
#   pgspec-test/postgres-exporter:1   prometheus-community's postgres_exporter:
#                                     DATA_SOURCE_URI/USER/PASS_FILE, :9187
#   pgspec-test/pgbouncer-exporter:1  Debian's Python pgbouncer exporter:
#                                     PGBOUNCER_HOST/PORT/USER, libpq's
#                                     PGPASSFILE, :9127
RECIPE[exporters:1]="bookworm|prometheus-postgres-exporter,prometheus-pgbouncer-exporter|exporters.txt"
DERIVED[postgres-exporter:1]="exporters:1|dockerfile_postgres_exporter|"
DERIVED[pgbouncer-exporter:1]="exporters:1|dockerfile_pgbouncer_exporter|"
ALL+=(exporters:1 postgres-exporter:1 pgbouncer-exporter:1)
# <<< derived

force=
want=()
for arg; do
	case "$arg" in
		--force) force=1 ;;
		-h | --help) sed -n '2,/^set -E/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
		*)
			arg="${arg#"$REPO"/}"
			[ -n "${RECIPE[$arg]:-}${DERIVED[$arg]:-}" ] || die "unknown image $arg (known: ${ALL[*]})"
			want+=("$arg")
			;;
	esac
done
[ "${#want[@]}" -gt 0 ] || want=("${ALL[@]}")

pick_docker_client || die "no Docker engine answers; run scripts/docker-engine.sh first"

# one images.sh at a time on a machine: a second one waits, then finds the
# images the first built
lock="${XDG_STATE_HOME:-$HOME/.local/state}/pgspec/images.lock"
mkdir -p "$(dirname "$lock")"
exec 9>> "$lock"
if ! flock -n 9; then
	log "waiting for another images.sh (lock $lock)"
	flock 9
fi

# --- build inputs ---------------------------------------------------------

build_hash() {
	local image="$1" suite pkgs entry base recipe
	if [ -n "${DERIVED[$image]:-}" ]; then
		# the base image's hash stands for its file system
		IFS='|' read -r base recipe entry <<< "${DERIVED[$image]}"
		{
			printf '%s\n' "$image" "$(build_hash "$base")"
			cat "$here/images.sh"
			[ -z "$entry" ] || cat "$here/images/$entry"
		} | sha256sum | cut -c1-16
		return
	fi
	IFS='|' read -r suite pkgs entry <<< "${RECIPE[$image]}"
	{
		printf '%s\n' "$image" "$suite" "$pkgs"
		sed '/^# >>> derived/,/^# <<< derived/d' "$here/images.sh"
		cat "$here/images/$entry"
	} | sha256sum | cut -c1-16
}

image_hash() {
	"$DOCKER" image inspect --format "{{ index .Config.Labels \"$LABEL_HASH\" }}" "$REPO/$1" 2> /dev/null || true
}

# The Debian mirror apt uses on this machine (deb822 .sources or one-line
# .list), the first one that carries a plain release suite with "main".
debian_mirror() {
	if [ -n "${PGSPEC_DEBIAN_MIRROR:-}" ]; then
		printf '%s\n' "$PGSPEC_DEBIAN_MIRROR"
		return
	fi
	local f m=""
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		m="$(awk '$1 == "deb" {
				i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
				uri = $i; suite = $(i + 1)
				main = 0; for (j = i + 2; j <= NF; j++) if ($j == "main") main = 1
				if (main && suite !~ /-/ && uri ~ /^https?:/ && uri !~ /security/) { print uri; exit }
			}' "$f")"
		[ -z "$m" ] || break
	done
	if [ -z "$m" ]; then
		for f in /etc/apt/sources.list.d/*.sources; do
			[ -r "$f" ] || continue
			m="$(awk '
				function flush() {
					if (deb && main && plain && uri ~ /^https?:/ && uri !~ /security/ && !found) { print uri; found = 1 }
					deb = main = plain = 0; uri = ""
				}
				/^[ \t]*$/ { flush(); next }
				/^Types:/ { for (j = 2; j <= NF; j++) if ($j == "deb") deb = 1 }
				/^URIs:/ { uri = $2 }
				/^Suites:/ { for (j = 2; j <= NF; j++) if ($j !~ /-/) plain = 1 }
				/^Components:/ { for (j = 2; j <= NF; j++) if ($j == "main") main = 1 }
				/^Enabled:[ \t]*no/ { deb = 0 }
				END { flush() }' "$f")"
			[ -z "$m" ] || break
		done
	fi
	printf '%s\n' "${m:-http://deb.debian.org/debian}"
}

# --- building one image (runs in a background subshell) -------------------

# Unmount whatever debootstrap/chroot left mounted under $1, then remove it
# without crossing into other file systems.
remove_rootfs() {
	local dir="$1" mnt
	[ -d "$dir" ] || return 0
	while read -r mnt; do
		umount -l "$mnt" 2> /dev/null || true
	done < <(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
	rm -rf --one-file-system "$dir"
}

# The user `postgres` gets uid/gid 999, as in the official postgres image
# (Debian's package makes a system user, uid 100 or so).
renumber_postgres_user() {
	chroot "$1" /bin/bash -Eeuo pipefail -s <<-'EOS'
		old_uid="$(id -u postgres)"; old_gid="$(id -g postgres)"
		groupmod -g 999 postgres
		usermod -u 999 -g 999 postgres
		find / -xdev -uid "$old_uid" -exec chown -h 999 '{}' +
		find / -xdev -gid "$old_gid" -exec chgrp -h 999 '{}' +
	EOS
}

# chroot part of the postgres image: what the official image's Dockerfile does
customize_postgres() {
	local root="$1" major="$2"
	renumber_postgres_user "$root"
	chroot "$root" /bin/bash -Eeuo pipefail -s "$major" <<-'EOS'
		major="$1"
		# the cluster postgresql-common created on install; initdb happens at first start
		rm -rf "/etc/postgresql/$major" "/var/lib/postgresql/$major"
		sed -ri 's/^#?(create_main_cluster)\s*=.*/\1 = false/' /etc/postgresql-common/createcluster.conf
		# LANG=en_US.utf8 as in the official image: initdb makes UTF8 databases
		localedef -i en_US -c -f UTF-8 -A /usr/share/locale/locale.alias en_US.UTF-8
		# "correct by default": listen on all interfaces
		sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "/usr/share/postgresql/$major/postgresql.conf.sample"
		grep -qF "listen_addresses = '*'" "/usr/share/postgresql/$major/postgresql.conf.sample"
		install -d -o postgres -g postgres -m 3777 /var/run/postgresql
		install -d -o postgres -g postgres -m 1777 /var/lib/postgresql/data
		mkdir -p /docker-entrypoint-initdb.d
		dpkg-query -W -f='${Version}' "postgresql-$major" > /.pg_version
	EOS
}

customize_pgbouncer() {
	local root="$1"
	renumber_postgres_user "$root"
	chroot "$root" /bin/bash -Eeuo pipefail -s <<-'EOS'
		install -d -o postgres -g postgres -m 2775 /var/run/postgresql /var/log/postgresql
		# no usable default config: the image's user writes one (Debian's,
		# for localhost and a log file, stays as an example)
		mv /etc/pgbouncer/pgbouncer.ini /etc/pgbouncer/pgbouncer.ini.debian-example
		rm -f /etc/pgbouncer/userlist.txt
		chown -R postgres:postgres /etc/pgbouncer
		dpkg-query -W -f='${Version}' pgbouncer > /.pgbouncer_version
	EOS
}

# Drop what a container never needs: package caches, lists, docs, man pages,
# message catalogues, locale sources; machine-specific files.
slim_rootfs() {
	local root="$1"
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin \
		"$root"/var/lib/apt/lists/* "$root"/var/cache/debconf/*-old \
		"$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
		"$root"/usr/share/locale/* "$root"/usr/share/i18n/* "$root"/usr/share/lintian \
		"$root"/usr/share/postgresql/*/man
	find "$root/var/log" -type f -exec truncate -s 0 '{}' +
	rm -f "$root/etc/hostname"
	: > "$root/etc/resolv.conf"
	# keep later `apt-get install` in a container from bringing docs back
	cat > "$root/etc/dpkg/dpkg.cfg.d/pgspec-nodoc" <<-'EOF'
		path-exclude=/usr/share/doc/*
		path-exclude=/usr/share/man/*
		path-exclude=/usr/share/info/*
	EOF
}

build_one() {
	local image="$1" hash="$2" mirror="$3" suite pkgs entry script=()
	IFS='|' read -r suite pkgs entry <<< "${RECIPE[$image]}"
	local started=$SECONDS
	# global: the EXIT trap of this (background sub)shell removes it
	root="$(mktemp -d "${PGSPEC_BUILD_DIR:-${TMPDIR:-/var/tmp}}/pgspec-rootfs.XXXXXX")"
	trap 'remove_rootfs "$root"' EXIT

	# an older debootstrap may lack the newer suite's script: they are all "sid"
	if [ ! -e "/usr/share/debootstrap/scripts/$suite" ]; then
		script=(/usr/share/debootstrap/scripts/sid)
	fi
	echo "debootstrap --variant=minbase --include=$pkgs $suite $root $mirror ${script[*]}"
	debootstrap --variant=minbase --include="$pkgs" "$suite" "$root" "$mirror" "${script[@]}"
	echo "debootstrap done after $((SECONDS - started))s"

	local dockerfile version
	case "$image" in
		postgres:*)
			local major="${image#postgres:}"
			customize_postgres "$root" "$major"
			version="$(cat "$root/.pg_version")"
			rm -f "$root/.pg_version"
			install -m 0755 "$here/images/$entry" "$root/usr/local/bin/docker-entrypoint.sh"
			dockerfile="$(cat <<-EOF
				ENV PATH=/usr/lib/postgresql/$major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
				ENV PG_MAJOR=$major
				ENV PG_VERSION=$version
				ENV PGDATA=/var/lib/postgresql/data
				ENV LANG=en_US.utf8
				VOLUME /var/lib/postgresql/data
				ENTRYPOINT ["docker-entrypoint.sh"]
				STOPSIGNAL SIGINT
				EXPOSE 5432
				CMD ["postgres"]
			EOF
			)"
			;;
		pgbouncer:*)
			customize_pgbouncer "$root"
			version="$(cat "$root/.pgbouncer_version")"
			rm -f "$root/.pgbouncer_version"
			install -m 0755 "$here/images/$entry" "$root/usr/local/bin/pgbouncer-entrypoint.sh"
			dockerfile="$(cat <<-EOF
				ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
				ENV PGBOUNCER_VERSION=$version
				ENV PGBOUNCER_CONFIG=/etc/pgbouncer/pgbouncer.ini
				ENTRYPOINT ["pgbouncer-entrypoint.sh"]
				EXPOSE 6432
			EOF
			)"
			;;
	esac
	slim_rootfs "$root"

	# `docker import` makes the one layer; the image config is added by a
	# Dockerfile on top, because Debian's engine (20.10) refuses STOPSIGNAL in
	# `docker import --change`. The legacy builder needs no registry and no
	# build context.
	local tmp_tag="$REPO/$image-rootfs-$hash"
	echo "docker import ($(du -sh --one-file-system "$root" | cut -f1))"
	tar -C "$root" --numeric-owner --one-file-system \
		--exclude=./proc/* --exclude=./sys/* --exclude=./dev/* \
		-c . | "$DOCKER" import \
		--message "pgspec test image: debootstrap $suite + $pkgs" - "$tmp_tag"
	remove_rootfs "$root"
	printf 'FROM %s\n%s\nLABEL %s=1 %s=%s org.pgspec.debian-suite=%s org.pgspec.packages=%s\n' \
		"$tmp_tag" "$dockerfile" "$LABEL_IMAGE" "$LABEL_HASH" "$hash" "$suite" "$pkgs" |
		DOCKER_BUILDKIT=0 "$DOCKER" build --quiet --tag "$REPO/$image" -
	"$DOCKER" rmi "$tmp_tag" > /dev/null
	echo "built $REPO/$image ($version) in $((SECONDS - started))s"
}

# >>> derived
# Derived images: `docker export` flattens the base (a VOLUME or USER cannot
# be taken back in a Dockerfile), and the config is given anew.
build_derived() {
	local image="$1" hash="$2" base recipe entry started=$SECONDS
	IFS='|' read -r base recipe entry <<< "${DERIVED[$image]}"
	local tmp_tag="$REPO/$image-rootfs-$hash" container context
	container="$("$DOCKER" create "$REPO/$base")"
	"$DOCKER" export "$container" | "$DOCKER" import \
		--message "pgspec test image: $REPO/$image from $REPO/$base" - "$tmp_tag"
	"$DOCKER" rm -v "$container" > /dev/null
	context="$(mktemp -d "${TMPDIR:-/tmp}/pgspec-image-context.XXXXXX")"
	[ -z "$entry" ] || install -m 0755 "$here/images/$entry" "$context/$entry"
	{
		printf 'FROM %s\n' "$tmp_tag"
		"$recipe" "$REPO/$base" "$entry"
		printf 'LABEL %s=1 %s=%s org.pgspec.derived-from=%s\n' \
			"$LABEL_IMAGE" "$LABEL_HASH" "$hash" "$REPO/$base"
	} > "$context/Dockerfile"
	DOCKER_BUILDKIT=0 "$DOCKER" build --quiet --tag "$REPO/$image" "$context"
	rm -rf "$context"
	"$DOCKER" rmi "$tmp_tag" > /dev/null
	echo "built $REPO/$image (from $REPO/$base) in $((SECONDS - started))s"
}

# A value of the base image's environment.
base_env() {
	"$DOCKER" image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$1" |
		sed -n "s/^$2=//p"
}

# The layout of the official image from PostgreSQL 18 on (what
# `postgres:latest` is): PGDATA=/var/lib/postgresql/MAJOR/docker under
# VOLUME /var/lib/postgresql, on the file system of postgres:17.
dockerfile_postgres_18_layout() {
	local base="$1" major
	major="$(base_env "$base" PG_MAJOR)"
	cat <<-EOF
		RUN install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/$major/docker \
			&& rmdir /var/lib/postgresql/data
		ENV PATH=/usr/lib/postgresql/$major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		ENV PG_MAJOR=$major
		ENV PG_VERSION=$(base_env "$base" PG_VERSION)
		ENV PGDATA=/var/lib/postgresql/$major/docker
		ENV LANG=en_US.utf8
		VOLUME /var/lib/postgresql
		ENTRYPOINT ["docker-entrypoint.sh"]
		STOPSIGNAL SIGINT
		EXPOSE 5432
		CMD ["postgres"]
	EOF
}

# The contract of the common community PgBouncer images: an entrypoint
# script that runs as the unprivileged user the image declares, then
# `pgbouncer /etc/pgbouncer/pgbouncer.ini` as CMD.
dockerfile_pgbouncer_community() {
	local base="$1" entry="$2"
	cat <<-EOF
		COPY $entry /entrypoint.sh
		ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		ENV PGBOUNCER_VERSION=$(base_env "$base" PGBOUNCER_VERSION)
		USER postgres
		EXPOSE 6432
		ENTRYPOINT ["/entrypoint.sh"]
		CMD ["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]
	EOF
}

# The exporters' base is a debootstrap image with no config of its own
# but a CMD: build_one's Dockerfile is FROM and LABEL alone for it (no `case`
# branch sets one, and the other images' hash must not move for it).
eval "$(declare -f build_one | sed '1s/^build_one /build_one_rootfs /')"
build_one() {
	if [[ "$1" != exporters:* ]]; then
		build_one_rootfs "$@"
		return
	fi
	set +u
	build_one_rootfs "$@"
	# a command, so that the derived images can `docker create` it
	printf 'FROM %s\nCMD ["/bin/sh"]\n' "$REPO/$1" |
		DOCKER_BUILDKIT=0 "$DOCKER" build --quiet --tag "$REPO/$1" -
}

# The exporters run as the `prometheus` user Debian's packages make; pgspec
# hands them the monitoring role's password as a file they can read.
dockerfile_postgres_exporter() {
	cat <<-EOF
		ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		USER prometheus
		EXPOSE 9187
		ENTRYPOINT ["/usr/bin/prometheus-postgres-exporter"]
	EOF
}

# Debian's exporter (1.7) reads SHOW STATS's `total_requests`, which
# PgBouncer renamed `total_query_count` in 1.8: without the new name it fails
# before it serves anything.
dockerfile_pgbouncer_exporter() {
	local collectors=/usr/lib/python3/dist-packages/prometheus_pgbouncer_exporter/collectors.py
	cat <<-EOF
		RUN sed -i "s/'total_requests': (/'total_query_count': (/" $collectors \\
			&& grep -q "'total_query_count'" $collectors
		ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		USER prometheus
		EXPOSE 9127
		ENTRYPOINT ["/usr/bin/prometheus-pgbouncer-exporter", "--licence-location", "/dev/null"]
	EOF
}
# <<< derived

# --- main -----------------------------------------------------------------

todo=()
for image in "${want[@]}"; do
	hash="$(build_hash "$image")"
	have="$(image_hash "$image")"
	if [ -z "$force" ] && [ "$have" = "$hash" ]; then
		log "reusing $REPO/$image ($hash)"
	else
		if [ -n "$have" ]; then
			log "$REPO/$image has build hash ${have:-none}, want $hash: rebuilding"
		fi
		todo+=("$image")
	fi
done
# a derived image needs its base as it is meant to be
for image in "${todo[@]}"; do
	base="${DERIVED[$image]:-}"
	base="${base%%|*}"
	if [ -n "$base" ] && [[ " ${todo[*]} " != *" $base "* ]] &&
		[ "$(image_hash "$base")" != "$(build_hash "$base")" ]; then
		todo+=("$base")
	fi
done
# derived images are made after the images they come from
derived=()
plain=()
for image in "${todo[@]}"; do
	if [ -n "${DERIVED[$image]:-}" ]; then derived+=("$image"); else plain+=("$image"); fi
done
todo=("${plain[@]}")
build_derived_images() {
	local image
	for image in "${derived[@]}"; do
		log "building $REPO/$image from $REPO/${DERIVED[$image]%%|*}"
		build_derived "$image" "$(build_hash "$image")" >&2 || die "could not build $REPO/$image"
	done
}
if [ "${#todo[@]}" -eq 0 ]; then
	build_derived_images
	exit 0
fi

[ "$(id -u)" = 0 ] || die "building images needs root (debootstrap, chroot)"
command -v debootstrap > /dev/null 2>&1 || apt_install debootstrap
mirror="$(debian_mirror)"
log "building ${todo[*]} from $mirror"

logs_dir="$(mktemp -d "${TMPDIR:-/tmp}/pgspec-images.XXXXXX")"
declare -A pids=()
for image in "${todo[@]}"; do
	logf="$logs_dir/${image/:/-}.log"
	(build_one "$image" "$(build_hash "$image")" "$mirror") > "$logf" 2>&1 &
	pids[$image]=$!
	log "building $REPO/$image (log: $logf)"
done

failed=()
for image in "${todo[@]}"; do
	logf="$logs_dir/${image/:/-}.log"
	if wait "${pids[$image]}"; then
		log "$(tail -n 1 "$logf")"
	else
		failed+=("$image")
		log "FAILED $REPO/$image; last lines of $logf:"
		tail -n 30 "$logf" >&2
	fi
done
if [ "${#failed[@]}" -gt 0 ]; then
	die "could not build: ${failed[*]} (logs in $logs_dir)"
fi
rm -rf "$logs_dir"
build_derived_images
# the old image of a rebuilt tag is left dangling
"$DOCKER" image prune -f --filter "label=$LABEL_IMAGE" > /dev/null 2>&1 || true
