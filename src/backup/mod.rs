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
pub mod prune;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::model::{BackupDestination, BackupSchedule};

/// Where the agent binary is copied inside containers.
pub const AGENT_PATH: &str = "/opt/pgspec/bin/pgspec";
/// The agent's configuration inside the backup container.
pub const CONFIG_PATH: &str = "/etc/pgspec/backup.json";
/// A libpq password file (`PGPASSFILE`) with the superuser's password,
/// readable by root only; pg_dump, pg_dumpall, psql and the agent read it.
pub const PGPASS_PATH: &str = "/etc/pgspec/pgpass";
/// Where the destination is mounted.
pub const BACKUP_MOUNT: &str = "/backups";
/// The port the server listens on inside the deployment's network.
pub const SERVER_PORT: u16 = 5432;

/// Labels of the backup container, beyond `engine::object_labels`.
pub mod labels {
    /// `backup` on the backup container, `verify` on a scratch container.
    pub use crate::engine::labels::ROLE;
    /// `volume:<name>` or `directory:<path>`.
    pub const DESTINATION: &str = "org.pgspec.backup.destination";
    /// Host name of the server the agent dumps.
    pub const SERVER: &str = "org.pgspec.backup.server";
    pub const SUPERUSER: &str = "org.pgspec.backup.superuser";
    /// Followed by a schedule's name; the value is the schedule as JSON
    /// (cron, kind, format, databases, retention).
    pub const SCHEDULE_PREFIX: &str = "org.pgspec.backup.schedule.";
}

/// The backup container's name.
pub fn container_name(deployment: &str) -> String {
    format!("{deployment}-backup")
}

/// What the agent in the backup container is told, as `CONFIG_PATH`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentConfig {
    pub deployment: String,
    pub server: String,
    pub port: u16,
    pub superuser: String,
    pub schedules: BTreeMap<String, BackupSchedule>,
}

/// `volume:<name>` or `directory:<path>`.
pub fn destination_label(destination: &BackupDestination) -> String {
    match destination {
        BackupDestination::Volume(name) => format!("volume:{name}"),
        BackupDestination::Directory(path) => format!("directory:{path}"),
    }
}

/// The inverse of [`destination_label`].
pub fn parse_destination_label(text: &str) -> Option<BackupDestination> {
    if let Some(name) = text.strip_prefix("volume:") {
        Some(BackupDestination::Volume(name.to_owned()))
    } else {
        text.strip_prefix("directory:")
            .map(|path| BackupDestination::Directory(path.to_owned()))
    }
}

/// The backup-specific labels of a backup container.
pub fn schedule_labels(
    destination: &BackupDestination,
    schedules: &BTreeMap<String, BackupSchedule>,
    server: &str,
    superuser: &str,
) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        (labels::ROLE.to_owned(), "backup".to_owned()),
        (
            labels::DESTINATION.to_owned(),
            destination_label(destination),
        ),
        (labels::SERVER.to_owned(), server.to_owned()),
        (labels::SUPERUSER.to_owned(), superuser.to_owned()),
    ]);
    for (name, schedule) in schedules {
        // A schedule always serialises; an empty label would show as drift.
        let value = serde_json::to_string(schedule).unwrap_or_default();
        labels.insert(format!("{}{name}", labels::SCHEDULE_PREFIX), value);
    }
    labels
}

/// The schedules a backup container's labels carry; a label that does not
/// parse is skipped, which the diff then shows as a missing schedule.
pub fn schedules_from_labels(labels: &HashMap<String, String>) -> BTreeMap<String, BackupSchedule> {
    labels
        .iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix(labels::SCHEDULE_PREFIX)?;
            let schedule: BackupSchedule = serde_json::from_str(value).ok()?;
            Some((name.to_owned(), schedule))
        })
        .collect()
}

/// The plan line of a `CreateBackupContainer` step.
pub fn describe_create(backup: &crate::model::Backup) -> String {
    let schedules = backup
        .schedules
        .values()
        .map(|schedule| format!("{} `{}`", schedule.name, schedule.cron))
        .collect::<Vec<_>>()
        .join(", ");
    let destination = match &backup.destination {
        BackupDestination::Volume(name) => format!("volume `{name}`"),
        BackupDestination::Directory(path) => format!("directory `{path}`"),
    };
    match &backup.agent {
        Some(agent) => format!(
            "create and start backup container `{}` from `{}` with the pgspec {} backup \
             agent (schedules: {schedules}; backups to {destination} at {BACKUP_MOUNT})",
            agent.name, agent.image, agent.version
        ),
        None => format!("create backup container (schedules: {schedules})"),
    }
}

/// Bytes with one decimal in the largest binary unit below them.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    if unit == "B" {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {unit}")
    }
}

/// One line of a libpq password file matching every server and database.
pub fn pgpass_line(password: &str) -> String {
    let escaped = password.replace('\\', "\\\\").replace(':', "\\:");
    format!("*:*:*:*:{escaped}\n")
}

/// The password of the first line of a libpq password file.
pub fn password_from_pgpass(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut characters = line.chars();
    while let Some(character) = characters.next() {
        match character {
            '\\' => field.extend(characters.next()),
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
            _ => field.push(character),
        }
    }
    (fields.len() == 4).then_some(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_round_trips_awkward_passwords() {
        for password in ["plain", "a:b", "back\\slash:", "::\\\\"] {
            assert_eq!(
                password_from_pgpass(&pgpass_line(password)).as_deref(),
                Some(password)
            );
        }
    }

    #[test]
    fn labels_round_trip_schedules_and_destination() {
        let schedule = BackupSchedule {
            name: "nightly".to_owned(),
            cron: "0 2 * * *".to_owned(),
            kind: "full".to_owned(),
            format: "custom".to_owned(),
            databases: vec!["app".to_owned()],
            retention_days: Some(30),
            max_count: None,
            min_count: Some(3),
        };
        let schedules = BTreeMap::from([("nightly".to_owned(), schedule)]);
        let destination = BackupDestination::Volume("ledger-backups".to_owned());
        let labels = schedule_labels(&destination, &schedules, "ledger-postgres", "postgres");
        assert_eq!(schedules_from_labels(&labels), schedules);
        assert_eq!(
            parse_destination_label(&labels[labels::DESTINATION]),
            Some(destination)
        );
    }
}
