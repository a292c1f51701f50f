//! A database and what pgspec manages inside it: extensions, schemas and
//! privileges (the spec's grants and the live ACLs they are compared with).
//! Indexes are in `model::indexes`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Index, IndexCheck};

/// A database and what pgspec manages inside it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Database {
    pub name: String,
    /// Desired: `None` leaves the owner alone. Live: always set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, Extension>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schemas: BTreeMap<String, Schema>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub indexes: BTreeMap<String, Index>,
    /// Live only: the server's reading of each desired index, by the desired
    /// index's name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub index_checks: BTreeMap<String, IndexCheck>,
    /// Live only: privileges on the objects the desired grants are about,
    /// one entry per object, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acls: Vec<Acl>,
}

/// An installed (live) or wanted (desired) extension.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Extension {
    pub name: String,
    /// Desired: `None` accepts whatever is installed. Live: always set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Desired: `None` accepts any schema. Live: always set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Live only: pgspec created this extension.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub managed: bool,
}

/// A schema inside a database.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Extensions that work only when their library (of the same name) is in
/// `shared_preload_libraries`.
pub const PRELOADED_EXTENSIONS: &[&str] = &[
    "pg_stat_statements",
    "pg_cron",
    "pgaudit",
    "timescaledb",
    "citus",
    "pg_stat_kcache",
    "pg_wait_sampling",
    "pg_qualstats",
    "pglogical",
    "pg_squeeze",
];

/// What a grant applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GrantTarget {
    Database,
    Schema {
        schema: String,
    },
    Tables {
        schema: String,
        names: Option<Vec<String>>,
    },
    Sequences {
        schema: String,
        names: Option<Vec<String>>,
    },
    Functions {
        schema: String,
        names: Option<Vec<String>>,
    },
    Default {
        schema: String,
        object: String,
        for_role: Option<String>,
    },
}

/// Privileges a grantee holds on a target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Grant {
    pub grantee: String,
    pub target: GrantTarget,
    /// Upper-case privilege names, sorted.
    pub privileges: Vec<String>,
}

/// An object privileges are granted on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AclObject {
    Database,
    Schema {
        schema: String,
    },
    /// A table, view, materialized view or foreign table.
    Table {
        schema: String,
        name: String,
    },
    Sequence {
        schema: String,
        name: String,
    },
    Function {
        schema: String,
        name: String,
        /// `pg_get_function_identity_arguments`, telling overloads apart.
        arguments: String,
    },
    /// Default privileges for objects `for_role` creates later in `schema`
    /// (`""` for every schema). `object` is `tables`, `sequences`,
    /// `functions`, `types` or `schemas`.
    Default {
        schema: String,
        object: String,
        for_role: String,
    },
}

/// The privileges each grantee holds on one object, with `acldefault`
/// standing in for a NULL ACL. `PUBLIC` is a grantee like any other.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Acl {
    pub object: AclObject,
    /// Grantee → upper-case privilege names, sorted.
    pub privileges: BTreeMap<String, Vec<String>>,
}
