//! Running SQL steps: one connection per database, DDL under a lock
//! timeout, retried when the lock is not available.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::live::Target;
use crate::secret::Secret;
use crate::sql::{quote_ident, quote_literal};

/// How often a statement that could not get its lock is tried.
const ATTEMPTS: u32 = 3;

/// Connections of one apply, by database (`None` = maintenance database).
pub struct Sessions {
    target: Target,
    lock_timeout: Duration,
    clients: HashMap<Option<String>, Client>,
}

impl Sessions {
    pub fn new(target: Target, lock_timeout: Duration) -> Self {
        Sessions {
            target,
            lock_timeout,
            clients: HashMap::new(),
        }
    }

    /// Drops every connection (the server is about to restart).
    pub fn reset(&mut self) {
        self.clients.clear();
    }

    async fn client(&mut self, database: &Option<String>) -> anyhow::Result<&Client> {
        if !self.clients.contains_key(database) {
            let target = match database {
                Some(name) => self.target.with_database(name),
                None => self.target.clone(),
            };
            let client = target.connect().await?;
            // DDL must not queue behind other sessions' locks for long: a
            // waiting ALTER blocks every query that arrives after it.
            client
                .batch_execute(&format!(
                    "SET lock_timeout = {}",
                    quote_literal(&format!("{}ms", self.lock_timeout.as_millis()))
                ))
                .await
                .context("cannot set lock_timeout")?;
            self.clients.insert(database.clone(), client);
        }
        Ok(&self.clients[database])
    }

    /// Runs statements in a database, in one transaction when asked.
    pub async fn run(
        &mut self,
        database: &Option<String>,
        statements: &[String],
        transaction: bool,
    ) -> anyhow::Result<()> {
        self.run_retried(database, statements, transaction, None)
            .await
            .map(|_| ())
    }

    /// Runs `statements` (a `CREATE EXTENSION` and its comment) in one
    /// transaction that first checks the extension is not installed;
    /// returns whether it ran them. The check and the create share the
    /// transaction, and the create is a plain `CREATE EXTENSION`, so an
    /// extension made by another session is never commented as pgspec's.
    pub async fn create_extension(
        &mut self,
        database: &str,
        name: &str,
        statements: &[String],
    ) -> anyhow::Result<bool> {
        self.run_retried(&Some(database.to_owned()), statements, true, Some(name))
            .await
    }

    /// Builds an index plainly on a small table (`Step::BuildIndex`): one
    /// transaction locks the table in SHARE mode (no writes until it
    /// commits), checks its size and runs `statements`. Returns `false`,
    /// having changed nothing, when the table is now larger than
    /// `max_bytes`: the caller builds concurrently instead.
    pub async fn build_small_index(
        &mut self,
        database: &str,
        table: &str,
        max_bytes: i64,
        statements: &[String],
    ) -> anyhow::Result<bool> {
        let database = Some(database.to_owned());
        let lock_timeout = self.lock_timeout;
        retrying(lock_timeout, async || {
            self.build_small_index_once(&database, table, max_bytes, statements)
                .await
        })
        .await
    }

    async fn build_small_index_once(
        &mut self,
        database: &Option<String>,
        table: &str,
        max_bytes: i64,
        statements: &[String],
    ) -> anyhow::Result<bool> {
        let client = self.client(database).await?;
        let result: anyhow::Result<bool> = async {
            // One round trip: begin, lock, and read the size under the lock.
            let lock = format!("LOCK TABLE {table} IN SHARE MODE");
            tracing::debug!(statement = %lock, "sql");
            let messages = client
                .simple_query(&format!(
                    "BEGIN; {lock}; SELECT pg_relation_size({}::regclass)",
                    quote_literal(table)
                ))
                .await?;
            let bytes: i64 = messages
                .iter()
                .find_map(|message| match message {
                    tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
                    _ => None,
                })
                .and_then(|text| text.parse().ok())
                .context("the server did not say how large the table is")?;
            if bytes > max_bytes {
                return Ok(false);
            }
            for statement in statements {
                tracing::debug!(%statement, "sql");
            }
            client
                .batch_execute(&format!("{};\nCOMMIT", statements.join(";\n")))
                .await?;
            Ok(true)
        }
        .await;
        if !matches!(result, Ok(true)) {
            // Harmless outside a transaction (a warning only).
            let _ = client.batch_execute("ROLLBACK").await;
        }
        result
    }

    /// Builds several small tables' indexes in one transaction: it locks
    /// every table in SHARE mode and checks each is still within its limit
    /// (one round trip), then runs `statements` and commits (another).
    /// Returns `false`, having changed nothing, when a table grew past its
    /// limit. Lock waits are not retried here: the caller runs the builds
    /// one by one on any error.
    pub async fn build_small_indexes(
        &mut self,
        database: &str,
        tables: &[(&str, i64)],
        statements: &[String],
    ) -> anyhow::Result<bool> {
        let client = self.client(&Some(database.to_owned())).await?;
        let names: Vec<&str> = tables.iter().map(|(table, _)| *table).collect();
        let limits: Vec<String> = tables
            .iter()
            .map(|(table, max_bytes)| format!("({}, {max_bytes}::int8)", quote_literal(table)))
            .collect();
        let check = format!(
            "BEGIN; LOCK TABLE {} IN SHARE MODE; \
             SELECT count(*) FROM (VALUES {}) AS limits(name, max_bytes) \
             WHERE pg_relation_size(name::regclass) > max_bytes",
            names.join(", "),
            limits.join(", ")
        );
        tracing::debug!(
            tables = names.len(),
            "sql: lock and measure the tables of a batch of index builds"
        );
        let result: anyhow::Result<bool> = async {
            let messages = client.simple_query(&check).await?;
            let grown: i64 = messages
                .iter()
                .find_map(|message| match message {
                    tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
                    _ => None,
                })
                .and_then(|text| text.parse().ok())
                .context("the server did not say how large the tables are")?;
            if grown > 0 {
                return Ok(false);
            }
            tracing::debug!(statements = statements.len(), "sql batch");
            client
                .batch_execute(&format!("{};\nCOMMIT", statements.join(";\n")))
                .await?;
            Ok(true)
        }
        .await;
        if !matches!(result, Ok(true)) {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        result
    }

    async fn run_retried(
        &mut self,
        database: &Option<String>,
        statements: &[String],
        transaction: bool,
        unless_installed: Option<&str>,
    ) -> anyhow::Result<bool> {
        let lock_timeout = self.lock_timeout;
        retrying(lock_timeout, async || {
            self.run_once(database, statements, transaction, unless_installed)
                .await
        })
        .await
    }

    async fn run_once(
        &mut self,
        database: &Option<String>,
        statements: &[String],
        transaction: bool,
        unless_installed: Option<&str>,
    ) -> anyhow::Result<bool> {
        let client = self.client(database).await?;
        if transaction {
            client.batch_execute("BEGIN").await?;
            if let Some(extension) = unless_installed {
                let installed = client
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = $1)",
                        &[&extension],
                    )
                    .await;
                match installed {
                    Ok(row) if row.get::<_, bool>(0) => {
                        client.batch_execute("ROLLBACK").await?;
                        tracing::info!(
                            extension,
                            "installed already, by someone else; left as it is and not marked as pgspec's"
                        );
                        return Ok(false);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        let _ = client.batch_execute("ROLLBACK").await;
                        return Err(error.into());
                    }
                }
            }
            for statement in statements {
                tracing::debug!(%statement, "sql");
                if let Err(error) = client.batch_execute(statement).await {
                    let _ = client.batch_execute("ROLLBACK").await;
                    return Err(error.into());
                }
            }
            client.batch_execute("COMMIT").await?;
        } else {
            for statement in statements {
                tracing::debug!(%statement, "sql");
                client.batch_execute(statement).await?;
            }
        }
        Ok(true)
    }

    /// Runs `statements` in one transaction sent as one simple-query string
    /// (one round trip). On an error the transaction is rolled back whole;
    /// the statements are never logged (they may hold password verifiers).
    pub async fn run_batch(
        &mut self,
        database: &Option<String>,
        statements: &[String],
    ) -> anyhow::Result<()> {
        let client = self.client(database).await?;
        let mut script = String::from("BEGIN;\n");
        for statement in statements {
            script.push_str(statement);
            script.push_str(";\n");
        }
        script.push_str("COMMIT");
        tracing::debug!(statements = statements.len(), "sql batch");
        if let Err(error) = client.batch_execute(&script).await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(error.into());
        }
        Ok(())
    }

    /// Sets a role's password to a SCRAM-SHA-256 verifier made here, so the
    /// plain password never reaches the server or its log.
    pub async fn set_password(&mut self, role: &str, secret: &Secret) -> anyhow::Result<()> {
        let statement = password_statement(role, secret)?;
        let client = self.client(&None).await?;
        client
            .batch_execute(&statement)
            .await
            .with_context(|| format!("cannot set the password of role `{role}`"))
    }
}

/// `ALTER ROLE … PASSWORD` with a SCRAM-SHA-256 verifier made here from
/// the secret (a PBKDF2 of 4 096 rounds): the plain password never reaches
/// the server or its log.
pub fn password_statement(role: &str, secret: &Secret) -> anyhow::Result<String> {
    let value = secret
        .resolve()
        .with_context(|| format!("cannot read the password of role `{role}`"))?;
    let verifier = postgres_protocol::password::scram_sha_256(value.expose().as_bytes());
    Ok(format!(
        "ALTER ROLE {} PASSWORD {}",
        quote_ident(role),
        quote_literal(&verifier)
    ))
}

/// Runs `once` until it succeeds or fails for another reason than a lock
/// wait, at most [`ATTEMPTS`] times, sleeping a second more before each
/// new attempt.
async fn retrying<T>(
    lock_timeout: Duration,
    mut once: impl AsyncFnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut attempt = 1;
    loop {
        match once().await {
            Err(error) if attempt < ATTEMPTS && is_lock_wait(&error) => {
                tracing::warn!(
                    attempt,
                    "could not get a lock within lock_timeout; retrying"
                );
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                attempt += 1;
            }
            Err(error) if is_lock_wait(&error) => {
                return Err(error).context(format!(
                    "gave up after {ATTEMPTS} attempts: another session holds a conflicting \
                     lock for longer than lock_timeout ({} ms)",
                    lock_timeout.as_millis()
                ));
            }
            other => return other,
        }
    }
}

fn is_lock_wait(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        .is_some_and(|code| {
            *code == SqlState::LOCK_NOT_AVAILABLE || *code == SqlState::T_R_DEADLOCK_DETECTED
        })
}
