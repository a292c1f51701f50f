//! The deployment as plain data, used for both the desired and the live side.
//!
//! `spec::validate` lowers a spec file into a `Deployment` (desired);
//! `live::observe` reads one from Docker and PostgreSQL (live). `plan::diff`
//! compares two of them. Nothing here does I/O. Maps are `BTreeMap` so that
//! every rendering of the same deployment is byte-identical.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod access;
pub mod address;
pub mod backup;
mod container;
pub mod data;
mod databases;
pub mod desired;
mod indexes;
pub mod monitoring;
pub mod notation;
mod pooler;
pub mod privileges;
pub mod replicas;
mod roles;
pub mod settings;
pub mod tls;
pub mod upgrade;

pub use backup::{Archiver, Backup, BackupAgent, BackupDestination, BackupSchedule, RestoreTest};
pub use container::{
    ADOPTED_MARK, Container, ContainerState, Image, NetworkAttachment, UpgradeMethod, adopted_mark,
    upgrade_kept_volume,
};
pub use databases::{
    Acl, AclObject, Database, Extension, Grant, GrantTarget, Grantees, PRELOADED_EXTENSIONS, Schema,
};
pub use desired::{Connection, Desired, DiffOptions};
pub use indexes::{Index, IndexCheck, IndexStamp, index_key, stamp_hash};
pub use monitoring::{FreeThreshold, Monitoring, Threshold, Thresholds};
pub use pooler::{PoolRoute, Pooler, PoolerUser};
pub use roles::{MAX_SCRAM_ITERATIONS, Membership, PasswordState, Role};
pub use settings::{Setting, is_known_setting, known_settings};
pub use tls::{CertificateInfo, Tls, TlsFiles, TlsSource};

/// Labels pgspec puts on the Docker objects it creates.
pub mod labels {
    pub const DEPLOYMENT: &str = "org.pgspec.deployment";
    pub const MANAGED: &str = "org.pgspec.managed";
    pub const VERSION: &str = "org.pgspec.version";
    /// The hash of what pgspec sets when it creates the server container.
    pub const CONFIG_HASH: &str = "org.pgspec.config-hash";
    /// What a container is for, where a deployment has several of one kind:
    /// `backup` on the backup container, `verify` on a scratch server,
    /// `agent-check` or `data-check` on a never-started check container.
    pub const ROLE: &str = "org.pgspec.role";
}

/// The start of the comment pgspec puts on objects it creates, so that it
/// removes only its own objects when pruning. Versions before the mark named
/// the deployment wrote this text alone (the bare mark).
pub const MANAGED_MARK: &str = "managed by pgspec";

/// The comment pgspec puts on a role, database, schema or extension it
/// creates for `deployment`: `managed by pgspec; deployment=<name>`. Two
/// deployments that share a server each prune only what carries their own
/// name.
pub fn managed_mark(deployment: &str) -> String {
    format!("{MANAGED_MARK}; deployment={deployment}")
}

/// Whether an object's comment says pgspec created it for `deployment`.
///
/// The bare mark of older versions names no deployment. It counts as this
/// deployment's only when the spec runs the server's container
/// (`owns_server`): that server was made for this deployment, so the bare
/// marks on it were written by applies of this spec. On a server pgspec does
/// not run, which is where several specs meet, a bare mark could be any of
/// them, so the object is reported and left alone, never pruned; its owner
/// claims it by writing this deployment's mark in its comment.
pub fn marks_own(comment: &str, deployment: &str, owns_server: bool) -> bool {
    comment == managed_mark(deployment) || (owns_server && comment == MANAGED_MARK)
}

/// A whole deployment: server, roles, databases, pooler and backups.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub name: String,
    /// The server container; `None` when pgspec manages no container (desired)
    /// or none was found (live).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// Server settings by name. Desired values are as written; live values
    /// are as `pg_settings` reports them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, Setting>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, Role>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub databases: BTreeMap<String, Database>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler: Option<Pooler>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
    /// Client authentication rules (`pg_hba.conf`); `None` on the desired
    /// side leaves the server's file alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<access::Access>,
    /// Metrics exporters (`monitoring.exporter`), by what they export.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exporters: BTreeMap<monitoring::exporter::ExporterKind, monitoring::exporter::Exporter>,
    /// Streaming replicas (`replicas`); `None` on the desired side: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<replicas::Replication>,
    /// The server's TLS (`postgres.tls`); `None` leaves it as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// What the live server is (version, available extensions). Empty on the
    /// desired side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerInfo>,
    /// Live only: local Docker images the spec names, by reference.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, Image>,
    /// Live only: what a pending major version upgrade reads besides (the
    /// databases' sizes, every database's extensions, the new image's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<upgrade::UpgradeFacts>,
}

/// Facts about the live server that the diff needs but that are not objects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// `server_version_num`, e.g. 170002.
    pub version_num: u32,
    /// The role pgspec connects as; it is never altered in ways that would
    /// lock pgspec out, nor dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_user: Option<String>,
    /// `data_directory` as the server reports it; `None` when the role
    /// pgspec connects as may not read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_directory: Option<String>,
    /// Versions each available extension can be installed at.
    #[serde(default)]
    pub available_extensions: BTreeMap<String, AvailableExtension>,
}

/// An extension the server can install.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AvailableExtension {
    pub default_version: Option<String>,
    pub versions: Vec<String>,
    /// Extensions this one requires (from its control file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_name_their_deployment() {
        let ledger = managed_mark("ledger");
        assert_eq!(ledger, "managed by pgspec; deployment=ledger");
        assert!(marks_own(&ledger, "ledger", false));
        assert!(!marks_own(&ledger, "threadr", true));
        assert!(!marks_own(&managed_mark("ledger-2"), "ledger", true));
        assert!(marks_own(MANAGED_MARK, "ledger", true));
        assert!(!marks_own(MANAGED_MARK, "ledger", false));
        assert!(!marks_own("", "ledger", true));
        assert!(!marks_own("managed by pgspec; deployment=", "ledger", true));
    }
}
