//! The `monitoring` section of the spec format.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::secret::SecretRef;

/// The `monitoring` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitoringSpec {
    /// Where `pgspec status` turns a line yellow or red.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<ThresholdsSpec>,
    /// Metrics exporters pgspec runs as containers on the deployment
    /// network, logging in as a monitoring role it creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporter: Option<ExporterSpec>,
}

/// `monitoring.exporter`: a PostgreSQL metrics exporter (and one for
/// PgBouncer when there is a pooler), each `<name>-postgres-exporter` or
/// `<name>-pgbouncer-exporter`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExporterSpec {
    /// Image of the server's exporter, with prometheus-community's
    /// postgres_exporter contract: `DATA_SOURCE_URI`, `DATA_SOURCE_USER`,
    /// `DATA_SOURCE_PASS_FILE`, `/metrics` on port 9187.
    pub image: String,
    /// Image of the pooler's exporter, run when it is set and the spec has a
    /// pooler: `PGBOUNCER_HOST`, `PGBOUNCER_PORT`, `PGBOUNCER_USER` (Debian's
    /// prometheus-pgbouncer-exporter) and libpq's `PGHOST`, `PGPORT`,
    /// `PGUSER`, `PGDATABASE`, `PGPASSFILE`; `/metrics` on port 9127.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler_image: Option<String>,
    /// Host port for the server exporter's `/metrics`; left out, it is
    /// reached on the deployment network only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Host port for the pooler exporter's `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler_port: Option<i64>,
    /// Host address the ports are published on (default `127.0.0.1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_address: Option<String>,
    /// The role the exporters log in as (default `pgspec_monitor`): LOGIN,
    /// a member of `pg_monitor`, nothing else. pgspec creates it; it must
    /// not be one of `roles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The role's password; the exporters read it from a file pgspec writes
    /// into their containers, never from their environment.
    pub password: SecretRef,
}

/// Thresholds of `pgspec status`; what is left out keeps pgspec's default.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsSpec {
    /// Connections in use against `max_connections` and each role's
    /// connection limit (default warn `70%`, critical `90%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<PercentThresholdSpec>,
    /// Free space on the data directory's file system, as a share of it:
    /// yellow below `warn`, red below `critical` (default warn `20%`,
    /// critical `10%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_free: Option<PercentThresholdSpec>,
}

/// A share of a limit: yellow from `warn`, red from `critical`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PercentThresholdSpec {
    /// A percentage such as `70%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<Percent>,
    /// A percentage such as `90%`, at least `warn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<Percent>,
}

/// A percentage: `70%`, or a bare number of percent.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Percent {
    Number(f64),
    Text(String),
}

impl Percent {
    /// The number of percent, or why it is not one.
    pub fn value(&self) -> Result<f64, String> {
        match self {
            Percent::Number(number) => crate::model::monitoring::parse_percent(&number.to_string()),
            Percent::Text(text) => crate::model::monitoring::parse_percent(text),
        }
    }
}
