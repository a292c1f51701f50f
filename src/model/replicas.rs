//! Streaming replicas: physical standbys of the server, each a container of
//! the server's image on a volume of its own, cloned with `pg_basebackup`
//! over the deployment's network on a replication slot of its own.
//!
//! Desired: what the spec says (`Replication`, with a `Replica` per
//! standby). Live: what the engine and the server's `pg_stat_replication`
//! and `pg_replication_slots` show.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ContainerState;
use crate::secret::Secret;

/// The role replicas connect as when the spec names none.
pub const DEFAULT_ROLE: &str = "pgspec_replicator";

/// Where a replica keeps the replication role's password: a libpq password
/// file in its data directory (`primary_conninfo` names it), mode 0600.
pub const PASSFILE: &str = "pgspec-replication.pass";

/// The value of `org.pgspec.role` on a replica container.
pub const LABEL_ROLE: &str = "replica";

/// The label that carries a replica's name.
pub const LABEL_NAME: &str = "org.pgspec.replica";

/// The settings a standby needs at least as high as its primary's, or it
/// pauses recovery (PostgreSQL's hot standby rule).
pub const AT_LEAST_PRIMARY: [&str; 5] = [
    "max_connections",
    "max_prepared_transactions",
    "max_locks_per_transaction",
    "max_wal_senders",
    "max_worker_processes",
];

/// The replicas of a deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Replication {
    /// The role replicas connect as.
    pub role: String,
    /// Desired only: its password, read at apply time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Replay lag (bytes) beyond which the plan notes a replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag_bytes: Option<u64>,
    /// By name. Live: the replicas the engine has (by label) and those
    /// whose slot the server has.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replicas: BTreeMap<String, Replica>,
}

/// One streaming replica.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Replica {
    pub name: String,
    /// Docker name of its container.
    pub container: String,
    /// The named volume holding its data directory.
    pub volume: String,
    /// Its physical replication slot on the server.
    pub slot: String,
    pub image: String,
    /// Host port and address it is published on; `None`: not published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub bind_address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<i64>,
    /// Settings given on its command line (`-c name=value`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    /// The deployment's network, where it reaches the server.
    pub network: String,
    /// Live: the container's run state (`Missing` when there is none).
    #[serde(default)]
    pub state: ContainerState,
    /// Live: the id of the container's image.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_id: String,
    /// Live: the `org.pgspec.config-hash` label; desired: empty (see
    /// [`Replica::config_hash`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config_hash: String,
    /// Live: whether its volume exists.
    #[serde(default)]
    pub volume_exists: bool,
    /// Live: whether the server has its slot.
    #[serde(default)]
    pub slot_exists: bool,
    /// Live: whether the server streams WAL to it (`pg_stat_replication`
    /// in state `streaming` on its slot).
    #[serde(default)]
    pub streaming: bool,
    /// Live: how many bytes of WAL it has yet to replay. Not part of the
    /// fingerprint: it moves all the time.
    #[serde(skip)]
    pub lag_bytes: Option<u64>,
    /// Live: for a running replica that does not stream, the last error
    /// its log shows (its WAL receiver's, as a rule). Not part of the
    /// fingerprint.
    #[serde(skip)]
    pub last_error: Option<String>,
}

impl Replica {
    /// The replica named `name` of deployment `deployment`, with the names
    /// of its container, volume and slot.
    pub fn named(deployment: &str, name: &str) -> Replica {
        Replica {
            name: name.to_owned(),
            container: format!("{deployment}-replica-{name}"),
            volume: format!("{deployment}-replica-{name}-pgdata"),
            slot: slot_name(name),
            ..Replica::default()
        }
    }

    /// The hash of everything pgspec sets when it creates the container:
    /// a change replaces it (on its volume).
    pub fn config_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let fields = serde_json::json!({
            "template": 1,
            "image": self.image,
            "port": [self.bind_address, self.port],
            "volume": self.volume,
            "network": self.network,
            "cpus": self.nano_cpus,
            "memory": self.memory_bytes,
            "settings": self.settings,
            "slot": self.slot,
        });
        let digest = Sha256::digest(fields.to_string().as_bytes());
        hex::encode(&digest[..8])
    }

    /// `host:port` as the plan shows it, or `not published`.
    pub fn published(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.bind_address),
            None => "not published".to_owned(),
        }
    }

    /// The container's command: the server with the replica's settings.
    pub fn command(&self) -> Vec<String> {
        let mut command = vec!["postgres".to_owned()];
        for (name, value) in &self.settings {
            command.push("-c".to_owned());
            command.push(format!("{name}={value}"));
        }
        command
    }
}

/// The replication slot of replica `name`: `pgspec_replica_<name>`.
pub fn slot_name(name: &str) -> String {
    format!("pgspec_replica_{}", name.replace('-', "_"))
}

/// The replica a slot belongs to, for slots named by [`slot_name`].
pub fn replica_of_slot(slot: &str) -> Option<&str> {
    slot.strip_prefix("pgspec_replica_")
}

/// Whether `name` may name a replica: lowercase letters, digits and `_`,
/// up to 40 characters (a slot name has at most 63).
pub fn is_replica_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.chars().all(|character| {
            character.is_ascii_lowercase() || character.is_ascii_digit() || character == '_'
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_the_password_file() {
        let replica = Replica::named("ish-chat", "1");
        assert_eq!(replica.container, "ish-chat-replica-1");
        assert_eq!(replica.volume, "ish-chat-replica-1-pgdata");
        assert_eq!(replica.slot, "pgspec_replica_1");
        assert_eq!(replica_of_slot("pgspec_replica_1"), Some("1"));
        assert!(is_replica_name("east_2"));
        assert!(!is_replica_name("East"));
        assert!(!is_replica_name(""));
    }

    #[test]
    fn settings_go_on_the_command_line_and_into_the_hash() {
        let mut replica = Replica::named("x", "1");
        let before = replica.config_hash();
        replica
            .settings
            .insert("work_mem".to_owned(), "8MB".to_owned());
        assert_ne!(before, replica.config_hash());
        assert_eq!(replica.command(), ["postgres", "-c", "work_mem=8MB"]);
    }
}
