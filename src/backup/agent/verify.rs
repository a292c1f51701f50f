//! `pgspec backup verify` inside its scratch container: the backup's files
//! against its manifest, a restore with the image's own tools, and each
//! table's rows against the count taken in the dump's snapshot.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::files::measure;
use super::list;
use super::server::{ServerAddress, count_rows, run_tool};
use crate::backup::manifest::{DatabaseEntry, Manifest, Status};
use crate::sql::quote_ident;

/// One thing `verify` checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub subject: String,
    pub ok: bool,
    pub detail: String,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub id: String,
    pub kind: String,
    pub format: String,
    pub started_at: String,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|check| check.ok)
    }

    fn push(&mut self, subject: impl Into<String>, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            subject: subject.into(),
            ok,
            detail: detail.into(),
        });
    }
}

/// How long a scratch server may take to accept connections.
const SCRATCH_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Restores a backup into a scratch server and checks it: files against
/// the manifest, the restore tools' result, and row counts against those
/// counted at backup time. `id` `None` picks the newest successful backup.
///
/// The server is awaited at `address` over TCP, which only the final
/// server of the image's first start listens on; the restore then runs
/// over the Unix socket in `socket`, trusted locally, because restoring the
/// globals gives the superuser the backed-up server's password.
pub async fn check(
    root: &Path,
    deployment: &str,
    id: Option<&str>,
    address: &ServerAddress,
    socket: &str,
) -> anyhow::Result<Report> {
    let entries = list(root, deployment)?;
    let entry = match id {
        Some(id) => entries
            .into_iter()
            .find(|entry| entry.id == id)
            .with_context(|| format!("no backup `{id}` in the destination"))?,
        None => entries
            .into_iter()
            .find(|entry| entry.status == Status::Ok)
            .context("the destination holds no successful backup to verify")?,
    };
    let Some(manifest) = entry.manifest else {
        bail!(
            "backup `{}` has no manifest: it was cut off before it finished",
            entry.id
        );
    };
    let directory = root.join(&manifest.id);
    let mut report = Report {
        id: manifest.id.clone(),
        kind: manifest.kind.clone(),
        format: manifest.format.clone(),
        started_at: manifest.started_at.clone(),
        checks: Vec::new(),
    };
    if manifest.status != Status::Ok {
        report.push(
            "backup",
            false,
            format!(
                "the backup itself failed: {}",
                manifest.error.as_deref().unwrap_or("no error recorded")
            ),
        );
        return Ok(report);
    }
    check_files(&directory, &manifest, &mut report).await?;

    wait_ready(address).await?;
    let address = &ServerAddress {
        host: socket.to_owned(),
        ..address.clone()
    };
    if let Some(globals) = &manifest.globals {
        let (ok, detail) = restore_globals(address, &directory.join(globals)).await;
        report.push("globals", ok, detail);
    }
    let maintenance = address.connect("postgres").await?;
    for database in &manifest.databases {
        crate::output::status(&format!("checking database `{}`…", database.name));
        let subject = format!("database `{}`", database.name);
        let dump = directory.join(&database.dump);
        if manifest.kind == "data" {
            // Data alone cannot be restored into an empty server; read the
            // archive's table of contents instead.
            let detail = if manifest.format == "plain" {
                Ok("plain data-only dump; checked by size and checksum only".to_owned())
            } else {
                run_tool(
                    "pg_restore",
                    &["--list".to_owned(), dump.display().to_string()],
                )
                .await
                .map(|_| "data-only archive: table of contents read, not restored".to_owned())
            };
            match detail {
                Ok(detail) => report.push(subject, true, detail),
                Err(error) => report.push(subject, false, format!("{error:#}")),
            }
            continue;
        }
        let exists = maintenance
            .query_opt(
                "SELECT 1 FROM pg_database WHERE datname = $1",
                &[&database.name],
            )
            .await
            .context("cannot read pg_database")?
            .is_some();
        if !exists {
            maintenance
                .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&database.name)))
                .await
                .with_context(|| format!("cannot create database `{}`", database.name))?;
        }
        let restored = if manifest.format == "plain" {
            run_tool(
                "psql",
                &[
                    "--no-psqlrc".to_owned(),
                    "--quiet".to_owned(),
                    "--no-password".to_owned(),
                    "--set=ON_ERROR_STOP=1".to_owned(),
                    format!("--file={}", dump.display()),
                    format!("--dbname={}", address.conninfo(&database.name)),
                ],
            )
            .await
            .map(|_| "psql ran the dump without errors".to_owned())
        } else {
            run_tool(
                "pg_restore",
                &[
                    "--exit-on-error".to_owned(),
                    "--no-password".to_owned(),
                    format!("--dbname={}", address.conninfo(&database.name)),
                    dump.display().to_string(),
                ],
            )
            .await
            .map(|_| "pg_restore finished without errors".to_owned())
        };
        match restored {
            Ok(detail) => report.push(format!("{subject} restore"), true, detail),
            Err(error) => {
                report.push(format!("{subject} restore"), false, format!("{error:#}"));
                continue;
            }
        }
        if database.tables.is_empty() {
            continue;
        }
        let (ok, detail) = compare_counts(address, database).await?;
        report.push(format!("{subject} rows"), ok, detail);
    }
    Ok(report)
}

async fn check_files(
    directory: &Path,
    manifest: &Manifest,
    report: &mut Report,
) -> anyhow::Result<()> {
    let walk_directory = directory.to_path_buf();
    let found = tokio::task::spawn_blocking(move || measure(&walk_directory))
        .await
        .context("the checksum task failed")??;
    let mut problems = Vec::new();
    for expected in &manifest.files {
        match found.iter().find(|file| file.path == expected.path) {
            None => problems.push(format!("`{}` is missing", expected.path)),
            Some(file) if file.size_bytes != expected.size_bytes => problems.push(format!(
                "`{}` is {} bytes but was {} when the backup was taken (truncated?)",
                file.path, file.size_bytes, expected.size_bytes
            )),
            Some(file) if file.sha256 != expected.sha256 => problems.push(format!(
                "`{}` has changed since the backup was taken (SHA-256 differs)",
                file.path
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        report.push(
            "files",
            true,
            format!(
                "{} file(s), {}, sizes and SHA-256 match the manifest",
                manifest.files.len(),
                crate::backup::human_size(manifest.size_bytes)
            ),
        );
    } else {
        report.push("files", false, problems.join("; "));
    }
    Ok(())
}

async fn wait_ready(address: &ServerAddress) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    loop {
        match address.connect("postgres").await {
            Ok(client) if client.simple_query("SELECT 1").await.is_ok() => return Ok(()),
            Ok(_) => {}
            Err(error) if started.elapsed() > SCRATCH_READY_TIMEOUT => {
                return Err(error).context("the scratch server did not accept connections");
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Runs `pg_dumpall --globals-only` output. The scratch server already has
/// its superuser, so `role "<superuser>" already exists` is expected; any
/// other error fails the check.
async fn restore_globals(address: &ServerAddress, file: &Path) -> (bool, String) {
    let expected = format!("role \"{}\" already exists", address.user);
    let result = tokio::process::Command::new("psql")
        .args([
            "--no-psqlrc".to_owned(),
            "--quiet".to_owned(),
            "--no-password".to_owned(),
            format!("--file={}", file.display()),
            format!("--dbname={}", address.conninfo("postgres")),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await;
    let output = match result {
        Ok(output) => output,
        Err(error) => return (false, format!("cannot run `psql`: {error}")),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("ERROR:") && !line.contains(&expected))
        .collect();
    if output.status.success() && errors.is_empty() {
        (true, "roles and tablespaces restored with psql".to_owned())
    } else if errors.is_empty() {
        (false, format!("psql failed ({})", output.status))
    } else {
        (false, errors.join("; "))
    }
}

async fn compare_counts(
    address: &ServerAddress,
    database: &DatabaseEntry,
) -> anyhow::Result<(bool, String)> {
    let client = address.connect(&database.name).await?;
    let restored = count_rows(&client).await?;
    let mut problems = Vec::new();
    for (table, expected) in &database.tables {
        match restored.get(table) {
            None => problems.push(format!("`{table}` is missing")),
            Some(count) if count != expected => problems.push(format!(
                "`{table}` has {count} rows, {expected} when backed up"
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        let rows: i64 = database.tables.values().sum();
        Ok((
            true,
            format!(
                "{} table(s), {rows} rows, every count matches the backup's",
                database.tables.len()
            ),
        ))
    } else {
        Ok((false, problems.join("; ")))
    }
}
