//! `monitoring.exporter`: metrics exporters pgspec runs beside the server
//! (and the pooler), on the deployment network, logging in as a monitoring
//! role whose password they read from a file.
//!
//! The contract pgspec gives an exporter image is its environment (below)
//! and the password files; what it sets at creation is hashed into the
//! container's `org.pgspec.config-hash` label, so any change to it replaces
//! the container.

use serde::{Deserialize, Serialize};

use crate::model::{ContainerState, Deployment};
use crate::secret::Secret;

/// The directory pgspec writes the monitoring role's password into, only
/// the exporter's user may read it.
pub const PASSWORD_DIRECTORY: &str = "/etc/pgspec/monitoring";
/// The password alone (`DATA_SOURCE_PASS_FILE`).
pub const PASSWORD_FILE: &str = "/etc/pgspec/monitoring/password";
/// The same password as a libpq password file (`PGPASSFILE`).
pub const PGPASS_FILE: &str = "/etc/pgspec/monitoring/pgpass";
/// The monitoring role's name when the spec does not name one.
pub const DEFAULT_ROLE: &str = "pgspec_monitor";

/// What an exporter exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExporterKind {
    /// The server: prometheus-community's postgres_exporter contract.
    Postgres,
    /// PgBouncer's admin console.
    Pgbouncer,
}

impl ExporterKind {
    pub const ALL: [ExporterKind; 2] = [ExporterKind::Postgres, ExporterKind::Pgbouncer];

    pub fn as_str(self) -> &'static str {
        match self {
            ExporterKind::Postgres => "postgres",
            ExporterKind::Pgbouncer => "pgbouncer",
        }
    }

    /// The port the exporter serves `/metrics` on inside its container:
    /// each exporter's registered default.
    pub fn listen_port(self) -> u16 {
        match self {
            ExporterKind::Postgres => 9187,
            ExporterKind::Pgbouncer => 9127,
        }
    }

    /// Docker name of the exporter container.
    pub fn container(self, deployment: &str) -> String {
        format!("{deployment}-{}-exporter", self.as_str())
    }
}

/// A metrics exporter container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exporter {
    pub kind: ExporterKind,
    pub image: String,
    /// Published on the host at `bind_address:port`, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub bind_address: String,
    /// The monitoring role it logs in as.
    pub role: String,
    /// Desired only: the role's password, written into the container as a
    /// file, never into its environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Live only: run state of the container.
    #[serde(default, skip_serializing_if = "ContainerState::is_running")]
    pub state: ContainerState,
    /// Live only: the image id the container runs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_id: String,
    /// Live only: the `org.pgspec.config-hash` label.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config_hash: String,
    /// Live only: whether the container's password file holds the spec's
    /// password; `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_matches: Option<bool>,
}

impl Exporter {
    /// The environment pgspec gives the container: where to find what it
    /// exports, as whom, and which file holds the password.
    ///
    /// The server exporter gets prometheus-community's postgres_exporter
    /// variables; the pooler exporter those of Debian's
    /// prometheus-pgbouncer-exporter and libpq's (`PGHOST`, `PGPORT`,
    /// `PGUSER`, `PGDATABASE`, `PGPASSFILE`), which other libpq-based
    /// exporters read too. No password is in it.
    pub fn environment(&self, deployment: &Deployment) -> Vec<String> {
        let server = deployment
            .container
            .as_ref()
            .map(|container| container.name.clone())
            .unwrap_or_default();
        let role = &self.role;
        let mut environment = match self.kind {
            ExporterKind::Postgres => vec![
                format!("DATA_SOURCE_URI={server}:5432/postgres?sslmode=disable"),
                format!("DATA_SOURCE_USER={role}"),
                format!("DATA_SOURCE_PASS_FILE={PASSWORD_FILE}"),
            ],
            ExporterKind::Pgbouncer => {
                let pooler = deployment.pooler_container();
                vec![
                    format!("PGBOUNCER_HOST={pooler}"),
                    "PGBOUNCER_PORT=6432".to_owned(),
                    format!("PGBOUNCER_USER={role}"),
                    format!("PGHOST={pooler}"),
                    "PGPORT=6432".to_owned(),
                    format!("PGUSER={role}"),
                    "PGDATABASE=pgbouncer".to_owned(),
                ]
            }
        };
        environment.push(format!("PGPASSFILE={PGPASS_FILE}"));
        environment.sort();
        environment.dedup();
        environment
    }

    /// The hash of everything pgspec sets at creation but the image and the
    /// port (compared apart): the environment and the network.
    pub fn config_hash(&self, deployment: &Deployment) -> String {
        use sha2::Digest;
        let network = deployment
            .container
            .as_ref()
            .map(|container| container.network.as_str())
            .unwrap_or_default();
        let mut hasher = sha2::Sha256::new();
        for part in self.environment(deployment) {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        hasher.update(network.as_bytes());
        let digest = hasher.finalize();
        hex::encode(&digest[..8])
    }

    /// `bind_address:port`, or `not published`.
    pub fn published(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.bind_address),
            None => "not published".to_owned(),
        }
    }
}
