//! The reads behind `pgspec status`: the deployment's containers through
//! the engine, the server's activity and sizes in a handful of queries, and
//! PgBouncer's admin console. Nothing here writes, and every read is bounded
//! in time.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_postgres::Client;

use crate::engine::{self, Docker, EngineError};
use crate::live::pooler::{CONSOLE_TIMEOUT, admin_target, chain, rows};
use crate::live::{Connections, ObserveError, Target};
use crate::model::monitoring::exporter::ExporterKind;
use crate::model::monitoring::{
    CertificateFacts, ContainerFacts, DiskFacts, PoolFacts, PoolerFacts, RoleConnections,
    ServerFacts, StatusFacts,
};
use crate::model::{Deployment, backup};

/// How long reading the server's activity may take in all.
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads everything `status` shows, at once. A server or console that
/// cannot be read is a fact (a red line), not an error; an engine that
/// does not answer is an error.
pub async fn read(
    desired: &Deployment,
    connections: &Connections,
) -> Result<StatusFacts, EngineError> {
    let containers = async {
        match &connections.engine {
            Some(docker) => containers(docker, desired).await,
            None => Ok(Vec::new()),
        }
    };
    let server = server(&connections.target);
    let pooler = async {
        match (&desired.pooler, &desired.container) {
            (Some(pooler), Some(_)) => Some(
                pooler_facts(&admin_target(
                    &connections.target,
                    &pooler.bind_address,
                    pooler.port,
                ))
                .await,
            ),
            _ => None,
        }
    };
    let disk = async {
        match (&connections.engine, &desired.container) {
            (Some(docker), Some(server)) => Some(disk(docker, &server.name).await),
            _ => None,
        }
    };
    let (containers, server, pooler, disk) = tokio::join!(containers, server, pooler, disk);
    let mut facts = StatusFacts {
        containers: containers?,
        ..StatusFacts::default()
    };
    match disk {
        Some(Ok(Some(disk))) => facts.disk = Some(disk),
        Some(Err(error)) => facts.disk_error = Some(error),
        Some(Ok(None)) | None => {}
    }
    match server {
        Ok(server) => facts.server = Some(server),
        Err(error) => facts.server_error = Some(chain(&error)),
    }
    match pooler {
        Some(Ok(pooler)) => facts.pooler = Some(pooler),
        Some(Err(error)) => facts.pooler_error = Some(error),
        None => {}
    }
    if let (Some(docker), Some(_), Some(container)) =
        (&connections.engine, &desired.tls, &desired.container)
    {
        facts.certificate = crate::live::tls::installed_certificate(docker, &container.name)
            .await?
            .map(|certificate| CertificateFacts {
                subject: certificate.subject.clone(),
                fingerprint: certificate.short_fingerprint(),
                expires: certificate.expiry_date(),
                days_left: (certificate.not_after - crate::live::tls::now()).div_euclid(86_400),
            });
    }
    Ok(facts)
}

/// The server, pooler, backup and exporter containers the spec runs.
async fn containers(
    docker: &Docker,
    desired: &Deployment,
) -> Result<Vec<ContainerFacts>, EngineError> {
    let Some(server) = &desired.container else {
        return Ok(Vec::new());
    };
    let mut wanted = vec![("server", server.name.clone())];
    if desired.pooler.is_some() {
        wanted.push(("pooler", desired.pooler_container()));
    }
    if desired.backup.is_some() {
        wanted.push(("backup", backup::container_name(&desired.name)));
    }
    for kind in desired.exporters.keys() {
        let role = match kind {
            ExporterKind::Postgres => "postgres exporter",
            ExporterKind::Pgbouncer => "pgbouncer exporter",
        };
        wanted.push((role, kind.container(&desired.name)));
    }
    let inspections = wanted
        .iter()
        .map(|(_, name)| engine::container::inspect(docker, name));
    let found = futures_util::future::try_join_all(inspections).await?;
    Ok(wanted
        .into_iter()
        .zip(found)
        .map(|((role, name), inspect)| {
            let Some(inspect) = inspect else {
                return ContainerFacts {
                    role: role.to_owned(),
                    name,
                    state: "missing".to_owned(),
                    ..ContainerFacts::default()
                };
            };
            let state = inspect.state.as_ref();
            ContainerFacts {
                role: role.to_owned(),
                name,
                state: state
                    .and_then(|state| state.status)
                    .map(|status| status.to_string())
                    .unwrap_or_else(|| "unknown".to_owned()),
                health: state
                    .and_then(|state| state.health.as_ref())
                    .and_then(|health| health.status)
                    .map(|status| status.to_string())
                    .filter(|status| !status.is_empty() && status != "none"),
                restarts: inspect.restart_count.unwrap_or(0),
                image: inspect
                    .config
                    .as_ref()
                    .and_then(|config| config.image.clone())
                    .unwrap_or_default(),
            }
        })
        .collect())
}

/// How long `df` in the server container may take.
pub const DISK_TIMEOUT: Duration = Duration::from_secs(10);

/// The file system of the data directory: `df -P -k` on the server
/// container's `PGDATA` (the image's, else the official image's default),
/// run in the container, so it measures the volume PostgreSQL writes to.
/// `None` when the container is not running (its own line is red then).
async fn disk(docker: &Docker, name: &str) -> Result<Option<DiskFacts>, String> {
    let read = async {
        let Some(inspect) = engine::container::inspect(docker, name)
            .await
            .map_err(|error| error.to_string())?
        else {
            return Ok(None);
        };
        let running = inspect
            .state
            .as_ref()
            .and_then(|state| state.running)
            .unwrap_or(false);
        if !running {
            return Ok(None);
        }
        let pgdata = inspect
            .config
            .and_then(|config| config.env)
            .unwrap_or_default()
            .iter()
            .find_map(|variable| variable.strip_prefix("PGDATA=").map(str::to_owned))
            .filter(|pgdata| pgdata.starts_with('/'))
            .unwrap_or_else(|| crate::model::data::DEFAULT_PGDATA.to_owned());
        let command = ["df", "-P", "-k", "--", &pgdata].map(str::to_owned);
        let output = engine::container::exec(docker, name, &command, false)
            .await
            .map_err(|error| error.to_string())?;
        if output.code != 0 {
            return Err(format!(
                "`df` on {pgdata} in container `{name}` failed: {}",
                output.stderr.trim()
            ));
        }
        DiskFacts::from_df(&pgdata, &output.stdout)
            .map(Some)
            .ok_or_else(|| format!("cannot read what `df` printed: {}", output.stdout.trim()))
    };
    tokio::time::timeout(DISK_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "`df` in container `{name}` did not answer within {} s",
                DISK_TIMEOUT.as_secs()
            ))
        })
}

/// The server's facts, within [`SERVER_TIMEOUT`].
pub async fn server(target: &Target) -> Result<ServerFacts, ObserveError> {
    tokio::time::timeout(SERVER_TIMEOUT, async {
        let client = target.connect_to_read().await?;
        read_server(&client, &target.database).await
    })
    .await
    .map_err(|_| ObserveError::PostgresSlow {
        target: target.to_string(),
    })?
}

fn query_error(
    what: &'static str,
    database: &str,
) -> impl FnOnce(tokio_postgres::Error) -> ObserveError {
    let database = database.to_owned();
    move |source| ObserveError::Query {
        database,
        what,
        source,
    }
}

/// Four queries: the server's own numbers, client connections by state and
/// role, the roles' connection limits, and database sizes.
async fn read_server(client: &Client, database: &str) -> Result<ServerFacts, ObserveError> {
    let summary = client
        .query_one(
            "SELECT current_setting('server_version'), \
                    extract(epoch FROM now() - pg_postmaster_start_time())::int8, \
                    current_setting('max_connections')::int8, \
                    (SELECT coalesce(sum(deadlocks), 0)::int8 FROM pg_stat_database), \
                    (SELECT extract(epoch FROM max(now() - query_start))::float8 \
                       FROM pg_stat_activity \
                      WHERE state = 'active' AND backend_type = 'client backend' \
                        AND pid <> pg_backend_pid()), \
                    (SELECT extract(epoch FROM max(now() - xact_start))::float8 \
                       FROM pg_stat_activity \
                      WHERE xact_start IS NOT NULL AND backend_type = 'client backend' \
                        AND pid <> pg_backend_pid())",
            &[],
        )
        .await
        .map_err(query_error("the server's summary", database))?;
    let activity = client
        .query(
            "SELECT coalesce(state, 'unknown'), coalesce(usename::text, ''), count(*)::int8 \
             FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
             GROUP BY 1, 2 ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(query_error("connections (pg_stat_activity)", database))?;
    let limits = client
        .query(
            "SELECT rolname::text, rolconnlimit::int8 FROM pg_roles \
             WHERE rolconnlimit >= 0 ORDER BY 1",
            &[],
        )
        .await
        .map_err(query_error("roles' connection limits", database))?;
    let sizes = client
        .query(
            "SELECT datname::text, pg_database_size(oid)::int8 FROM pg_database \
             WHERE datallowconn AND has_database_privilege(oid, 'CONNECT') ORDER BY 1",
            &[],
        )
        .await
        .map_err(query_error("database sizes", database))?;

    let mut by_state: BTreeMap<String, i64> = BTreeMap::new();
    let mut roles: BTreeMap<String, RoleConnections> = BTreeMap::new();
    for row in activity {
        let (state, role, count): (String, String, i64) = (row.get(0), row.get(1), row.get(2));
        *by_state.entry(state).or_default() += count;
        let entry = roles
            .entry(role.clone())
            .or_insert_with(|| RoleConnections {
                role,
                ..RoleConnections::default()
            });
        entry.connections += count;
    }
    for row in limits {
        let role: String = row.get(0);
        let limit: i64 = row.get(1);
        roles
            .entry(role.clone())
            .or_insert_with(|| RoleConnections {
                role,
                ..RoleConnections::default()
            })
            .limit = Some(limit);
    }
    Ok(ServerFacts {
        version: summary.get(0),
        uptime_seconds: summary.get(1),
        max_connections: summary.get(2),
        deadlocks: summary.get(3),
        longest_query_seconds: summary.get(4),
        longest_transaction_seconds: summary.get(5),
        connections_by_state: by_state,
        roles: roles.into_values().collect(),
        database_sizes: sizes.iter().map(|row| (row.get(0), row.get(1))).collect(),
    })
}

/// `SHOW CONFIG`, `SHOW LISTS`, `SHOW DATABASES` and `SHOW POOLS` on
/// PgBouncer's admin console, within [`CONSOLE_TIMEOUT`]; the error as text.
async fn pooler_facts(admin: &Target) -> Result<PoolerFacts, String> {
    tokio::time::timeout(CONSOLE_TIMEOUT, async {
        let client = admin.connect().await.map_err(|error| chain(&error))?;
        let show = async |command: &str| {
            client
                .simple_query(command)
                .await
                .map_err(|error| chain(&error))
        };
        let config = show("SHOW CONFIG").await?;
        let lists = show("SHOW LISTS").await?;
        let databases = show("SHOW DATABASES").await?;
        let pools = show("SHOW POOLS").await?;
        let number = |text: Option<&str>| text.and_then(|text| text.parse::<i64>().ok());
        let max_client_conn = rows(&config)
            .find(|row| cell(row, "key") == Some("max_client_conn"))
            .and_then(|row| number(cell(row, "value")))
            .unwrap_or(0);
        // pgspec's own console connection is not counted, as on the server.
        let clients = rows(&lists)
            .find(|row| cell(row, "list") == Some("used_clients"))
            .and_then(|row| number(cell(row, "items")))
            .map_or(0, |used| (used - 1).max(0));
        let pool_sizes: BTreeMap<String, i64> = rows(&databases)
            .filter_map(|row| {
                Some((
                    cell(row, "name")?.to_owned(),
                    number(cell(row, "pool_size"))?,
                ))
            })
            .collect();
        let pools = rows(&pools)
            .filter(|row| cell(row, "database") != Some(crate::live::pooler::ADMIN_DATABASE))
            .map(|row| {
                let database = cell(row, "database").unwrap_or_default().to_owned();
                let servers = ["sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"]
                    .iter()
                    .filter_map(|column| number(cell(row, column)))
                    .sum();
                PoolFacts {
                    user: cell(row, "user").unwrap_or_default().to_owned(),
                    clients: number(cell(row, "cl_active")).unwrap_or(0),
                    waiting: number(cell(row, "cl_waiting")).unwrap_or(0),
                    servers,
                    pool_size: pool_sizes.get(&database).copied(),
                    database,
                }
            })
            .collect();
        Ok(PoolerFacts {
            clients,
            max_client_conn,
            pools,
        })
    })
    .await
    .map_err(|_| {
        format!(
            "the admin console at {admin} did not answer within {} s",
            CONSOLE_TIMEOUT.as_secs()
        )
    })?
}

/// A column of a console row; `None` when this PgBouncer has no such column
/// or the value is NULL.
fn cell<'a>(row: &'a tokio_postgres::SimpleQueryRow, column: &str) -> Option<&'a str> {
    row.try_get(column).ok().flatten()
}
