//! Apply of the PgBouncer pooler: its container, its configuration and the
//! admin console's `RELOAD`.
//!
//! Clients authenticate with SCRAM against an auth file of SCRAM verifiers
//! copied from the server's `pg_authid` at apply time: no plaintext password
//! is ever written, and because the verifiers are the server's, PgBouncer
//! logs in to the server with the client's own proof (SCRAM pass-through).
//! The files reach the container through the engine's archive endpoint, like
//! the superuser's password file: no environment variable, no bind mount.
//!
//! Invariant: the server container is never touched here.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{Context, bail};
use bollard::models::{
    ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};

use crate::engine::archive::Entry;
use crate::engine::container::{self as containers, NotReady, Patience};
use crate::engine::{Docker, files, image, object_labels};
use crate::live::Target;
use crate::live::pooler::{
    AUTH_FILE, CONSOLE_TIMEOUT, LISTEN_PORT, admin_target, server_verifiers,
};
use crate::model::Pooler;
use crate::plan::PoolerConfig;
use crate::plan::diff::pooler::LISTEN_PORT as LISTEN_PORT_NUMBER;

/// Where the configuration goes; the image runs PgBouncer on this file.
pub const CONFIG_DIR: &str = "/etc/pgbouncer";
pub const CONFIG_FILE: &str = "/etc/pgbouncer/pgbouncer.ini";

/// How long a started PgBouncer may take to answer on its admin console.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `pgbouncer.ini` for a configuration. Every setting the spec states is
/// written out, so that `RELOAD` also undoes a value changed with `SET` on
/// the console.
///
/// Names and values stay data: a database name is quoted as a key and as a
/// connection-string value, and anything the file's syntax has no escape
/// for — a control character (a newline would start a line of its own
/// making), or a separator in the `admin_users` list — is refused rather
/// than written. `validate` rejects such names first; this is the last
/// line of defence for text that did not come through it.
pub fn ini(deployment: &str, config: &PoolerConfig) -> anyhow::Result<String> {
    for database in config.databases.keys() {
        refuse_control(database, "database name")?;
    }
    refuse_control(&config.server_host, "server host")?;
    let mut text = format!(
        ";; PgBouncer configuration of deployment `{deployment}`, written by pgspec.\n\
         ;; Edits here are drift: `pgspec apply` writes this file again.\n\n[databases]\n"
    );
    let server = format!(
        "host={} port={}",
        connection_value(&config.server_host),
        config.server_port
    );
    if config.databases.is_empty() {
        text.push_str(&format!("* = {server}\n"));
    }
    for (database, overrides) in &config.databases {
        match config.routes.get(database) {
            Some(route) => {
                refuse_control(&route.host, "pool host")?;
                refuse_control(&route.database, "database name")?;
                text.push_str(&format!(
                    "{} = host={} port={} dbname={}",
                    ini_key(database),
                    connection_value(&route.host),
                    config.server_port,
                    connection_value(&route.database)
                ));
            }
            None => text.push_str(&format!(
                "{} = {server} dbname={}",
                ini_key(database),
                connection_value(database)
            )),
        }
        for (setting, value) in overrides {
            refuse_control(setting, "pool setting")?;
            refuse_control(value, "pool setting value")?;
            text.push_str(&format!(" {setting}={}", connection_value(value)));
        }
        text.push('\n');
    }
    text.push_str(&format!(
        "\n[pgbouncer]\nlisten_addr = *\nlisten_port = {LISTEN_PORT_NUMBER}\n"
    ));
    for (setting, value) in Pooler::base_settings(&config.admin_user)
        .iter()
        .chain(&config.settings)
    {
        refuse_control(setting, "setting")?;
        refuse_control(value, "setting value")?;
        if setting == "admin_users"
            && value
                .chars()
                .any(|character| character == ',' || character.is_whitespace())
        {
            bail!(
                "PgBouncer's `admin_users` is a comma-separated list; the role `{}` cannot be \
                 written into it",
                crate::diag::printable(value)
            );
        }
        text.push_str(&format!("{setting} = {value}\n"));
    }
    Ok(text)
}

/// Refuses text with a control character: neither `pgbouncer.ini` nor the
/// auth file has a way to escape one.
fn refuse_control(text: &str, what: &str) -> anyhow::Result<()> {
    if text.chars().any(char::is_control) {
        bail!(
            "{what} `{}` holds a control character; PgBouncer's files cannot hold it",
            crate::diag::printable(text)
        );
    }
    Ok(())
}

/// A database name as an ini key: bare when plain, else double-quoted.
fn ini_key(name: &str) -> String {
    if is_plain(name) {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A value in a `[databases]` connection string: bare when plain, else
/// single-quoted with `\` and `'` escaped.
fn connection_value(value: &str) -> String {
    if is_plain(value) {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

fn is_plain(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "_-.".contains(character))
}

/// The auth file: one `"role" "verifier"` line per role, a `"` in a name
/// doubled. A name or verifier the format cannot hold (a control
/// character; a `"` in a verifier, which the server never writes) is
/// refused.
fn auth_file(verifiers: &std::collections::BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut text = String::new();
    for (role, verifier) in verifiers {
        refuse_control(role, "role name")?;
        if verifier.contains('"') || verifier.chars().any(char::is_control) {
            bail!(
                "the SCRAM verifier of role `{}` is not in the server's format",
                crate::diag::printable(role)
            );
        }
        text.push_str(&format!(
            "\"{}\" \"{verifier}\"\n",
            role.replace('"', "\"\"")
        ));
    }
    Ok(text)
}

/// Creates the pooler container, not started, on the deployment network.
pub async fn create(
    docker: &Docker,
    deployment: &str,
    name: &str,
    pooler: &Pooler,
    network: &str,
) -> anyhow::Result<()> {
    image::ensure(docker, &pooler.image).await?;
    let body = ContainerCreateBody {
        image: Some(pooler.image.clone()),
        labels: Some(object_labels(deployment)),
        exposed_ports: Some(vec![LISTEN_PORT.to_owned()]),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                LISTEN_PORT.to_owned(),
                Some(vec![PortBinding {
                    host_ip: Some(pooler.bind_address.clone()),
                    host_port: Some(pooler.port.to_string()),
                }]),
            )])),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            network_mode: Some(network.to_owned()).filter(|network| !network.is_empty()),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    containers::create(docker, name, body).await?;
    Ok(())
}

/// Writes `pgbouncer.ini` and the auth file into the container, with the
/// verifiers the server holds now. The files belong to the owner of the
/// configuration directory, the user the image runs PgBouncer as.
pub async fn write_config(
    docker: &Docker,
    deployment: &str,
    name: &str,
    config: &PoolerConfig,
    server: &Target,
) -> anyhow::Result<()> {
    let roles: BTreeSet<String> = config.users.iter().cloned().collect();
    let verifiers = server_verifiers(server, &roles)
        .await
        .context("cannot read the SCRAM verifiers the pooler authenticates with")?;
    for role in roles.iter().filter(|role| !verifiers.contains_key(*role)) {
        tracing::warn!(
            role = %role,
            "role has no SCRAM verifier on the server; it cannot log in through the pooler"
        );
    }
    // The files belong to the owner of the configuration directory.
    let listing = files::list(docker, name, CONFIG_DIR).await;
    let (uid, gid) = listing
        .first()
        .map_or((0, 0), |directory| (directory.uid, directory.gid));
    let auth_name = AUTH_FILE.rsplit('/').next().unwrap_or_default();
    let previous = listing
        .iter()
        .find(|entry| entry.path.rsplit('/').next() == Some(auth_name))
        .and_then(|entry| entry.mtime);
    // PgBouncer reads the auth file again on RELOAD only when its size,
    // owner, mode, inode or modification time (in seconds) differ, and a
    // new verifier has the same size as the old one: the file always gets a
    // later modification time than the one it replaces.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    let mtime = previous.map_or(now, |previous| now.max(previous + 1));
    let ini = ini(deployment, config).context("cannot write pgbouncer.ini")?;
    let auth = auth_file(&verifiers).context("cannot write the pooler's auth file")?;
    let tls = match config.tls.as_deref() {
        Some(source) => Some(super::tls::pooler_pems(docker, source, &config.server_host).await?),
        None => None,
    };
    // The configuration readable by all, the auth file and the key by
    // their owner only.
    let mut entries = vec![
        Entry::file(CONFIG_FILE, 0o644, ini.as_bytes()),
        Entry::file(AUTH_FILE, 0o600, auth.as_bytes()),
    ];
    if let Some(pems) = &tls {
        entries.push(Entry::file(
            Pooler::TLS_CERT_FILE,
            0o644,
            pems.certificate.as_bytes(),
        ));
        entries.push(Entry::file(
            Pooler::TLS_KEY_FILE,
            0o600,
            pems.key.as_bytes(),
        ));
        let ca = pems.ca.as_deref().unwrap_or(&pems.certificate);
        entries.push(Entry::file(Pooler::TLS_CA_FILE, 0o644, ca.as_bytes()));
    }
    let entries: Vec<Entry<'_>> = entries
        .into_iter()
        .map(|entry| entry.owned_by(uid, gid).modified_at(mtime))
        .collect();
    files::upload_entries(docker, name, &entries, "the PgBouncer configuration").await
}

/// Starts the container and waits until the admin console answers.
pub async fn start(docker: &Docker, name: &str, server: &Target) -> anyhow::Result<()> {
    containers::start(docker, name).await?;
    let admin = published_admin(docker, name, server).await?;
    let patience = Patience {
        limit: READY_TIMEOUT,
        grace: Duration::from_secs(3),
        interval: Duration::from_millis(200),
    };
    let probe = || async {
        let client = admin.connect().await.map_err(|error| error.to_string())?;
        match tokio::time::timeout(CONSOLE_TIMEOUT, client.simple_query("SHOW VERSION")).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!(
                "`SHOW VERSION` got no answer within {} s",
                CONSOLE_TIMEOUT.as_secs()
            )),
        }
    };
    match containers::wait_ready(docker, name, patience, probe).await {
        Ok(()) => Ok(()),
        Err(NotReady::Stopped { logs, .. }) => {
            bail!("container `{name}` stopped before PgBouncer answered\n{logs}")
        }
        Err(NotReady::TimedOut { last_error, logs }) => bail!(
            "PgBouncer in `{name}` did not answer on its admin console within {}s \
             (last error: {last_error})\n{logs}",
            READY_TIMEOUT.as_secs()
        ),
    }
}

/// `RELOAD` on the admin console: PgBouncer reads the configuration and the
/// auth file again and keeps its clients.
pub async fn reload(docker: &Docker, name: &str, server: &Target) -> anyhow::Result<()> {
    let admin = published_admin(docker, name, server).await?;
    let client = admin
        .connect()
        .await
        .with_context(|| format!("cannot reach the admin console of `{name}`"))?;
    tokio::time::timeout(CONSOLE_TIMEOUT, client.simple_query("RELOAD"))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "`RELOAD` got no answer within {} s on the admin console of `{name}`",
                CONSOLE_TIMEOUT.as_secs()
            )
        })?
        .with_context(|| format!("`RELOAD` failed on the admin console of `{name}`"))?;
    Ok(())
}

/// `PAUSE` on the admin console, sent and left to finish: PgBouncer holds
/// new queries at once and answers once every server connection is
/// released (in session mode, once its clients leave or their server
/// sessions end). The handle gives the outcome; PgBouncer stays paused
/// until `RESUME`, whatever becomes of this connection. pgspec's mark goes
/// into the container first, so that a later plan resumes a pause an
/// interrupted apply left.
pub async fn pause(
    docker: &Docker,
    name: &str,
    server: &Target,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let admin = published_admin(docker, name, server).await?;
    paused_mark(
        docker,
        name,
        "paused by pgspec for a major version upgrade\n",
    )
    .await?;
    let client = admin
        .connect()
        .await
        .with_context(|| format!("cannot reach the admin console of `{name}`"))?;
    let name = name.to_owned();
    Ok(tokio::spawn(async move {
        client
            .simple_query("PAUSE")
            .await
            .map(|_| ())
            .with_context(|| format!("`PAUSE` failed on the admin console of `{name}`"))
    }))
}

/// `RESUME` on the admin console; a PgBouncer that is not paused is left
/// as it is.
pub async fn resume(docker: &Docker, name: &str, server: &Target) -> anyhow::Result<()> {
    let admin = published_admin(docker, name, server).await?;
    let client = admin
        .connect()
        .await
        .with_context(|| format!("cannot reach the admin console of `{name}`"))?;
    let answer = tokio::time::timeout(CONSOLE_TIMEOUT, client.simple_query("RESUME"))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "`RESUME` got no answer within {} s on the admin console of `{name}`",
                CONSOLE_TIMEOUT.as_secs()
            )
        })?;
    match answer {
        Ok(_) => {}
        Err(error)
            if error
                .as_db_error()
                .is_some_and(|db| db.message().contains("not paused")) => {}
        Err(error) => {
            return Err(error)
                .with_context(|| format!("`RESUME` failed on the admin console of `{name}`"));
        }
    }
    paused_mark(docker, name, "").await
}

/// Writes pgspec's pause mark in the pooler container (empty: resumed).
async fn paused_mark(docker: &Docker, name: &str, text: &str) -> anyhow::Result<()> {
    files::upload_entries(
        docker,
        name,
        &[Entry::file(
            crate::model::Pooler::PAUSED_MARK,
            0o644,
            text.as_bytes(),
        )],
        "pgspec's pause mark",
    )
    .await
}

/// The admin console where the container publishes it.
async fn published_admin(docker: &Docker, name: &str, server: &Target) -> anyhow::Result<Target> {
    let inspect = containers::inspect(docker, name)
        .await?
        .with_context(|| format!("there is no container `{name}`"))?;
    let Some((bind_address, port)) = containers::published(&inspect, LISTEN_PORT) else {
        bail!("container `{name}` publishes no port for {LISTEN_PORT}");
    };
    Ok(admin_target(server, &bind_address, port))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn ini_names_the_server_by_container_and_writes_every_stated_setting() {
        let config = PoolerConfig {
            server_host: "ffe-postgres".to_owned(),
            server_port: 5432,
            databases: BTreeMap::from([
                ("ffe".to_owned(), BTreeMap::new()),
                (
                    "ffe ro".to_owned(),
                    BTreeMap::from([("pool_size".to_owned(), "5".to_owned())]),
                ),
            ]),
            settings: BTreeMap::from([
                ("default_pool_size".to_owned(), "20".to_owned()),
                ("pool_mode".to_owned(), "transaction".to_owned()),
            ]),
            admin_user: "postgres".to_owned(),
            users: vec!["ffe_user".to_owned(), "postgres".to_owned()],
            tls: None,
            routes: BTreeMap::from([(
                "ffe ro".to_owned(),
                crate::model::PoolRoute {
                    database: "ffe".to_owned(),
                    replica: false,
                    host: "ffe-replica-1".to_owned(),
                },
            )]),
        };
        let text = ini("ffe", &config).expect("plain names");
        assert!(
            text.contains("\nffe = host=ffe-postgres port=5432 dbname=ffe\n"),
            "{text}"
        );
        assert!(
            text.contains("\n\"ffe ro\" = host=ffe-replica-1 port=5432 dbname=ffe pool_size=5\n"),
            "{text}"
        );
        assert!(text.contains("\nauth_type = scram-sha-256\n"), "{text}");
        assert!(text.contains("\ndefault_pool_size = 20\n"), "{text}");
        assert!(text.contains("\npool_mode = transaction\n"), "{text}");
        assert!(!text.contains("* ="), "{text}");
    }

    #[test]
    fn no_database_in_the_spec_serves_every_database() {
        let config = PoolerConfig {
            server_host: "x-postgres".to_owned(),
            server_port: 5432,
            admin_user: "postgres".to_owned(),
            ..PoolerConfig::default()
        };
        assert!(
            ini("x", &config)
                .expect("plain names")
                .contains("\n* = host=x-postgres port=5432\n")
        );
    }

    #[test]
    fn auth_file_doubles_quotes_in_names() {
        let verifiers = BTreeMap::from([("a\"b".to_owned(), "SCRAM-SHA-256$1:s$k:v".to_owned())]);
        assert_eq!(
            auth_file(&verifiers).expect("a quote is data"),
            "\"a\"\"b\" \"SCRAM-SHA-256$1:s$k:v\"\n"
        );
    }

    /// Issue 15: a quote, a newline or a separator in a name must not add
    /// a line or an entry to PgBouncer's files.
    #[test]
    fn hostile_names_stay_data_or_are_refused() {
        let config = |database: &str, admin: &str| PoolerConfig {
            server_host: "x-postgres".to_owned(),
            server_port: 5432,
            databases: BTreeMap::from([(database.to_owned(), BTreeMap::new())]),
            admin_user: admin.to_owned(),
            ..PoolerConfig::default()
        };
        // Quotes and spaces are quoted, on one line.
        let text = ini("x", &config("a\" = host=evil '\\", "postgres")).expect("quotable");
        assert!(
            text.contains(
                "\n\"a\"\" = host=evil '\\\" = host=x-postgres port=5432 \
                 dbname='a\" = host=evil \\'\\\\'\n"
            ),
            "{text}"
        );
        let databases: Vec<&str> = text
            .lines()
            .skip_while(|line| *line != "[databases]")
            .skip(1)
            .take_while(|line| !line.is_empty())
            .collect();
        assert_eq!(databases.len(), 1, "{text}");
        // A newline has no escape: refused, whichever field it is in.
        for (database, admin) in [
            ("a\nadmin_users = evil", "postgres"),
            ("a\0", "postgres"),
            ("a", "postgres\nauth_type = trust"),
            ("a", "postgres, evil"),
        ] {
            let refused = ini("x", &config(database, admin));
            assert!(refused.is_err(), "{database:?} {admin:?}: {refused:?}");
        }
        let error = ini("x", &config("a\nb", "postgres")).expect_err("newline");
        assert_eq!(
            error.to_string(),
            "database name `a\\nb` holds a control character; PgBouncer's files cannot hold it"
        );
        for (role, verifier) in [
            (
                "a\n\"evil\" \"SCRAM-SHA-256$1:s$k:v",
                "SCRAM-SHA-256$1:s$k:v",
            ),
            ("a", "SCRAM\"\n\"evil\" \"x"),
        ] {
            let verifiers = BTreeMap::from([(role.to_owned(), verifier.to_owned())]);
            assert!(auth_file(&verifiers).is_err(), "{role:?} {verifier:?}");
        }
    }
}
