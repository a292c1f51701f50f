//! Backups as desired state: the backup container, its agent, manifests,
//! retention, and the restore check behind `pgspec backup verify`.
//!
//! # The scheduler
//!
//! Scheduled backups run while no pgspec process does, so they need a
//! process of their own. Each deployment gets a backup container
//! (`<deployment>-backup`) from the server's image, so `pg_dump` always has
//! the server's major version. Neither that image nor the official
//! `postgres` image has a cron daemon, so the container's entrypoint is a
//! copy of the running pgspec binary (`std::env::current_exe()`, or
//! `PGSPEC_BACKUP_AGENT` pointing at a Linux build) started as the hidden
//! `pgspec backup agent schedule`. The agent:
//!
//! - computes next run times with croner, the parser `validate` checks
//!   schedules with, so a schedule that validates is the schedule that runs
//!   (names, ranges, steps, `L`, `#`, `@daily`), with no second cron dialect
//!   written in shell and awk;
//! - counts each table's rows in the very snapshot `pg_dump --snapshot`
//!   dumps, so `verify` compares like with like on a server that keeps
//!   writing; a shell script could not hold that transaction open;
//! - writes manifests with serde and prunes with `prune::select_pruned`,
//!   pure code unit- and property-tested there: only this deployment's and
//!   schedule's backups, never the newest successful one.
//!
//! `backup run` is `docker exec` of the same agent's one-shot mode, and
//! `backup verify` runs the agent's restore check inside a scratch container,
//! so every backup takes one code path. The cost: the binary must run inside
//! the image (a Linux build for the engine's architecture, with a glibc no
//! newer than the image's; pgspec links only glibc), and each backup or
//! scratch container gets a copy of it.
//!
//! Times are UTC. The destination (a volume, `<deployment>-backups` by
//! convention, or a host directory) is mounted at [`BACKUP_MOUNT`] and never
//! removed by pgspec; a replaced server or backup container leaves it alone.
//!
//! Invariant: the only Docker objects this module removes are the scratch
//! container and scratch volume of a `verify` it made itself.

pub mod agent;
pub mod docker;
pub mod manifest;
pub mod pitr;
pub mod prune;
pub mod restore;
pub mod text;
pub mod window;

pub use crate::model::backup::{
    AGENT_PATH, AgentConfig, BACKUP_MOUNT, CONFIG_PATH, PGPASS_PATH, SERVER_PORT, container_name,
    labels, parse_destination_label, password_from_pgpass, pgpass_line, schedule_labels,
    schedules_from_labels,
};

pub use text::human_size;
