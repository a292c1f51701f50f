//! Backup schedules and the backup container that runs them.

use std::collections::BTreeMap;

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
}
