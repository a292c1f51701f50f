//! The copy of a `dump-restore` major version upgrade, inside the scratch
//! server of the new image: the new image's `pg_dumpall` and `pg_dump`
//! read the old server over the deployment's network, its `psql` and
//! `pg_restore` write the local one, and every table's rows and every
//! sequence's value are compared between the two.
//!
//! With `check_only`, only what can be known before writes stop: that
//! every extension the old server has is available in the new image.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use futures_util::{StreamExt, stream};
use tokio_postgres::Client;

use super::server::{ServerAddress, count_rows, run_tool};
use super::verify::{Report, restore_dump, restore_globals, wait_ready};

/// Where the dumps are written inside the scratch container.
const WORK: &str = "/var/tmp/pgspec-upgrade";

/// How many databases are copied at once.
const CONCURRENT_DATABASES: usize = 2;

/// `pg_restore --jobs` for each database restored with `--create`.
const RESTORE_JOBS: usize = 2;

/// Checks, and with `check_only` false copies, the old server at `from`
/// into the local server (reached over TCP until ready, then at `socket`).
pub async fn copy(
    from: &ServerAddress,
    local: &ServerAddress,
    socket: &str,
    check_only: bool,
) -> anyhow::Result<Report> {
    let mut report = Report {
        id: format!("upgrade from {}", from.host),
        kind: "upgrade".to_owned(),
        format: "custom".to_owned(),
        started_at: chrono::Utc::now().to_rfc3339(),
        checks: Vec::new(),
    };
    wait_ready(local).await?;
    let local = &ServerAddress {
        host: socket.to_owned(),
        ..local.clone()
    };
    let old = from.connect("postgres").await?;
    let new = local.connect("postgres").await?;
    let (ok, detail) = extensions_available(from, &old, &new).await?;
    report.push("extensions", ok, detail);
    if check_only || !ok {
        return Ok(report);
    }

    tokio::fs::create_dir_all(WORK)
        .await
        .with_context(|| format!("cannot create `{WORK}`"))?;
    let globals = Path::new(WORK).join("globals.sql");
    run_tool(
        "pg_dumpall",
        &[
            "--globals-only".to_owned(),
            "--no-password".to_owned(),
            format!("--dbname={}", from.conninfo("postgres")),
            format!("--file={}", globals.display()),
        ],
    )
    .await
    .context("cannot dump the old server's roles")?;
    let (ok, detail) = restore_globals(local, &globals).await;
    report.push("globals", ok, detail);
    if !ok {
        return Ok(report);
    }
    let databases: Vec<String> = old
        .query(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate \
             ORDER BY datname",
            &[],
        )
        .await
        .context("cannot list the old server's databases")?
        .iter()
        .map(|row| row.get(0))
        .collect();
    // A few databases at once, each restored by a few workers: the copy is
    // bound by the dump's reads and the restore's index builds, which
    // overlap well on two cores. Reported in the databases' order.
    let copies: Vec<anyhow::Result<Vec<Check>>> = stream::iter(&databases)
        .map(|database| copy_database(from, local, database))
        .buffered(CONCURRENT_DATABASES)
        .collect()
        .await;
    for checks in copies {
        let mut failed = false;
        for (subject, ok, detail) in checks? {
            failed |= !ok;
            report.push(subject, ok, detail);
        }
        if failed {
            break;
        }
    }
    let _ = tokio::fs::remove_dir_all(WORK).await;
    Ok(report)
}

/// One check of the report: subject, outcome, detail.
type Check = (String, bool, String);

/// Copies one database with its own dump file, then compares it; a failed
/// copy is a failed check, and no comparison follows it.
async fn copy_database(
    from: &ServerAddress,
    local: &ServerAddress,
    database: &str,
) -> anyhow::Result<Vec<Check>> {
    crate::output::status(&format!("copying database `{database}`…"));
    let subject = format!("database `{database}`");
    // The name of a dump file cannot be the database's own (any text):
    // its hash is.
    let dump = Path::new(WORK).join(format!("{:016x}.dump", fxhash(database)));
    let copied = async {
        run_tool(
            "pg_dump",
            &[
                "--format=custom".to_owned(),
                "--no-password".to_owned(),
                format!("--file={}", dump.display()),
                format!("--dbname={}", from.conninfo(database)),
            ],
        )
        .await?;
        if database == "postgres" {
            restore_dump(local, "custom", &dump, database).await
        } else {
            // The database as the old server has it: owner, encoding,
            // locale, its settings and privileges.
            run_tool(
                "pg_restore",
                &[
                    "--create".to_owned(),
                    "--exit-on-error".to_owned(),
                    "--no-password".to_owned(),
                    format!("--jobs={RESTORE_JOBS}"),
                    format!("--dbname={}", local.conninfo("postgres")),
                    dump.display().to_string(),
                ],
            )
            .await
            .map(|_| "pg_restore --create finished without errors".to_owned())
        }
    }
    .await;
    let _ = tokio::fs::remove_file(&dump).await;
    match copied {
        Ok(detail) => {
            let (ok, compared) = compare(from, local, database).await?;
            Ok(vec![
                (format!("{subject} copy"), true, detail),
                (format!("{subject} rows and sequences"), ok, compared),
            ])
        }
        Err(error) => Ok(vec![(
            format!("{subject} copy"),
            false,
            format!("{error:#}"),
        )]),
    }
}

/// A stable 64-bit hash of a name (FNV-1a), for file names.
fn fxhash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Every extension of every database of the old server is available in
/// the new image.
async fn extensions_available(
    from: &ServerAddress,
    old: &Client,
    new: &Client,
) -> anyhow::Result<(bool, String)> {
    let databases: Vec<String> = old
        .query(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate",
            &[],
        )
        .await
        .context("cannot list the old server's databases")?
        .iter()
        .map(|row| row.get(0))
        .collect();
    // Extensions are installed per database.
    let mut wanted: BTreeMap<String, String> = BTreeMap::new();
    for database in &databases {
        let client = from.connect(database).await?;
        for row in client
            .query("SELECT extname, extversion FROM pg_extension", &[])
            .await
            .with_context(|| format!("cannot read the extensions of `{database}`"))?
        {
            wanted.insert(row.get(0), row.get(1));
        }
    }
    let available: Vec<String> = new
        .query("SELECT name FROM pg_available_extensions", &[])
        .await
        .context("cannot read the new image's extensions")?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(name, _)| !available.contains(name))
        .map(|(name, version)| format!("`{name}` {version}"))
        .collect();
    if missing.is_empty() {
        Ok((
            true,
            format!(
                "{} extension(s) of the old server available in the new image",
                wanted.len()
            ),
        ))
    } else {
        Ok((
            false,
            format!(
                "not available in the new image: {}; use an image that ships them",
                missing.join(", ")
            ),
        ))
    }
}

/// Rows per table and each sequence's value, old against new.
async fn compare(
    from: &ServerAddress,
    local: &ServerAddress,
    database: &str,
) -> anyhow::Result<(bool, String)> {
    let old = from.connect(database).await?;
    let new = local.connect(database).await?;
    let (old_rows, new_rows) = (count_rows(&old).await?, count_rows(&new).await?);
    let (old_sequences, new_sequences) = (sequences(&old).await?, sequences(&new).await?);
    let mut problems = Vec::new();
    for (table, rows) in &old_rows {
        match new_rows.get(table) {
            None => problems.push(format!("`{table}` is missing")),
            Some(count) if count != rows => problems.push(format!(
                "`{table}` has {count} rows, {rows} in the old server"
            )),
            Some(_) => {}
        }
    }
    for (sequence, value) in &old_sequences {
        match new_sequences.get(sequence) {
            None => problems.push(format!("sequence `{sequence}` is missing")),
            Some(now) if now != value => problems.push(format!(
                "sequence `{sequence}` is at {}, {} in the old server",
                show(*now),
                show(*value)
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        let rows: i64 = old_rows.values().sum();
        Ok((
            true,
            format!(
                "{} table(s), {rows} rows and {} sequence(s) as in the old server",
                old_rows.len(),
                old_sequences.len()
            ),
        ))
    } else {
        Ok((false, problems.join("; ")))
    }
}

fn show(value: Option<i64>) -> String {
    value.map_or_else(
        || "its start (never used)".to_owned(),
        |value| value.to_string(),
    )
}

/// Each sequence's last value (`None` before its first use).
async fn sequences(client: &Client) -> anyhow::Result<BTreeMap<String, Option<i64>>> {
    Ok(client
        .query(
            "SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences",
            &[],
        )
        .await
        .context("cannot read the sequences")?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}
