//! The YAML format users write, mirrored as serde types with a JSON Schema.
//!
//! These types follow what people type: optional fields, shorthands such as
//! `extensions: [pg_trgm]`, and secret references. They are never used to
//! decide anything; `spec::validate` lowers them into `model::Deployment`.
//! Unknown fields are rejected everywhere.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod access;
mod monitoring;
mod replicas;

pub use access::{AccessLockout, AccessNames, AccessRuleSpec};
pub use monitoring::{ExporterSpec, MonitoringSpec, Percent, PercentThresholdSpec, ThresholdsSpec};
pub use replicas::{ReplicaSpec, ReplicasSpec};

/// A pgspec deployment spec.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "pgspec deployment spec")]
pub struct SpecFile {
    /// Version of the spec format. Only `1` exists.
    pub version: u32,
    /// Name of the deployment. Prefixes the Docker objects pgspec creates and
    /// goes into their labels.
    pub name: String,
    /// The PostgreSQL server: a container pgspec runs (with `image`) or an
    /// existing server it connects to (with `connection` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresSpec>,
    /// PgBouncer in front of the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pooler: Option<PoolerSpec>,
    /// Cluster-wide roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleSpec>,
    /// Databases with their extensions, schemas, grants and indexes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<DatabaseSpec>,
    /// Scheduled backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,
    /// Streaming replicas of the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicasSpec>,
    /// What `pgspec status` judges the live deployment against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSpec>,
    /// Client authentication rules (`pg_hba.conf`), in order: the first
    /// rule whose type, database, user and address match a connection
    /// decides its method. With this section pgspec owns the whole file
    /// (what the server has and the spec does not is drift); without it
    /// the server's file is left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Vec<AccessRuleSpec>>,
    /// `allow`: the `access` rules may refuse pgspec's own connection (the
    /// superuser from this host through the published port). Without it
    /// such rules are a plan error, since pgspec could not plan or apply
    /// anything afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_lockout: Option<AccessLockout>,
    /// Remove objects that pgspec created and the spec no longer lists.
    /// Objects pgspec did not create are never removed, and nothing that holds
    /// data (databases, tables, volumes) is ever dropped.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prune: bool,
}

pub use crate::secret::SecretRef;

/// The PostgreSQL server.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSpec {
    /// Container image following the official `postgres` image's contract.
    /// Without it, pgspec manages no container and connects to an existing
    /// server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Docker name of the server container (default `<name>-postgres`).
    /// Name a container that already runs (one a runbook or Compose
    /// started) and pgspec adopts it when its image, port and data volume
    /// match the spec; the pooler and backup containers reach the server by
    /// this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// The deployment's network: where the pooler and backup containers
    /// reach the server by its container name. Default `<name>-net`, which
    /// pgspec creates. Name an existing network instead (a Compose
    /// project's, optionally with the aliases the server answers to there)
    /// and every container of the deployment joins it in place of
    /// `<name>-net`; pgspec never creates or removes it. A server container
    /// pgspec did not create, already on that network, is adopted by a
    /// mark file in its data directory (`pgspec.adopted`), since joining the
    /// network no longer records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkEntry>,
    /// Existing Docker networks the container joins, with the aliases it
    /// answers to there (a Compose project's network, where the
    /// application reaches the database as `postgres:5432`). They are
    /// joined beside the deployment's network (`network`), which the
    /// pooler and backup containers reach the server on. pgspec never
    /// creates or removes these networks, and leaves alone any other
    /// network the container is attached to. Compose names a network
    /// `<project>_<network>` unless it sets `name:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkEntry>,
    /// Host port the server is published on (default 5432).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Host address the port is published on (default 127.0.0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_address: Option<String>,
    /// Named Docker volume holding the data directory (default `<name>-pgdata`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// Resource limits of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSpec>,
    /// How a change of `image` to another PostgreSQL major version moves
    /// the data. Read only when the major version changes; without it such
    /// a change is a plan error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeSpec>,
    /// The bootstrap superuser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superuser: Option<SuperuserSpec>,
    /// How pgspec connects. Defaults come from the container's port and
    /// superuser, then from PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionSpec>,
    /// The Docker Engine that runs the deployment: `ssh://[user@]host[:port]`,
    /// `tcp://host:port` (TLS when DOCKER_TLS_VERIFY is set, with the files
    /// in DOCKER_CERT_PATH), `unix:///path`, or the name of a docker
    /// context. Default: DOCKER_HOST, then DOCKER_CONTEXT, then the
    /// Docker CLI's current context, then the local socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Server settings (`ALTER SYSTEM`), in PostgreSQL's units.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, SettingValue>,
    /// TLS for the server's clients: a certificate and key (or one pgspec
    /// generates), kept in the data directory; the `ssl*` settings follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// The server's TLS. Give `certificate` and `key`, or `generate`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// The server certificate (PEM, the chain after it), from a file or an
    /// environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<SecretRef>,
    /// Its private key (PEM). Written into the data directory with mode
    /// 0600, owned by the server's user; never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretRef>,
    /// A CA certificate (PEM) client certificates are checked against
    /// (`ssl_ca_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<SecretRef>,
    /// `self-signed`: pgspec makes a CA and a server certificate it signs,
    /// for development. The CA stays in the data directory, and pgspec
    /// verifies the server against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<TlsGenerate>,
    /// More names for a generated certificate, besides the container's
    /// name, `localhost` and the published address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Clients without TLS are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require: Option<bool>,
    /// `ssl_min_protocol_version`: `TLSv1.2` (the server's default) or
    /// `TLSv1.3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_protocol_version: Option<String>,
    /// `ssl_ciphers`: OpenSSL's cipher list for TLS 1.2 and before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphers: Option<String>,
}

/// How pgspec generates a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum TlsGenerate {
    /// A CA of its own and a server certificate it signs.
    #[serde(rename = "self-signed")]
    SelfSigned,
}

/// Container resource limits.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesSpec {
    /// CPUs, fractional allowed (`1.5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory limit with a unit: `512MiB`, `8GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Size of /dev/shm: `256MiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<String>,
    /// What the container is guaranteed rather than capped at. Changed in
    /// place (`docker update`) like the limits; a reservation left out of
    /// the spec leaves the container's as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<ReservationsSpec>,
}

/// Container resource reservations.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservationsSpec {
    /// CPUs, fractional allowed. Docker reserves CPUs only for swarm
    /// services, so pgspec sets the container's CPU weight instead
    /// (`--cpu-shares`, 1024 per CPU; a container that sets none weighs
    /// 1024): when the host's CPUs are contended, the server gets that much
    /// more CPU time than a container of default weight. With spare CPUs it
    /// changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory reservation with a unit (`4GiB`): a soft limit
    /// (`--memory-reservation`) the kernel reclaims the container's memory
    /// down to only under memory pressure. At most `memory`, at least 6MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// A declared major version upgrade.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeSpec {
    /// `dump-restore`: the new image's `pg_dump` copies the roles and every
    /// database from the old server, read-only for the copy, into a new
    /// server; row counts and sequence values are compared, then the new
    /// server takes the volume and the old data is kept in the volume
    /// `<volume>-pg<old major>` for rollback.
    pub method: crate::model::UpgradeMethod,
}

/// A network the server container joins: a name, or a name with aliases.
/// Also the deployment's network, when the spec names an existing one.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum NetworkEntry {
    Name(String),
    Full(NetworkSpec),
}

impl NetworkEntry {
    /// The network's name.
    pub fn name(&self) -> &str {
        match self {
            NetworkEntry::Name(name) => name,
            NetworkEntry::Full(network) => &network.name,
        }
    }

    /// The aliases the container answers to on it.
    pub fn aliases(&self) -> &[String] {
        match self {
            NetworkEntry::Name(_) => &[],
            NetworkEntry::Full(network) => &network.aliases,
        }
    }
}

/// A network joined with aliases.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Name of an existing Docker network (`docker network ls`).
    pub name: String,
    /// Other names the container answers to on this network, as Compose's
    /// `aliases` (the application's `postgres` host name). A missing alias
    /// is added by reconnecting the container to this network, which drops
    /// the connections made over it (those through the published port too,
    /// when the engine routes it over this network); the server keeps
    /// running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// The bootstrap superuser of a container pgspec runs.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SuperuserSpec {
    /// Role name (default `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Password reference.
    pub password: SecretRef,
}

/// Connection to the server.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    /// A libpq URL (`postgresql://user@host:port/db`), given as a secret
    /// reference because URLs often carry a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    /// Maintenance database pgspec connects to first (default `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// libpq's `sslmode`: `disable`, `prefer` (the default: TLS when the
    /// server offers it), `require`, `verify-ca` or `verify-full`. Overrides
    /// PGSSLMODE and an `sslmode` in `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<String>,
    /// The CA certificate (PEM file, relative to the spec) the server's
    /// certificate is checked against. Without it, `verify-ca` and
    /// `verify-full` use the CA pgspec generated for the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslrootcert: Option<PathBuf>,
}

/// A setting value as written: `256MB`, `1s`, `200`, `on`, `[a, b]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SettingValue {
    Bool(bool),
    Integer(i64),
    Float(f64),
    Text(String),
    List(Vec<String>),
}

/// PgBouncer beside the server.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolerSpec {
    /// Image that runs PgBouncer on `/etc/pgbouncer/pgbouncer.ini` (required;
    /// pgspec writes that file and the auth file into the container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Host port PgBouncer listens on (default 6432).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_mode: Option<PoolMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_pool_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_pool_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve_pool_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_client_conn: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_db_connections: Option<i64>,
    /// Duration: `600s`, `10min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_idle_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_lifetime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_wait_timeout: Option<String>,
    /// Per-database overrides, keyed by database name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub databases: BTreeMap<String, PoolerDatabaseSpec>,
}

/// PgBouncer pool mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    Session,
    Transaction,
    Statement,
}

/// Per-database pooler overrides.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolerDatabaseSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_mode: Option<PoolMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_db_connections: Option<i64>,
    /// The database this pool serves, when its name is another (a
    /// read-only pool `app_ro` of database `app`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// `replica`: the pool goes to a streaming replica (the first by name;
    /// another one while it is replaced), `primary` (the default) to the
    /// server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<PoolTarget>,
}

/// Where a pool sends its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PoolTarget {
    Primary,
    Replica,
}

/// A cluster-wide role.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superuser: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub createdb: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub createrole: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bypassrls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherit: Option<bool>,
    /// Password reference; stored as a SCRAM-SHA-256 verifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    /// -1 means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<i64>,
    /// Timestamp after which the password is no longer valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// Roles this role is a member of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_of: Vec<String>,
    /// Per-role settings (`ALTER ROLE … SET`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, SettingValue>,
}

/// A database and what lives inside it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<i64>,
    /// Creation-time only: a difference is reported, never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Creation-time only: a difference is reported, never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Creation-time only (default `template1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Per-database settings (`ALTER DATABASE … SET`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, SettingValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<ExtensionEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<SchemaEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<GrantSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<IndexSpec>,
}

/// An extension: a name, or a name with version and schema.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ExtensionEntry {
    Name(String),
    Full(ExtensionSpec),
}

/// An extension with details.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtensionSpec {
    pub name: String,
    /// Version to install or update to (default: whatever is installed, or
    /// the server's default version when creating).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Schema the extension's objects live in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
}

/// A schema: a name, or a name with an owner.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SchemaEntry {
    Name(String),
    Full(SchemaSpec),
}

/// A schema with details.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Privileges for a role. Without `schema` the grant is on the database;
/// with `schema` alone it is on the schema; with `tables`, `sequences` or
/// `functions` it is on those objects in the schema; with `default_for` it is
/// a default privilege for objects created later.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    /// Grantee: a role name or `PUBLIC`.
    pub role: String,
    pub privileges: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<ObjectSelection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequences: Option<ObjectSelection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<ObjectSelection>,
    /// Default privileges on objects of this kind created later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_for: Option<DefaultObjectKind>,
    /// Whose future objects `default_for` applies to (default: the
    /// database owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_role: Option<String>,
}

/// `all`, or a list of names.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ObjectSelection {
    All(AllKeyword),
    Names(Vec<String>),
}

/// The keyword `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum AllKeyword {
    #[serde(rename = "all")]
    All,
}

/// Kinds of objects default privileges apply to.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DefaultObjectKind {
    Tables,
    Sequences,
    Functions,
    Types,
    Schemas,
}

/// An index on a table the application's migrations create.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IndexSpec {
    pub name: String,
    /// Table name, optionally schema-qualified (`audit.events`).
    pub table: String,
    /// Key columns: a column name, or a column or expression with options.
    pub columns: Vec<IndexColumn>,
    /// Access method: btree (default), gin, gist, hash, brin, spgist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub using: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unique: bool,
    /// NULLS NOT DISTINCT (PostgreSQL 15 and later).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nulls_not_distinct: bool,
    /// Predicate of a partial index.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub predicate: Option<String>,
    /// Non-key columns (`INCLUDE`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Storage parameters (`WITH (fillfactor = 90)`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub with: BTreeMap<String, SettingValue>,
}

/// An index key: a column name, or a column or expression with options.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum IndexColumn {
    Name(String),
    Full(IndexColumnSpec),
}

/// An index key with options. Exactly one of `column` and `expression`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IndexColumnSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// An SQL expression such as `lower(url)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opclass: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<SortOrder>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nulls: Option<NullsOrder>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NullsOrder {
    First,
    Last,
}

/// Scheduled backups. Either one `schedule` (named `default`) or a list of
/// `schedules`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupSpec {
    /// Cron expression (5 fields, or `@daily`-style) of the single schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<BackupKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<BackupFormat>,
    /// Databases to dump (default: all the spec's databases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,
    pub destination: DestinationSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<BackupScheduleSpec>,
    /// Cron expression of a scheduled restore test of the single
    /// schedule's newest backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
    /// The recovery point objective of a `physical` schedule's WAL
    /// streaming (`1h`, `15min`): an archive further behind, or an archiver
    /// that has stopped, is drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag: Option<String>,
}

/// One named backup schedule.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupScheduleSpec {
    pub name: String,
    /// Cron expression (5 fields, or `@daily`-style).
    pub schedule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<BackupKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<BackupFormat>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<String>,
    /// Overrides the backup section's retention for this schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,
    /// Cron expression of a scheduled restore test: the agent restores this
    /// schedule's newest backup into a scratch server and records the
    /// result in its manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    Full,
    Data,
    Schema,
    Globals,
    // Base backups with `pg_basebackup` on the schedule, and continuous WAL
    // streaming with `pg_receivewal` (point-in-time recovery). A plain
    // comment: a doc comment would split the schema's enum.
    Physical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupFormat {
    Custom,
    Plain,
    Directory,
}

/// How long backups are kept.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionSpec {
    /// Remove backups that started more than this many days (1 to 36 500)
    /// before the newest successful backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 36_500))]
    pub days: Option<i64>,
    /// Keep at most this many successful backups (1 to 1 000 000). Failed
    /// backups are counted apart and never push a successful one out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_count: Option<i64>,
    /// Always keep the newest this many successful backups, whatever their
    /// age (0 to 1 000 000, default 1). The newest successful backup is
    /// kept even with 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1_000_000))]
    pub min_count: Option<i64>,
}

/// Where backups are written: a named volume or a host directory.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<PathBuf>,
}

/// The JSON Schema of the spec format, exactly as `pgspec schema` prints it
/// and `schema/pgspec.schema.json` holds it.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(SpecFile);
    let mut text = serde_json::to_string_pretty(&schema)
        .unwrap_or_else(|error| panic!("the schema always serializes: {error}"));
    text.push('\n');
    text
}
