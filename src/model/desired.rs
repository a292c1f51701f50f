//! What a command works towards: the desired deployment a spec lowers to,
//! how to reach its server, and the policy the diff follows. `spec::validate`
//! builds it; `live`, `plan` and `apply` read it without knowing the spec's
//! file format.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::Deployment;
use crate::secret::Secret;

/// A validated spec: the desired deployment plus how to reach it and the
/// policy the diff follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    /// The file it came from, as given on the command line.
    pub path: PathBuf,
    pub deployment: Deployment,
    pub connection: Connection,
    pub options: DiffOptions,
    /// What `status` judges against.
    #[serde(default)]
    pub monitoring: crate::model::Monitoring,
}

/// How pgspec connects to the server, as far as the spec says. Unset fields
/// fall back (in `live`) to the container's published port and superuser,
/// then to the libpq environment variables, then to libpq's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// libpq's `sslmode`: `disable`, `prefer`, `require`, `verify-ca` or
    /// `verify-full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<String>,
    /// The CA certificate file the server's certificate is checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslrootcert: Option<PathBuf>,
    /// The Docker Engine the spec names (`postgres.engine`): a URL or a
    /// docker context's name; `None` for the environment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
}

/// Policy for the diff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffOptions {
    /// Remove objects pgspec created that the spec no longer lists.
    pub prune: bool,
    /// Test hook: the largest table (bytes) a new index is built on with a
    /// plain `CREATE INDEX`; `None` is `PLAIN_BUILD_MAX_BYTES`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_index_max_bytes: Option<i64>,
}
