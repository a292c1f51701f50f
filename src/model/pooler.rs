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
    /// Desired: pools that serve another database than their name, or go
    /// to a replica (`pooler.databases.NAME.database`, `.target`), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, PoolRoute>,
    /// Live: where each pool PgBouncer serves goes, as `SHOW DATABASES`
    /// reports it (host, database).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub served: BTreeMap<String, PoolRoute>,
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
    /// Live only: the SHA-256 fingerprint of the TLS certificate in the
    /// container ([`Pooler::TLS_CERT_FILE`]), when the server has TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
    /// Live only: the roles of the auth file and the roles the pooler should
    /// serve, each with the state of its SCRAM verifier.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, PoolerUser>,
    /// Live only: pgspec paused PgBouncer (`PAUSE`, as a major version
    /// upgrade does for the copy) and has not resumed it: its mark
    /// ([`Pooler::PAUSED_MARK`]) in the container says so. A `PAUSE` by
    /// hand is left alone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// Where a pool goes: a database, on the server or on a replica. Live:
/// `replica` is unknown, and `host` says where it goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRoute {
    pub database: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replica: bool,
    /// Live: the host PgBouncer connects to for it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
}

impl Pooler {
    /// PgBouncer's auth file inside the pooler container.
    pub const AUTH_FILE: &'static str = "/etc/pgbouncer/userlist.txt";
    /// The server's certificate and key, which PgBouncer serves its clients
    /// with too (`client_tls_cert_file`, `client_tls_key_file`).
    pub const TLS_CERT_FILE: &'static str = "/etc/pgbouncer/server.crt";
    pub const TLS_KEY_FILE: &'static str = "/etc/pgbouncer/server.key";
    /// A CA file PgBouncer loads for both sides (it fails to start without
    /// one): the server's CA, or its certificate when the spec names no CA.
    /// With `prefer` and `require` nothing is checked against it.
    pub const TLS_CA_FILE: &'static str = "/etc/pgbouncer/ca.crt";
    /// Written before pgspec pauses PgBouncer, emptied once it resumed it
    /// (PgBouncer before 1.21 cannot say whether it is paused).
    pub const PAUSED_MARK: &'static str = "/etc/pgbouncer/pgspec-paused";

    /// The TLS settings PgBouncer gets when the server has TLS: clients may
    /// use it (must, with `require`), with the server's certificate, and
    /// PgBouncer uses TLS to the server when it offers it (must, with
    /// `require`).
    pub fn tls_settings(require: bool) -> BTreeMap<String, String> {
        let mode = if require { "require" } else { "prefer" };
        [
            ("client_tls_sslmode", mode),
            ("client_tls_cert_file", Self::TLS_CERT_FILE),
            ("client_tls_key_file", Self::TLS_KEY_FILE),
            ("client_tls_ca_file", Self::TLS_CA_FILE),
            ("server_tls_sslmode", mode),
            ("server_tls_ca_file", Self::TLS_CA_FILE),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
    }

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
