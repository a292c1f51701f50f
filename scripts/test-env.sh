#!/usr/bin/env bash
# Prepare everything the integration tests need, from a bare Debian machine:
# a running Docker engine (scripts/docker-engine.sh) and the locally built
# test images (scripts/images.sh). Idempotent and quick when all is there.
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
log "ready in $((SECONDS - started))s"
