//! Observing PostgreSQL: one catalog query per kind of object and database.
//!
//! Invariant: only reads. Connections are made here and in `apply`, both
//! through `Target::connect`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt, stream};
use tokio_postgres::{Client, Config};

use crate::live::ObserveError;
use crate::model::Desired;
use crate::model::{
    AvailableExtension, Database, Deployment, Extension, GrantTarget, Role, ServerInfo, Setting,
    marks_own,
};
use crate::secret::SecretValue;

mod access;
mod canonical;
mod grants;
mod indexes;
pub mod password;
mod roles;
mod settings;
pub mod ssl;

/// How many databases are read at once.
const CONCURRENT_DATABASES: usize = 8;

/// How long a connection may take from the TCP connect to the server's
/// first "ready for query", authentication included. libpq's
/// `connect_timeout` (and tokio-postgres's) bounds only the TCP connect, so
/// a port where something accepts connections and never answers (a wrong
/// port, a hung proxy) would otherwise be waited on forever.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long reading one server's catalogs may take in all, password checks
/// included: far more than a deployment of ten thousand objects needs, and
/// a bound for the reads on the connection that cannot carry a
/// `statement_timeout` of its own (it reads the server's).
pub const OBSERVE_TIMEOUT: Duration = Duration::from_secs(600);

/// The `statement_timeout` of connections that only read: a catalog query
/// that waits longer than this on a lock (or on an overloaded server) fails
/// with an error naming what it was reading, instead of hanging the plan.
/// The biggest catalog reads of a deployment with ten thousand objects take
/// well under a second.
pub const READ_STATEMENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Where and as whom pgspec connects.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<SecretValue>,
    /// The maintenance database: cluster-wide statements and the apply lock
    /// live here.
    pub database: String,
    /// TLS: `sslmode` and the root certificate.
    pub ssl: ssl::Ssl,
    /// How the host and port are reached: directly, or on a remote
    /// engine's host (its address, or an SSH tunnel).
    pub route: crate::engine::endpoint::Route,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}@{}:{}/{}`",
            self.user, self.host, self.port, self.database
        )
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

impl Target {
    /// Resolves the connection: libpq's defaults, then PGHOST, PGPORT,
    /// PGUSER, PGPASSWORD and PGDATABASE, then the container the spec runs
    /// (its published port and superuser), then the spec's `connection` URL
    /// and fields. Secrets are read here, at the last moment.
    pub fn resolve(spec: &Desired) -> Result<Target, ObserveError> {
        let mut target = Target {
            host: "localhost".to_owned(),
            port: 5432,
            user: env("USER").unwrap_or_else(|| "postgres".to_owned()),
            password: None,
            database: "postgres".to_owned(),
            ssl: ssl::Ssl::default(),
            route: Default::default(),
        };
        if let Some(mode) = env("PGSSLMODE") {
            target.ssl.mode = ssl_mode(&mode, "PGSSLMODE")?;
        }
        if let Some(root) = env("PGSSLROOTCERT") {
            target.ssl.root_cert = Some(root.into());
        }
        if let Some(host) = env("PGHOST") {
            target.host = host;
        }
        if let Some(port) = env("PGPORT") {
            target.port = port
                .parse()
                .map_err(|_| ObserveError::Connection(format!("PGPORT `{port}` is not a port")))?;
        }
        if let Some(user) = env("PGUSER") {
            target.user = user;
        }
        if let Some(database) = env("PGDATABASE") {
            target.database = database;
        }
        let from_env_password = env("PGPASSWORD");

        if let Some(container) = &spec.deployment.container {
            target.host = published_host(&container.bind_address);
            target.port = container.port;
            target.user = container.superuser.clone();
            target.database = "postgres".to_owned();
            if let Some(secret) = &container.superuser_password {
                target.password =
                    Some(secret.resolve().map_err(|source| ObserveError::Secret {
                        purpose: "superuser password",
                        source,
                    })?);
            }
        }

        let connection = &spec.connection;
        if let Some(url) = &connection.url {
            let url = url.resolve().map_err(|source| ObserveError::Secret {
                purpose: "connection URL",
                source,
            })?;
            target.apply_url(url.expose())?;
        }
        if let Some(host) = &connection.host {
            target.host = host.clone();
        }
        if let Some(port) = connection.port {
            target.port = port;
        }
        if let Some(user) = &connection.user {
            target.user = user.clone();
        }
        if let Some(database) = &connection.database {
            target.database = database.clone();
        }
        if let Some(mode) = &connection.sslmode {
            target.ssl.mode = ssl_mode(mode, "postgres.connection.sslmode")?;
        }
        if let Some(root) = &connection.sslrootcert {
            target.ssl.root_cert = Some(root.clone());
        }
        if let Some(secret) = &connection.password {
            target.password = Some(secret.resolve().map_err(|source| ObserveError::Secret {
                purpose: "connection password",
                source,
            })?);
        }
        if target.password.is_none()
            && let Some(password) = from_env_password
        {
            target.password = Some(SecretValue::from_env_value(password));
        }
        Ok(target)
    }

    /// Takes host, port, user, password, database, `sslmode` and
    /// `sslrootcert` from a libpq URL.
    fn apply_url(&mut self, url: &str) -> Result<(), ObserveError> {
        // tokio-postgres knows no `verify-*` mode: the TLS parameters are
        // read here, never dropped.
        let (url, mode, root) = ssl::split_ssl_params(url);
        if let Some(mode) = mode {
            self.ssl.mode = ssl_mode(&mode, "the connection URL's sslmode")?;
        }
        if let Some(root) = root {
            self.ssl.root_cert = Some(root.into());
        }
        let config: Config = url.parse().map_err(|_| {
            // The URL may hold a password: never echo it.
            ObserveError::Connection("the connection URL is not a valid libpq URL".to_owned())
        })?;
        if let Some(tokio_postgres::config::Host::Tcp(host)) = config.get_hosts().first() {
            self.host = host.clone();
        }
        if let Some(port) = config.get_ports().first() {
            self.port = *port;
        }
        if let Some(user) = config.get_user() {
            self.user = user.to_owned();
        }
        if let Some(database) = config.get_dbname() {
            self.database = database.to_owned();
        }
        if let Some(password) = config.get_password() {
            self.password = Some(SecretValue::from_env_value(
                String::from_utf8_lossy(password).into_owned(),
            ));
        }
        Ok(())
    }

    /// The same server, another database.
    pub fn with_database(&self, database: &str) -> Target {
        Target {
            database: database.to_owned(),
            ..self.clone()
        }
    }

    fn config(&self) -> Config {
        let mut config = Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.database)
            .application_name("pgspec")
            .connect_timeout(CONNECT_TIMEOUT)
            // A server that vanishes without closing the connection (a host
            // gone from the network) is noticed within about a minute, not
            // after the system's two-hour keepalive default.
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3);
        if let Some(password) = &self.password {
            config.password(password.expose());
        }
        config
    }

    /// Opens a connection and drives it on the runtime; gives up after
    /// [`CONNECT_TIMEOUT`].
    pub async fn connect(&self) -> Result<Client, ObserveError> {
        use crate::engine::endpoint::{Route, is_loopback};
        use tokio_postgres::tls::MakeTlsConnect;
        let mut config = self.config();
        let (mode, tls) = self.ssl.connector().await?;
        config.ssl_mode(mode);
        let client = match &self.route {
            Route::Ssh(destination) => {
                let stream = crate::engine::remote::forward(destination, &self.host, self.port)
                    .map_err(|error| {
                        ObserveError::Connection(format!(
                            "cannot start `ssh -W` to {destination} for {self}: {error}"
                        ))
                    })?;
                let mut tls = tls;
                let tls =
                    <_ as MakeTlsConnect<crate::engine::remote::SshStream>>::make_tls_connect(
                        &mut tls, &self.host,
                    )
                    .map_err(|error| ObserveError::Connection(error.to_string()))?;
                let connecting = config.connect_raw(stream, tls);
                let (client, connection) = self.within(connecting).await?;
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "connection closed");
                    }
                });
                client
            }
            route => {
                if let Route::Host(engine_host) = route
                    && is_loopback(&self.host)
                {
                    config.host(engine_host);
                }
                let (client, connection) = self.within(config.connect(tls)).await?;
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "connection closed");
                    }
                });
                client
            }
        };
        Ok(client)
    }

    /// A connection attempt bounded by [`CONNECT_TIMEOUT`], its failure
    /// naming the target.
    async fn within<T>(
        &self,
        connecting: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, ObserveError> {
        tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| ObserveError::PostgresSilent {
                target: self.to_string(),
            })?
            .map_err(|source| ObserveError::PostgresUnreachable {
                target: self.to_string(),
                source,
            })
    }

    /// Opens a connection for reading the catalogs: every statement on it
    /// gives up after [`READ_STATEMENT_TIMEOUT`]. Set with `SET` rather
    /// than as a startup option, which PgBouncer refuses.
    pub async fn connect_to_read(&self) -> Result<Client, ObserveError> {
        let client = self.connect().await?;
        client
            .batch_execute(&format!(
                "SET statement_timeout = {}",
                READ_STATEMENT_TIMEOUT.as_millis()
            ))
            .await
            .map_err(|source| ObserveError::Query {
                database: self.database.clone(),
                what: "the session's statement_timeout",
                source,
            })?;
        Ok(client)
    }
}

fn ssl_mode(text: &str, source: &str) -> Result<ssl::SslMode, ObserveError> {
    ssl::SslMode::parse(text).ok_or_else(|| {
        ObserveError::Connection(format!(
            "{source} `{}` is not one of disable, prefer, require, verify-ca, verify-full",
            text.escape_debug()
        ))
    })
}

/// The address to reach a port published on `bind_address` from this host.
pub fn published_host(bind_address: &str) -> String {
    crate::model::tls::published_host(bind_address)
}

/// What `observe` read from PostgreSQL.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub server: ServerInfo,
    pub settings: BTreeMap<String, Setting>,
    pub roles: BTreeMap<String, Role>,
    pub databases: BTreeMap<String, Database>,
    /// The client authentication rules, read when the spec has `access`.
    pub access: Option<crate::model::access::Access>,
}

/// Reads the server and every database the desired deployment names.
pub async fn observe(target: &Target, desired: &Deployment) -> Result<Observed, ObserveError> {
    tokio::time::timeout(OBSERVE_TIMEOUT, observe_unbounded(target, desired))
        .await
        .map_err(|_| ObserveError::PostgresSlow {
            target: target.to_string(),
        })?
}

async fn observe_unbounded(
    target: &Target,
    desired: &Deployment,
) -> Result<Observed, ObserveError> {
    // This connection reads pg_settings, where a session's own
    // statement_timeout would show instead of the server's; its reads are
    // bounded by OBSERVE_TIMEOUT alone.
    let client = target.connect().await?;
    let maintenance = target.database.clone();

    let version_row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int4, current_user::text, \
                    has_table_privilege('pg_catalog.pg_authid', 'SELECT'), \
                    has_table_privilege('pg_catalog.pg_file_settings', 'SELECT'), \
                    CASE WHEN pg_has_role('pg_read_all_settings', 'USAGE') \
                         THEN current_setting('data_directory') END",
            &[],
        )
        .await
        .map_err(query_error("the server version", &maintenance))?;
    let version_num: i32 = version_row.get(0);
    let current_user: String = version_row.get(1);
    let access = roles::Access {
        authid: version_row.get(2),
        membership_options: version_num >= 160_000,
    };
    let file_settings: bool = version_row.get(3);
    let data_directory: Option<String> = version_row.get(4);

    let extension_rows = client
        .query(
            "SELECT v.name::text, e.default_version, v.version, \
                    coalesce(v.requires::text[], '{}') \
             FROM pg_available_extension_versions v \
             JOIN pg_available_extensions e ON e.name = v.name \
             ORDER BY 1, 3",
            &[],
        )
        .await
        .map_err(query_error("available extensions", &maintenance))?;
    let mut available_extensions: BTreeMap<String, AvailableExtension> = BTreeMap::new();
    for row in extension_rows {
        let name: String = row.get(0);
        let default_version: Option<String> = row.get(1);
        let version: String = row.get(2);
        let requires: Vec<String> = row.get(3);
        let entry = available_extensions.entry(name).or_default();
        if default_version.as_deref() == Some(version.as_str()) {
            entry.requires = requires;
        }
        entry.default_version = default_version;
        entry.versions.push(version);
    }

    let database_rows = client
        .query(
            "SELECT d.datname::text, pg_get_userbyid(d.datdba)::text, d.datconnlimit::int8, \
                    pg_encoding_to_char(d.encoding)::text, d.datcollate::text \
             FROM pg_database d \
             WHERE NOT d.datistemplate \
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(query_error("databases", &maintenance))?;
    let mut databases = BTreeMap::new();
    for row in database_rows {
        let name: String = row.get(0);
        databases.insert(
            name.clone(),
            Database {
                name,
                owner: Some(row.get(1)),
                connection_limit: Some(row.get(2)),
                encoding: Some(row.get(3)),
                locale: Some(row.get(4)),
                ..Database::default()
            },
        );
    }
    // One connection answers these in a pipeline: each query is sent
    // without waiting for the one before it.
    let access_rules = async {
        match &desired.access {
            Some(_) => access::observe(&client, &maintenance).await.map(Some),
            None => Ok(None),
        }
    };
    let (database_settings, database_acls, settings, (mut roles, password_checks), access_rules) =
        tokio::try_join!(
            settings::observe_databases(&client, &maintenance),
            grants::observe_databases(&client, &maintenance),
            settings::observe(&client, &maintenance, desired, file_settings),
            roles::observe(&client, &maintenance, &access, desired),
            access_rules,
        )?;
    drop(client);
    // Checking passwords is CPU work; it runs on other threads while the
    // databases are read.
    let passwords_checked = tokio::task::spawn_blocking(move || password_checks.run());
    for (name, database) in &mut databases {
        if let Some(settings) = database_settings.get(name) {
            database.settings = settings.clone();
        }
        if let Some(acl) = database_acls.get(name) {
            database.acls.push(acl.clone());
        }
    }

    // Only the databases the spec names are read inside; others are
    // reported as unmanaged by name alone.
    let wanted: Vec<String> = desired
        .databases
        .keys()
        .filter(|name| databases.contains_key(*name))
        .cloned()
        .collect();
    let contents: Vec<(String, Inside, indexes::Observed)> = stream::iter(wanted)
        .map(|name| async move {
            let schemas = granted_schemas(&desired.databases[&name]);
            let database_target = target.with_database(&name);
            let (inside, indexes) = tokio::try_join!(
                observe_database(&database_target, &name, &schemas, desired),
                indexes::observe(
                    &database_target,
                    indexes::Owner {
                        deployment: &desired.name,
                        owns_server: desired.container.is_some(),
                    },
                    &desired.databases[&name]
                ),
            )?;
            Ok::<_, ObserveError>((name, inside, indexes))
        })
        .buffer_unordered(CONCURRENT_DATABASES)
        .try_collect()
        .await?;
    let password_states = passwords_checked
        .await
        .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
    for (name, state) in password_states {
        if let Some(role) = roles.get_mut(&name) {
            role.password_state = Some(state);
        }
    }
    for (name, inside, indexes) in contents {
        if let Some(database) = databases.get_mut(&name) {
            database.indexes = indexes.indexes;
            database.index_checks = indexes.checks;
            database.extensions = inside.extensions;
            database.schemas = inside.contents.schemas;
            database.acls.extend(inside.contents.acls);
            database.acls.sort();
        }
    }

    Ok(Observed {
        server: ServerInfo {
            version_num: u32::try_from(version_num).unwrap_or_default(),
            current_user: Some(current_user),
            data_directory,
            available_extensions,
        },
        settings,
        roles,
        databases,
        access: access_rules,
    })
}

/// Schemas whose tables, sequences or functions the desired grants name.
fn granted_schemas(database: &Database) -> Vec<String> {
    let mut schemas: Vec<String> = database
        .grants
        .iter()
        .filter_map(|grant| match &grant.target {
            GrantTarget::Tables { schema, .. }
            | GrantTarget::Sequences { schema, .. }
            | GrantTarget::Functions { schema, .. } => Some(schema.clone()),
            _ => None,
        })
        .collect();
    schemas.sort();
    schemas.dedup();
    schemas
}

/// What one database holds that pgspec manages.
struct Inside {
    extensions: BTreeMap<String, Extension>,
    contents: grants::Contents,
}

/// Reads what pgspec manages inside one database.
async fn observe_database(
    target: &Target,
    database: &str,
    schemas: &[String],
    desired: &Deployment,
) -> Result<Inside, ObserveError> {
    let client = target.connect_to_read().await?;
    let contents = grants::observe(&client, database, schemas).await?;
    let rows = client
        .query(
            "SELECT e.extname::text, e.extversion, n.nspname::text, \
                    coalesce(obj_description(e.oid, 'pg_extension'), '') \
             FROM pg_extension e \
             JOIN pg_namespace n ON n.oid = e.extnamespace \
             ORDER BY 1",
            &[],
        )
        .await
        .map_err(|source| ObserveError::Query {
            database: database.to_owned(),
            what: "extensions",
            source,
        })?;
    let extensions = rows
        .into_iter()
        .map(|row| {
            let name: String = row.get(0);
            (
                name.clone(),
                Extension {
                    name,
                    version: Some(row.get(1)),
                    schema: Some(row.get(2)),
                    managed: marks_own(row.get(3), &desired.name, desired.container.is_some()),
                },
            )
        })
        .collect();
    Ok(Inside {
        extensions,
        contents,
    })
}

/// The error of a catalog query about `what` in `database`.
pub(crate) fn query_error(
    what: &'static str,
    database: &str,
) -> impl FnOnce(tokio_postgres::Error) -> ObserveError + use<> {
    let database = database.to_owned();
    move |source| ObserveError::Query {
        database,
        what,
        source,
    }
}
