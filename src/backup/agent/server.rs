//! How the agent reaches the server it backs up (or restores into): a
//! connection as the superuser, with the password from the password file,
//! and PostgreSQL's client tools run with a quoted connection string.
//! Row counts are read here too, for `take` and for `verify`.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_postgres::Client;

use crate::backup::PGPASS_PATH;
use crate::sql::quote_literal;

/// How the agent reaches a server.
#[derive(Debug, Clone)]
pub struct ServerAddress {
    pub host: String,
    pub port: u16,
    pub user: String,
}

impl ServerAddress {
    /// A libpq connection string for the command-line tools, every value
    /// quoted, so a database name is never read as options.
    pub(super) fn conninfo(&self, database: &str) -> String {
        let quote = |value: &str| format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
        format!(
            "host={} port={} user={} dbname={}",
            quote(&self.host),
            self.port,
            quote(&self.user),
            quote(database)
        )
    }

    pub(super) async fn connect(&self, database: &str) -> anyhow::Result<Client> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(database)
            .application_name("pgspec-backup")
            .connect_timeout(Duration::from_secs(10));
        if let Some(password) = pgpass_password().await {
            config.password(password);
        }
        // TLS when the server offers it, as pg_dump (libpq's `prefer`)
        // does: a server that refuses clients without TLS still serves the
        // agent.
        let (mode, tls) = crate::tls::connector(crate::tls::SslMode::Prefer, Vec::new())
            .map_err(anyhow::Error::msg)?;
        config.ssl_mode(mode);
        let (client, connection) = config.connect(tls).await.with_context(|| {
            format!(
                "cannot connect to database `{database}` on `{}:{}`",
                self.host, self.port
            )
        })?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "backup agent connection ended");
            }
        });
        Ok(client)
    }
}

async fn pgpass_password() -> Option<String> {
    let text = tokio::fs::read_to_string(PGPASS_PATH).await.ok()?;
    crate::backup::password_from_pgpass(&text)
}

/// Tables whose rows a dump holds: ordinary and partitioned tables outside
/// the system schemas that no extension owns.
const TABLES_QUERY: &str = "\
    SELECT n.nspname, c.relname \
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
    WHERE c.relkind IN ('r', 'p') \
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
      AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
      AND NOT EXISTS (SELECT 1 FROM pg_depend d \
                      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid \
                        AND d.deptype = 'e') \
    ORDER BY 1, 2";

/// Rows per table (`schema.table`) in one statement, so every count sees
/// the transaction's snapshot.
pub(super) async fn count_rows(
    client: &Client,
) -> anyhow::Result<std::collections::BTreeMap<String, i64>> {
    let tables: Vec<(String, String)> = client
        .query(TABLES_QUERY, &[])
        .await
        .context("cannot list tables")?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    if tables.is_empty() {
        return Ok(Default::default());
    }
    let statement = tables
        .iter()
        .map(|(schema, table)| {
            format!(
                "SELECT {}::text, count(*) FROM {}",
                quote_literal(&format!("{schema}.{table}")),
                crate::sql::qualified(schema, table)
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    Ok(client
        .query(&statement, &[])
        .await
        .context("cannot count rows")?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

/// Runs a PostgreSQL client tool; its stderr becomes the error.
pub(super) async fn run_tool(program: &str, arguments: &[String]) -> anyhow::Result<String> {
    let output = tokio::process::Command::new(program)
        .args(arguments)
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .with_context(|| format!("cannot run `{program}`"))?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if !output.status.success() {
        bail!("`{program}` failed ({}): {stderr}", output.status);
    }
    Ok(stderr)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What libpq reads back from a connection string: every value as
    /// given, whatever quotes, backslashes or options a name holds.
    #[test]
    fn conninfo_quotes_every_value() {
        let address = ServerAddress {
            host: "ledger-postgres".to_owned(),
            port: 5433,
            user: "o'brien".to_owned(),
        };
        let hostile = "x' host=evil.example dbname='y\\";
        let conninfo = address.conninfo(hostile);
        let parsed: tokio_postgres::Config = conninfo.parse().expect("a connection string");
        assert_eq!(parsed.get_dbname(), Some(hostile));
        assert_eq!(parsed.get_user(), Some("o'brien"));
        assert_eq!(parsed.get_ports(), [5433]);
        assert_eq!(
            parsed.get_hosts(),
            [tokio_postgres::config::Host::Tcp(
                "ledger-postgres".to_owned()
            )]
        );
    }
}
