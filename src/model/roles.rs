//! Cluster-wide roles, their memberships, and what is known of a live
//! role's password (only the outcome of checking it, never a verifier).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// A cluster-wide role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub login: bool,
    pub superuser: bool,
    pub createdb: bool,
    pub createrole: bool,
    pub replication: bool,
    pub bypassrls: bool,
    pub inherit: bool,
    pub connection_limit: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// Desired: the secret reference. Live: never set (the verifier is
    /// checked, not copied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_of: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    /// Live only: pgspec created this role.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub managed: bool,
    /// Live only: the stored password checked against the desired secret.
    /// Only the outcome is kept, never the verifier or the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_state: Option<PasswordState>,
    /// Live only: each grant that makes this role a member of another, with
    /// its grantor and options (`member_of` lists the roles once each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memberships: Vec<Membership>,
}

/// The most PBKDF2 iterations pgspec spends on one stored verifier.
///
/// Any role can store a verifier of its own making (`ALTER ROLE … PASSWORD
/// 'SCRAM-SHA-256$<iterations>:…'`), and checking it costs time in
/// proportion to its iteration count: 2^31 - 1 would take minutes of CPU per
/// role, on every plan. PostgreSQL makes verifiers with 4096 iterations
/// (`scram_iterations`, PostgreSQL 16 and later, lets that be raised); OWASP
/// recommends 600 000 for PBKDF2-HMAC-SHA-256. A cap of 1 000 000 keeps
/// deliberately hardened verifiers checkable while bounding a check to about
/// a second of one core; above it the state is [`PasswordState::TooManyIterations`], which
/// the plan reports as a password it cannot verify and leaves alone.
pub const MAX_SCRAM_ITERATIONS: u32 = 1_000_000;

/// How a live role's stored password compares with the spec's secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordState {
    /// The SCRAM verifier was made from the secret.
    Matches,
    /// The SCRAM verifier was made from another password.
    Differs,
    /// The password is stored as an MD5 hash; the spec wants SCRAM-SHA-256.
    Md5,
    /// The role has no password.
    Missing,
    /// The connecting role cannot read `pg_authid`, so nothing is known.
    Unverifiable,
    /// The SCRAM verifier asks for more PBKDF2 iterations than pgspec spends
    /// on one check ([`MAX_SCRAM_ITERATIONS`]), so it
    /// was not checked.
    TooManyIterations { iterations: u32 },
}

/// One membership grant: the role is a member of `role`, granted by
/// `grantor`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Membership {
    pub role: String,
    pub grantor: String,
    pub admin: bool,
    /// PostgreSQL 16+: the grant's INHERIT option; `None` on 15, where the
    /// member's own `inherit` decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherit: Option<bool>,
    /// PostgreSQL 16+: the grant's SET option; `None` on 15.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<bool>,
}
