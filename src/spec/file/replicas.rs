//! The `replicas` section of the spec format: streaming standbys of the
//! server on the same engine.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ResourcesSpec, SecretRef, SettingValue};

/// Streaming replicas: physical standbys cloned from the server with
/// `pg_basebackup`, each in its own container on its own volume, reached on
/// the deployment's network. Give `count` (replicas named `1`, `2`, …) or
/// `list` (replicas with names, ports and overrides of their own).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicasSpec {
    /// How many replicas, named `1`, `2`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// Replicas by name, each with its own published port, resources and
    /// setting overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub list: Vec<ReplicaSpec>,
    /// The role replicas connect as (`REPLICATION`, `LOGIN`). A role the
    /// spec's `roles` declare keeps its own password; otherwise pgspec
    /// creates it with `password`. Default `pgspec_replicator`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The replication role's password, when the spec's `roles` do not
    /// declare it. Written into each replica's data directory as a
    /// password file, never into a label or the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    /// Resource limits of every replica's container (a replica of `list`
    /// may set its own). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSpec>,
    /// Host address the replicas' ports are published on (default
    /// 127.0.0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_address: Option<String>,
    /// How far behind the server a replica may replay (`64MB`) before the
    /// plan notes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag: Option<String>,
}

/// One replica of `replicas.list`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicaSpec {
    /// Its name: lowercase letters, digits and `_`. The container is
    /// `<deployment>-replica-<name>`, its volume
    /// `<deployment>-replica-<name>-pgdata`, its replication slot
    /// `pgspec_replica_<name>`.
    pub name: String,
    /// Host port it is published on; without it the replica is reached on
    /// the deployment's network only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Its resource limits, in place of `replicas.resources`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSpec>,
    /// Settings this replica runs with in place of the server's (given on
    /// its command line, so they win over `ALTER SYSTEM`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, SettingValue>,
}
