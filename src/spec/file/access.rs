//! The `access` section of the spec format.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

/// One client authentication rule: a line of `pg_hba.conf`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessRuleSpec {
    /// `local` (Unix socket), `host` (TCP, with or without TLS), `hostssl`,
    /// `hostnossl`, `hostgssenc` or `hostnogssenc`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Database names, or `all`, `sameuser`, `samerole`, `replication`
    /// (physical replication connections).
    pub database: AccessNames,
    /// Role names, `+group` for the members of a role, or `all`.
    pub user: AccessNames,
    /// Where clients connect from: a CIDR (`10.0.0.0/8`, `::1/128`), `all`,
    /// `samehost`, `samenet` or a host name. Not on `local` rules; required
    /// on every other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `scram-sha-256`, `md5`, `password`, `trust`, `reject`, `peer` (local
    /// only), `ident`, `cert`, `gss`, `sspi`, `ldap`, `radius`, `pam` or `bsd`.
    pub method: String,
    /// Method options (`map`, `clientcert`, `ldapserver`, ...), written as
    /// `name=value` after the method.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// One name or a list of names.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum AccessNames {
    One(String),
    Many(Vec<String>),
}

impl AccessNames {
    pub fn names(&self) -> Vec<String> {
        match self {
            AccessNames::One(name) => vec![name.clone()],
            AccessNames::Many(names) => names.clone(),
        }
    }
}

/// Whether `access` rules may refuse pgspec's own connection: `refuse`
/// (the default) makes such rules a plan error; `allow` applies them, after
/// which pgspec cannot connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AccessLockout {
    Refuse,
    Allow,
}
