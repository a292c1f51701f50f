//! Observing the PgBouncer pooler: its container through the Engine API, its
//! configuration through PgBouncer's own admin console (`SHOW CONFIG`,
//! `SHOW DATABASES`, simple query protocol only), and its auth file compared
//! with the server's `pg_authid`.
//!
//! What is live is what PgBouncer reports, not what pgspec last wrote: a
//! value changed by hand with `SET` on the console is drift. The one thing
//! PgBouncer does not report is the verifiers it holds, so the auth file is
//! read from the container and compared with the server's; only the outcome
//! per role (`PoolerUser`) leaves this module, never a verifier.
//!
//! Invariant: only reads.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio_postgres::SimpleQueryMessage;

use crate::engine::{self, Docker};
use crate::live::ObserveError;
use crate::live::postgres::Target;
use crate::model::{ContainerState, Deployment, Image, Pooler, PoolerUser};

/// The port PgBouncer listens on inside its container.
pub const LISTEN_PORT: &str = "6432/tcp";

/// The auth file inside the container, holding SCRAM verifiers.
pub const AUTH_FILE: &str = Pooler::AUTH_FILE;

/// The database name of PgBouncer's admin console.
pub const ADMIN_DATABASE: &str = "pgbouncer";

/// What the pooler looks like, and its image as the engine has it.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub pooler: Pooler,
    pub images: BTreeMap<String, Image>,
}

/// Reads the pooler the spec describes; `None` when the spec has none.
/// `server` is how the server is reached (for its verifiers); the admin
/// console is reached as the same user with the same password.
pub async fn observe(
    docker: &Docker,
    server: &Target,
    desired: &Deployment,
) -> Result<Option<Observed>, ObserveError> {
    let Some(container) = &desired.container else {
        return Ok(None);
    };
    let Some(want) = &desired.pooler else {
        return left_behind(docker, &desired.pooler_container()).await;
    };
    let name = desired.pooler_container();
    let (inspect, image) = tokio::join!(
        docker.inspect_container(&name, None),
        docker.inspect_image(&want.image)
    );
    let mut images = BTreeMap::new();
    if let Some(image) = engine::found(image, &format!("inspect image `{}`", want.image))? {
        images.insert(
            want.image.clone(),
            Image {
                id: image.id.unwrap_or_default(),
                ..Image::default()
            },
        );
    }
    let Some(inspect) = engine::found(inspect, &format!("inspect container `{name}`"))? else {
        return Ok(Some(Observed {
            pooler: Pooler {
                state: ContainerState::Missing,
                ..Pooler::default()
            },
            images,
        }));
    };

    let (bind_address, port) = engine::container::configured(&inspect, LISTEN_PORT);
    let running = inspect
        .state
        .as_ref()
        .and_then(|state| state.running)
        .unwrap_or(false);
    let attached = inspect
        .network_settings
        .as_ref()
        .and_then(|settings| settings.networks.as_ref())
        .is_some_and(|networks| networks.contains_key(&container.network));
    let mut pooler = Pooler {
        image: inspect
            .config
            .as_ref()
            .and_then(|config| config.image.clone())
            .unwrap_or_default(),
        port,
        bind_address,
        state: if running {
            ContainerState::Running
        } else {
            ContainerState::Stopped
        },
        id: inspect.id.clone().unwrap_or_default(),
        image_id: inspect.image.clone().unwrap_or_default(),
        network: if attached {
            container.network.clone()
        } else {
            String::new()
        },
        ..Pooler::default()
    };

    let users = desired.pooler_users();
    let console = async {
        if running {
            Some(read_console(&admin_target(server, &pooler.bind_address, pooler.port)).await)
        } else {
            None
        }
    };
    let auth = users_state(docker, &name, server, &users);
    let (console, auth) = tokio::join!(console, auth);
    match console {
        Some(Ok((settings, databases, mut served))) => {
            pooler.settings = settings;
            pooler.databases = databases;
            pooler.paused = engine::files::read_text(docker, &name, Pooler::PAUSED_MARK)
                .await
                .is_some_and(|mark| !mark.trim().is_empty());
            // Where a pool goes is kept for the spec's routes and for pools
            // that go elsewhere than the server's database of their name.
            let routes = desired.pooler.as_ref().map(|want| &want.routes);
            let server = desired
                .container
                .as_ref()
                .map(|server| server.name.as_str());
            served.retain(|name, route| {
                routes.is_some_and(|routes| routes.contains_key(name))
                    || (name != ADMIN_DATABASE
                        && (Some(route.host.as_str()) != server || &route.database != name))
            });
            pooler.served = served;
        }
        Some(Err(error)) => pooler.console_error = Some(error),
        None => {}
    }
    pooler.users = auth;
    if desired.tls.is_some() {
        pooler.tls_fingerprint = engine::files::read_file(docker, &name, Pooler::TLS_CERT_FILE)
            .await?
            .and_then(|pem| crate::live::tls::certificate_info(&pem, 0).ok())
            .map(|certificate| certificate.fingerprint);
    }
    Ok(Some(Observed { pooler, images }))
}

/// A pooler container pgspec made that the spec no longer declares: only
/// its existence matters (the plan reports it, or removes it when pruning).
async fn left_behind(docker: &Docker, name: &str) -> Result<Option<Observed>, ObserveError> {
    let Some(inspect) = engine::container::inspect(docker, name).await? else {
        return Ok(None);
    };
    let managed = inspect
        .config
        .as_ref()
        .and_then(|config| config.labels.as_ref())
        .and_then(|labels| labels.get(engine::labels::MANAGED))
        .is_some_and(|value| value == "true");
    if !managed {
        return Ok(None);
    }
    let running = inspect
        .state
        .as_ref()
        .and_then(|state| state.running)
        .unwrap_or(false);
    Ok(Some(Observed {
        pooler: Pooler {
            image: inspect
                .config
                .as_ref()
                .and_then(|config| config.image.clone())
                .unwrap_or_default(),
            state: if running {
                ContainerState::Running
            } else {
                ContainerState::Stopped
            },
            id: inspect.id.clone().unwrap_or_default(),
            ..Pooler::default()
        },
        images: BTreeMap::new(),
    }))
}

/// PgBouncer's admin console on a published port, as the server's user.
pub fn admin_target(server: &Target, bind_address: &str, port: u16) -> Target {
    Target {
        host: match bind_address {
            "0.0.0.0" | "" => "127.0.0.1".to_owned(),
            "::" => "::1".to_owned(),
            address => address.to_owned(),
        },
        port,
        database: ADMIN_DATABASE.to_owned(),
        ..server.clone()
    }
}

type Settings = BTreeMap<String, String>;
type Databases = BTreeMap<String, BTreeMap<String, String>>;
type Served = BTreeMap<String, crate::model::PoolRoute>;

/// How long a command on PgBouncer's admin console may take. PgBouncer
/// answers them from memory, at once; a console that does not is hung.
pub const CONSOLE_TIMEOUT: Duration = Duration::from_secs(30);

/// `SHOW CONFIG` and `SHOW DATABASES`; the error is kept as text, because a
/// console that does not answer is a state the plan acts on.
async fn read_console(admin: &Target) -> Result<(Settings, Databases, Served), String> {
    tokio::time::timeout(CONSOLE_TIMEOUT, read_console_unbounded(admin))
        .await
        .map_err(|_| {
            format!(
                "the admin console at {admin} did not answer within {} s",
                CONSOLE_TIMEOUT.as_secs()
            )
        })?
}

async fn read_console_unbounded(admin: &Target) -> Result<(Settings, Databases, Served), String> {
    let client = admin.connect().await.map_err(|error| chain(&error))?;
    let config = client
        .simple_query("SHOW CONFIG")
        .await
        .map_err(|error| chain(&error))?;
    let mut settings = BTreeMap::new();
    for row in rows(&config) {
        if let (Some(key), Some(value)) = (row.get("key"), row.get("value")) {
            settings.insert(key.to_owned(), value.to_owned());
        }
    }
    let listed = client
        .simple_query("SHOW DATABASES")
        .await
        .map_err(|error| chain(&error))?;
    let mut databases = BTreeMap::new();
    let mut served = BTreeMap::new();
    for row in rows(&listed) {
        let Some(name) = row.get("name") else {
            continue;
        };
        let mut values = BTreeMap::new();
        // The columns report what is in effect: an override, or the global
        // value when the database has none.
        for (column, setting) in [
            ("pool_size", "pool_size"),
            ("pool_mode", "pool_mode"),
            ("max_connections", "max_db_connections"),
        ] {
            if let Some(value) = row.get(column).filter(|value| !value.is_empty()) {
                values.insert(setting.to_owned(), value.to_owned());
            }
        }
        if let (Some(host), Some(database)) = (row.get("host"), row.get("database")) {
            served.insert(
                name.to_owned(),
                crate::model::PoolRoute {
                    database: database.to_owned(),
                    replica: false,
                    host: host.to_owned(),
                },
            );
        }
        databases.insert(name.to_owned(), values);
    }
    Ok((settings, databases, served))
}

pub(crate) fn rows(
    messages: &[SimpleQueryMessage],
) -> impl Iterator<Item = &tokio_postgres::SimpleQueryRow> {
    messages.iter().filter_map(|message| match message {
        SimpleQueryMessage::Row(row) => Some(row),
        _ => None,
    })
}

/// An error and its causes on one line.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Each served role and each role of the auth file, with whether the auth
/// file holds the server's verifier. Empty when the server cannot be read:
/// the plan then refreshes the file, which is always safe.
async fn users_state(
    docker: &Docker,
    container: &str,
    server: &Target,
    served: &[String],
) -> BTreeMap<String, PoolerUser> {
    let in_file = engine::files::read_text(docker, container, AUTH_FILE)
        .await
        .map(|text| parse_auth_file(&text))
        .unwrap_or_default();
    let roles: BTreeSet<String> = served
        .iter()
        .cloned()
        .chain(in_file.keys().cloned())
        .collect();
    let Ok(on_server) = server_verifiers(server, &roles).await else {
        return BTreeMap::new();
    };
    roles
        .into_iter()
        .map(|role| {
            let state = match (on_server.get(&role), in_file.get(&role)) {
                (Some(server), Some(file)) if server == file => PoolerUser::Current,
                (None, None) => PoolerUser::NoVerifier,
                _ => PoolerUser::Stale,
            };
            (role, state)
        })
        .collect()
}

/// SCRAM verifiers of login roles, by role. They stay in this module.
pub async fn server_verifiers(
    server: &Target,
    roles: &BTreeSet<String>,
) -> Result<BTreeMap<String, String>, ObserveError> {
    let client = server.connect_to_read().await?;
    let names: Vec<&str> = roles.iter().map(String::as_str).collect();
    let rows = client
        .query(
            "SELECT rolname::text, rolpassword FROM pg_catalog.pg_authid \
             WHERE rolname = ANY($1) AND rolcanlogin AND rolpassword LIKE 'SCRAM-SHA-256$%'",
            &[&names],
        )
        .await
        .map_err(|source| ObserveError::Query {
            database: server.database.clone(),
            what: "SCRAM verifiers for the pooler",
            source,
        })?;
    Ok(rows
        .into_iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)))
        .collect())
}

/// Roles and verifiers of a PgBouncer auth file: `"name" "verifier"` per
/// line, `""` standing for a `"` inside a name.
pub fn parse_auth_file(text: &str) -> BTreeMap<String, String> {
    let mut entries = BTreeMap::new();
    for line in text.lines() {
        let mut fields = Vec::new();
        let mut characters = line.trim().chars().peekable();
        while let Some(character) = characters.next() {
            if character != '"' {
                continue;
            }
            let mut field = String::new();
            while let Some(character) = characters.next() {
                if character == '"' {
                    if characters.peek() == Some(&'"') {
                        characters.next();
                        field.push('"');
                    } else {
                        break;
                    }
                } else {
                    field.push(character);
                }
            }
            fields.push(field);
        }
        if let [name, verifier, ..] = fields.as_slice() {
            entries.insert(name.clone(), verifier.clone());
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_file_lines_are_parsed_with_doubled_quotes() {
        let entries = parse_auth_file(
            "\"app\" \"SCRAM-SHA-256$4096:a$b:c\"\n\n\"we\"\"ird\" \"SCRAM-SHA-256$1:x$y:z\"\n;comment\n",
        );
        assert_eq!(entries["app"], "SCRAM-SHA-256$4096:a$b:c");
        assert_eq!(entries["we\"ird"], "SCRAM-SHA-256$1:x$y:z");
        assert_eq!(entries.len(), 2);
    }
}
