//! PgBouncer in front of the server: its configuration, what it reports,
//! and the roles it authenticates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ContainerState, Deployment};

/// PgBouncer in front of the server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pooler {
    pub image: String,
    pub port: u16,
    pub bind_address: String,
    /// PgBouncer settings by name, as PgBouncer's `SHOW CONFIG` prints them.
    pub settings: BTreeMap<String, String>,
    /// Per-database overrides: database → setting → value. Live: every
    /// database PgBouncer serves, with `pool_size`, `pool_mode` and
    /// `max_db_connections` as `SHOW DATABASES` reports them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub databases: BTreeMap<String, BTreeMap<String, String>>,
    /// Live only: run state of the `<deployment>-pgbouncer` container.
    #[serde(default, skip_serializing_if = "ContainerState::is_running")]
    pub state: ContainerState,
    /// Live only: Docker id of the container and of its image.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_id: String,
    /// Live only: the deployment network, when the container is attached.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    /// Live only: why PgBouncer's admin console did not answer a running
    /// container; `settings` and `databases` are then unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_error: Option<String>,
    /// Live only: the roles of the auth file and the roles the pooler should
    /// serve, each with the state of its SCRAM verifier.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, PoolerUser>,
}

impl Pooler {
    /// PgBouncer's auth file inside the pooler container.
    pub const AUTH_FILE: &'static str = "/etc/pgbouncer/userlist.txt";

    /// The settings pgspec writes whatever the spec says, as `SHOW CONFIG`
    /// reports them. Only those PgBouncer can change online are listed, so a
    /// value changed by hand on the console (`SET auth_type = trust`) is
    /// drift that a reload undoes.
    pub fn base_settings(admin_user: &str) -> BTreeMap<String, String> {
        [
            ("auth_type", "scram-sha-256"),
            ("auth_file", Self::AUTH_FILE),
            ("admin_users", admin_user),
            ("ignore_startup_parameters", "extra_float_digits"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
    }
}

impl Deployment {
    /// Docker name of the pooler container.
    pub fn pooler_container(&self) -> String {
        format!("{}-pgbouncer", self.name)
    }

    /// The roles the pooler authenticates, sorted: the superuser (PgBouncer's
    /// admin, through whom pgspec reads the admin console) and every login
    /// role of the spec.
    pub fn pooler_users(&self) -> Vec<String> {
        let mut users: Vec<String> = self
            .roles
            .values()
            .filter(|role| role.login)
            .map(|role| role.name.clone())
            .collect();
        if let Some(container) = &self.container {
            users.push(container.superuser.clone());
        }
        users.sort();
        users.dedup();
        users
    }
}

/// The state of a role's SCRAM verifier in PgBouncer's auth file, compared
/// with the one in the server's `pg_authid`. Only the outcome is kept, never
/// a verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolerUser {
    /// The auth file holds the server's verifier.
    Current,
    /// The auth file lacks the role, holds another verifier, or holds one the
    /// server no longer has.
    Stale,
    /// Neither holds a SCRAM verifier: the role cannot log in through the
    /// pooler until it has a password.
    NoVerifier,
}
