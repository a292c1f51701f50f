//! The deployment as plain data, used for both the desired and the live side.
//!
//! `spec::validate` lowers a spec file into a `Deployment` (desired);
//! `live::observe` reads one from Docker and PostgreSQL (live). `plan::diff`
//! compares two of them. Nothing here does I/O. Maps are `BTreeMap` so that
//! every rendering of the same deployment is byte-identical.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

pub mod address;
pub mod data;
pub mod desired;
pub mod notation;
pub mod privileges;

pub use desired::{Connection, Desired, DiffOptions};

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

/// The server settings of the PostgreSQL majors pgspec supports (15 to
/// 18), lower case, sorted: what `validate` checks a spec's setting names
/// against. Settings with a dot (`pg_stat_statements.max`) belong to
/// extensions and are not listed.
pub fn known_settings() -> impl Iterator<Item = &'static str> {
    include_str!("settings.txt")
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
}

/// Whether `name` is a server setting of a supported major (names are
/// case-insensitive, as PostgreSQL reads them).
pub fn is_known_setting(name: &str) -> bool {
    let lower = name.to_lowercase();
    known_settings().any(|known| known == lower)
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
    /// What the live server is (version, available extensions). Empty on the
    /// desired side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerInfo>,
    /// Live only: local Docker images the spec names, by reference.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, Image>,
}

/// A local Docker image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    /// `PG_MAJOR` from the image's environment, as the official image sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_major: Option<u32>,
    /// `PGDATA` from the image's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgdata: Option<String>,
    /// The volumes the image declares (`VOLUME`), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
}

impl Image {
    /// Where a container of this image keeps its data directory.
    pub fn data_layout(&self) -> data::DataLayout {
        data::DataLayout::of_image(self.pgdata.as_deref(), &self.volumes)
    }
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

/// The PostgreSQL server container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Container {
    /// Docker name of the container (`<deployment>-postgres`).
    pub name: String,
    pub image: String,
    /// Host port the server's 5432 is published on.
    pub port: u16,
    pub bind_address: String,
    /// Named volume holding the data directory. Live: the volume holding
    /// `pgdata`, named or anonymous; empty when no volume does.
    pub volume: String,
    /// Where the volume is mounted inside the container. Desired: derived
    /// from the image (`model::data`), empty until the image is known.
    pub data_mount: String,
    /// The data directory (`PGDATA`). Desired: derived from the image like
    /// `data_mount`; live: the container's `PGDATA`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pgdata: String,
    /// Live only: the kind of mount holding `pgdata` (`volume`, `bind`,
    /// `tmpfs`); empty when it is in the container's own file system.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data_kind: String,
    /// CPU limit in nano-CPUs (Docker's unit); `None` is no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    /// Memory limit in bytes; `None` is no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<i64>,
    /// /dev/shm size in bytes; `None` is the engine default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_bytes: Option<i64>,
    pub superuser: String,
    /// The superuser password; only the desired side has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superuser_password: Option<Secret>,
    pub state: ContainerState,
    /// Docker id of the live container; empty on the desired side.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Id of the live container's image; empty on the desired side.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_id: String,
    /// `PG_VERSION` of the data directory on the volume, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_major: Option<u32>,
    /// Whether the data volume exists (live) — the desired side wants it to.
    pub volume_exists: bool,
    /// The deployment's Docker network the container is attached to
    /// (`<deployment>-net`); live: empty when it is not attached.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    /// Live only: whether the deployment's network exists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network_exists: bool,
    /// Docker restart policy (`unless-stopped`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub restart_policy: String,
    /// Live only: CPUs and memory (bytes) the Docker engine has, the most a
    /// container can be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_cpus: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_memory_bytes: Option<i64>,
    /// The health check the engine runs in the container, in Docker's
    /// `Test` form (`["CMD", "pg_isready", …]`); empty when there is none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_check: Vec<String>,
    /// Live only: the engine's health verdict (`starting`, `healthy`,
    /// `unhealthy`), with the last check's output when unhealthy; `None`
    /// when the container has no health check or is not running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Live only: the `org.pgspec.config-hash` label, the hash of the
    /// configuration pgspec created the container from; empty when the
    /// container has none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config_hash: String,
}

impl Container {
    /// Where this (live) container's data directory is.
    pub fn data_home(&self) -> data::DataHome {
        data::DataHome {
            pgdata: self.pgdata.clone(),
            kind: self.data_kind.clone(),
            volume: self.volume.clone(),
            mount: self.data_mount.clone(),
        }
    }

    /// This desired container with the data layout of its image.
    pub fn with_layout(&self, layout: &data::DataLayout) -> Container {
        Container {
            pgdata: layout.pgdata.clone(),
            data_mount: layout.mount.clone(),
            ..self.clone()
        }
    }

    /// The health check pgspec gives a server container: the server accepts
    /// TCP connections. It checks 127.0.0.1, not the socket, so the
    /// temporary socket-only server of a first initialisation is not taken
    /// for the real one.
    pub fn server_health_check(superuser: &str) -> Vec<String> {
        [
            "CMD",
            "pg_isready",
            "--quiet",
            "--host",
            "127.0.0.1",
            "--port",
            "5432",
            "--dbname",
            "postgres",
            "--username",
            superuser,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Hash of everything pgspec sets when it creates the container and the
    /// engine cannot change afterwards: image, published port, data mount,
    /// network, /dev/shm, health check and the initialisation environment.
    /// Resources and the restart policy are left out: `docker update`
    /// changes them in place. The superuser's name and password matter only
    /// when the data directory is first created, so only whether a password
    /// file is used counts.
    pub fn creation_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut fields = serde_json::json!({
            // What `apply::docker` sets that no field here says (the
            // environment, initdb's arguments, the health check's timing):
            // raise it when that changes, and existing containers are
            // replaced once to match.
            "template": 1,
            "image": self.image,
            "port": [self.bind_address, self.port],
            "mount": [self.volume, self.data_mount],
            "network": self.network,
            "shm": self.shm_bytes,
            "health_check": self.health_check,
            "password_file": self.superuser_password.is_some(),
        });
        // PGDATA is the mount itself in the images of PostgreSQL 17 and
        // before; it is hashed only when it differs, so that their
        // containers keep the hash they were created with.
        if !self.pgdata.is_empty() && self.pgdata != self.data_mount {
            fields["pgdata"] = serde_json::Value::String(self.pgdata.clone());
        }
        let digest = Sha256::digest(fields.to_string().as_bytes());
        hex::encode(&digest[..8])
    }
}

/// Run state of a container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    #[default]
    Running,
    Stopped,
    /// The engine keeps restarting it: the server exits soon after it
    /// starts.
    Restarting,
    /// The container does not exist.
    Missing,
}

impl ContainerState {
    /// Whether the container runs (for `skip_serializing_if`).
    pub fn is_running(&self) -> bool {
        *self == ContainerState::Running
    }
}

/// A server setting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    /// The value as text, in the form `ALTER SYSTEM` accepts.
    pub value: String,
    /// Live only: the unit pg_settings reports (`8kB`, `ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Live only: `postmaster`, `sighup`, `user`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Live only: where the value comes from (`configuration file`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Live only: a new value is written but needs a restart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_restart: bool,
    /// Live only: `bool`, `integer`, `real`, `string` or `enum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vartype: Option<String>,
    /// Live only: the value the configuration files hold when it is not yet
    /// in effect (written by `ALTER SYSTEM`, waiting for a reload or restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_value: Option<String>,
}

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

/// An index. Desired indexes carry the spec's parts; live ones the server's
/// definition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    pub name: String,
    pub schema: String,
    pub table: String,
    /// `CREATE INDEX` text pgspec would run (desired) or `pg_get_indexdef`
    /// (live).
    pub definition: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invalid: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub managed: bool,
    /// Live only: the primary key, unique or exclusion constraint this index
    /// backs; such an index belongs to its constraint and pgspec never
    /// touches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    /// Live only: size on disk in bytes, as of the last build, VACUUM or
    /// ANALYZE (`pg_class.relpages`). Read but never written out: it moves
    /// with every autovacuum, and the live fingerprint of a saved plan must
    /// not.
    #[serde(default, skip_serializing)]
    pub size_bytes: Option<i64>,
    /// Live only: what pgspec wrote in the comment of an index it built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<IndexStamp>,
}

/// The record pgspec keeps in the comment of an index it builds
/// (`managed by pgspec; deployment=…; spec=…; built=…`): the hash of the definition it
/// ran, and the hash of what the server printed for the index right after.
/// While both still hold — the spec asks for the same definition, and
/// `pg_get_indexdef` prints the same text — the index is what the spec
/// says, and the server need not canonicalise the definition again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexStamp {
    /// The deployment that built the index; `None` in the stamps of
    /// versions before stamps named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    pub spec: String,
    pub built: String,
}

impl IndexStamp {
    /// The comment up to the built hash, which the server appends:
    /// `managed by pgspec; deployment=<name>; spec=<spec>; built=`.
    pub fn comment_prefix(deployment: &str, spec: &str) -> String {
        format!("{}; spec={spec}; built=", managed_mark(deployment))
    }

    /// Reads a stamp from an index comment; `None` for any other text.
    pub fn parse(comment: &str) -> Option<IndexStamp> {
        let rest = comment.strip_prefix(MANAGED_MARK)?;
        let (deployment, rest) = match rest.strip_prefix("; deployment=") {
            Some(named) => {
                let (deployment, rest) = named.split_once("; spec=")?;
                (Some(deployment.to_owned()), rest)
            }
            None => (None, rest.strip_prefix("; spec=")?),
        };
        let (spec, built) = rest.split_once("; built=")?;
        let hex = |text: &str| text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit());
        (hex(spec) && hex(built) && deployment.as_ref().is_none_or(|name| !name.is_empty())).then(
            || IndexStamp {
                deployment,
                spec: spec.to_owned(),
                built: built.to_owned(),
            },
        )
    }

    /// Whether the stamp says `deployment` built the index; a stamp naming
    /// no deployment counts as it does only on a server the spec runs, as
    /// for the bare mark (`marks_own`).
    pub fn names(&self, deployment: &str, owns_server: bool) -> bool {
        match &self.deployment {
            Some(name) => name == deployment,
            None => owns_server,
        }
    }

    /// Whether the stamp proves `live` (its `pg_get_indexdef`) is the index
    /// `desired` defines.
    pub fn proves(&self, desired: &Index, live_definition: &str) -> bool {
        self.spec == stamp_hash(&desired.definition) && self.built == stamp_hash(live_definition)
    }
}

/// The hash a stamp records: the first 16 hex digits of SHA-256 of the
/// text's UTF-8 bytes — what the server computes with
/// `left(encode(sha256(convert_to(text, 'UTF8')), 'hex'), 16)`.
pub fn stamp_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

impl Index {
    /// A desired definition split around its name and table:
    /// `("CREATE UNIQUE ", "USING btree (…) WHERE …")`, so that the same
    /// index can be built under another name, on another table or
    /// CONCURRENTLY. `None` when the definition is not in the form
    /// `spec::validate::index_definition` writes.
    pub fn definition_parts(&self) -> Option<(&'static str, &str)> {
        let target = format!(
            "INDEX {} ON {} ",
            crate::sql::quote_ident(&self.name),
            crate::sql::qualified(&self.schema, &self.table)
        );
        ["CREATE ", "CREATE UNIQUE "]
            .into_iter()
            .find_map(|create| {
                self.definition
                    .strip_prefix(create)
                    .and_then(|rest| rest.strip_prefix(target.as_str()))
                    .map(|rest| (create, rest))
            })
    }
}

/// The key of an index in `Database::indexes` of the live side: its name,
/// qualified by its schema unless that is `public`, because index names are
/// unique per schema, not per database.
pub fn index_key(schema: &str, name: &str) -> String {
    if schema == "public" {
        name.to_owned()
    } else {
        format!("{schema}.{name}")
    }
}

/// Live only: what the server made of a desired index's definition. `live`
/// builds the desired index on a scratch copy of its table and records
/// `pg_get_indexdef`, so that `diff` compares definitions the way the server
/// writes them, without a deparser of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IndexCheck {
    /// The definition as `pg_get_indexdef` would print it for the desired
    /// index on its real table.
    Canonical {
        definition: String,
        /// The table is partitioned, and PostgreSQL cannot build an index on
        /// a partitioned table concurrently.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        partitioned: bool,
    },
    /// The table the index is on does not exist (yet: the application's
    /// migrations create it).
    TableMissing {
        /// The existing table of that schema whose name is closest, when
        /// one is close enough to be a misspelling.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        closest: Option<String>,
    },
    /// The server rejected the definition (SQLSTATE and message).
    Rejected { code: String, message: String },
}

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

/// Backup schedules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub destination: BackupDestination,
    pub schedules: BTreeMap<String, BackupSchedule>,
    /// The container that runs the schedules. Desired: `None` (diff derives
    /// it from the server container). Live: the observed one, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<BackupAgent>,
    /// Live only: whether the destination volume exists (a directory
    /// destination always counts as existing).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub destination_exists: bool,
}

/// The backup container (`<deployment>-backup`): the server's image, with
/// pgspec's backup agent as its entrypoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupAgent {
    pub name: String,
    pub image: String,
    /// The deployment's network, on which the server is reached by name.
    pub network: String,
    /// Host name of the server the agent dumps (`<deployment>-postgres`).
    pub server: String,
    pub superuser: String,
    /// Desired only: the superuser password, sent into the container as a
    /// password file when it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superuser_password: Option<Secret>,
    /// The pgspec version of the agent.
    pub version: String,
    pub running: bool,
    /// Live only: id of the container's image.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_id: String,
    /// Live only: whether the container's password file holds the spec's
    /// superuser password. Only the outcome is kept; `None` when unknown
    /// (no password in the spec, or the file cannot be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_matches: Option<bool>,
}

/// Where backups go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupDestination {
    Volume(String),
    Directory(String),
}

impl Default for BackupDestination {
    fn default() -> Self {
        BackupDestination::Volume(String::new())
    }
}

/// One backup schedule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupSchedule {
    pub name: String,
    pub cron: String,
    pub kind: String,
    pub format: String,
    pub databases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_count: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(definition: &str) -> Index {
        Index {
            definition: definition.to_owned(),
            ..Index::default()
        }
    }

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

    #[test]
    fn a_stamp_proves_only_the_definition_it_was_made_for() {
        let spec = "CREATE INDEX \"i\" ON \"public\".\"t\" USING btree (\"a\")";
        let built = "CREATE INDEX i ON public.t USING btree (a)";
        let comment = IndexStamp::comment_prefix("ledger", &stamp_hash(spec)) + &stamp_hash(built);
        let stamp = IndexStamp::parse(&comment).expect("a stamp");
        assert!(stamp.names("ledger", false));
        assert!(!stamp.names("threadr", true));
        assert!(stamp.proves(&desired(spec), built));
        // Another definition in the spec, or another one on the server.
        assert!(!stamp.proves(&desired(&spec.replace("\"a\"", "\"b\"")), built));
        assert!(!stamp.proves(
            &desired(spec),
            "CREATE INDEX i ON public.t USING btree (a) WITH (fillfactor='70')"
        ));
    }

    #[test]
    fn only_well_formed_stamps_parse() {
        assert_eq!(IndexStamp::parse(MANAGED_MARK), None);
        assert_eq!(IndexStamp::parse("some note"), None);
        assert_eq!(
            IndexStamp::parse("managed by pgspec; spec=xyz; built=0123456789abcdef"),
            None
        );
        let hash = stamp_hash("x");
        assert_eq!(hash.len(), 16);
        // A stamp of a version before stamps named the deployment.
        let old = IndexStamp::parse(&format!("{MANAGED_MARK}; spec={hash}; built={hash}"))
            .expect("an old stamp");
        assert!(old.names("ledger", true) && !old.names("ledger", false));
        assert_eq!(
            IndexStamp::parse(&format!(
                "{MANAGED_MARK}; deployment=; spec={hash}; built={hash}"
            )),
            None
        );
    }

    #[test]
    fn the_creation_hash_ignores_what_docker_update_changes() {
        let container = Container {
            image: "postgres:17".to_owned(),
            port: 5432,
            health_check: Container::server_health_check("postgres"),
            ..Container::default()
        };
        let resized = Container {
            nano_cpus: Some(2_000_000_000),
            memory_bytes: Some(1 << 30),
            restart_policy: "always".to_owned(),
            ..container.clone()
        };
        assert_eq!(container.creation_hash(), resized.creation_hash());
        let moved = Container {
            port: 5433,
            ..container.clone()
        };
        assert_ne!(container.creation_hash(), moved.creation_hash());
    }
}
