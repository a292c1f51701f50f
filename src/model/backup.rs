//! Backup schedules and the backup container that runs them, with the
//! container's contract: where the agent, its configuration and password
//! file go, and the labels that carry the schedules, written by `apply`
//! and read back by `live`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// Backup schedules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub destination: BackupDestination,
    pub schedules: BTreeMap<String, BackupSchedule>,
    /// The container that runs the schedules. Desired: `None` (diff derives
    /// it from the server container). Live: the observed one, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<BackupAgent>,
    /// Live only: whether the destination volume exists (a directory
    /// destination always counts as existing).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub destination_exists: bool,
    /// The longest recovery-point lag the spec allows (`max_lag`), in
    /// seconds, for a `physical` schedule's WAL streaming. Desired only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_seconds: Option<u64>,
    /// Live only: the WAL archiver's replication slot, when the desired
    /// backup has a `physical` schedule and the server answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archiver: Option<Archiver>,
    /// Live only: the last restore test of each schedule that has one
    /// (`verify`), as the agent reads it from the manifests.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub restore_tests: BTreeMap<String, RestoreTest>,
}

/// The last scheduled restore test of a schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreTest {
    /// The newest successful backup of the schedule.
    pub backup: String,
    /// When the newest recorded test (of any of the schedule's backups)
    /// finished, and whether it passed; `None` when none was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// A test was due (its `verify` time passed more than an hour ago,
    /// after the schedule had a backup) and none was recorded since.
    pub overdue: bool,
}

/// What the server says about the WAL archiver (`pg_receivewal` in the
/// backup container) through its replication slot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Archiver {
    /// Whether the slot exists at all.
    pub slot_exists: bool,
    /// Whether a `pg_receivewal` is streaming from the slot now.
    pub active: bool,
    /// Bytes of WAL written on the server and not yet flushed by the
    /// archiver (`pg_current_wal_lsn() - flush_lsn`, else `restart_lsn`).
    pub lag_bytes: Option<i64>,
    /// Seconds the archive is behind the server: 0 when it has everything,
    /// else the walsender's `flush_lag`; `None` when unknown.
    pub lag_seconds: Option<f64>,
}

/// The physical replication slot of a deployment's WAL archiver: the
/// deployment's name in the characters a slot name allows.
pub fn slot_name(deployment: &str) -> String {
    let name: String = deployment
        .chars()
        .map(|character| match character {
            'a'..='z' | '0'..='9' | '_' => character,
            'A'..='Z' => character.to_ascii_lowercase(),
            _ => '_',
        })
        .collect();
    let mut slot = format!("pgspec_{name}");
    slot.truncate(63);
    slot
}

/// Where the archiver keeps a deployment's WAL, below the destination.
pub fn wal_directory(deployment: &str) -> String {
    format!("{BACKUP_MOUNT}/wal/{deployment}")
}

/// The backup container (`<deployment>-backup`): the server's image, with
/// pgspec's backup agent as its entrypoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupAgent {
    pub name: String,
    pub image: String,
    /// The deployment's network, on which the server is reached by name.
    pub network: String,
    /// Host name of the server the agent dumps (`<deployment>-postgres`).
    pub server: String,
    pub superuser: String,
    /// Desired only: the superuser password, sent into the container as a
    /// password file when it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superuser_password: Option<Secret>,
    /// The pgspec version of the agent.
    pub version: String,
    pub running: bool,
    /// Live only: id of the container's image.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_id: String,
    /// Live only: whether the container's password file holds the spec's
    /// superuser password. Only the outcome is kept; `None` when unknown
    /// (no password in the spec, or the file cannot be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_matches: Option<bool>,
}

/// Where backups go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupDestination {
    Volume(String),
    Directory(String),
}

impl Default for BackupDestination {
    fn default() -> Self {
        BackupDestination::Volume(String::new())
    }
}

/// One backup schedule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupSchedule {
    pub name: String,
    pub cron: String,
    pub kind: String,
    pub format: String,
    pub databases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_count: Option<i64>,
    /// Cron expression of the scheduled restore test of this schedule's
    /// newest backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
}

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

/// Labels of the backup container, beyond those of every object pgspec
/// creates.
pub mod labels {
    /// `backup` on the backup container, `verify` on a scratch container.
    pub use crate::model::labels::ROLE;
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

/// One line of a libpq password file matching every server and database,
/// for `user` or (`None`) every user. A line is an entry, so a password
/// with a line break in it cannot be written and is refused.
pub fn pgpass_line(user: Option<&str>, password: &str) -> anyhow::Result<String> {
    if password.contains(['\n', '\r']) {
        anyhow::bail!("the password holds a line break, which a libpq password file cannot hold");
    }
    let escape = |text: &str| text.replace('\\', "\\\\").replace(':', "\\:");
    let user = user.map_or_else(|| "*".to_owned(), escape);
    Ok(format!("*:*:*:{user}:{}\n", escape(password)))
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

/// A nightly schedule at `cron` of database `app`, keeping 30 days and at
/// least 3 backups, for tests.
#[cfg(test)]
pub(crate) fn sample_schedule(cron: &str) -> BackupSchedule {
    BackupSchedule {
        name: "nightly".to_owned(),
        cron: cron.to_owned(),
        kind: "full".to_owned(),
        format: "custom".to_owned(),
        databases: vec!["app".to_owned()],
        retention_days: Some(30),
        max_count: None,
        min_count: Some(3),
        verify: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_are_what_postgresql_accepts() {
        assert_eq!(slot_name("threadr"), "pgspec_threadr");
        assert_eq!(slot_name("Ish-Chat.v2"), "pgspec_ish_chat_v2");
        assert_eq!(slot_name(&"x".repeat(100)).len(), 63);
    }

    #[test]
    fn pgpass_lines_escape_and_refuse_line_breaks() {
        assert_eq!(
            pgpass_line(Some("r:1"), "a:b\\c").expect("no line break"),
            "*:*:*:r\\:1:a\\:b\\\\c\n"
        );
        for broken in ["a\nb", "a\r", "\n"] {
            assert!(pgpass_line(None, broken).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn pgpass_round_trips_awkward_passwords() {
        for password in ["plain", "a:b", "back\\slash:", "::\\\\"] {
            assert_eq!(
                password_from_pgpass(&pgpass_line(None, password).expect("no line break"))
                    .as_deref(),
                Some(password)
            );
        }
    }

    #[test]
    fn labels_round_trip_schedules_and_destination() {
        let schedule = sample_schedule("0 2 * * *");
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
