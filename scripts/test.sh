#!/usr/bin/env bash
# The whole test suite, from a fresh machine: prepares the Docker engine and
# the locally built PostgreSQL 15/17 and PgBouncer images when missing
# (scripts/test-env.sh), then runs unit, snapshot, property and integration
# tests. Integration tests talk to real containers; none is skipped.
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/test-env.sh
# Library, binary and integration tests; the benchmark is built by clippy in
# .ci/run and run on purpose with `cargo bench --bench scale`.
cargo test --lib --bins --tests "$@"
