//! `pgspec backup verify` inside its scratch container: the backup's files
//! against its manifest, a restore with the image's own tools, and each
//! table's rows against the count taken in the dump's snapshot.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::files::measure;
use super::list;
use super::server::{ServerAddress, count_rows, run_tool};
use crate::backup::manifest::{DatabaseEntry, FileEntry, Manifest, Status};
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

    pub(super) fn push(&mut self, subject: impl Into<String>, ok: bool, detail: impl Into<String>) {
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
        match restore_dump(address, &manifest.format, &dump, &database.name).await {
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

/// Restores one database's dump of `format` into the existing database
/// `into` with the image's own tools: psql for plain SQL, pg_restore for
/// the archive formats, stopping at the first error.
pub(super) async fn restore_dump(
    address: &ServerAddress,
    format: &str,
    dump: &Path,
    into: &str,
) -> anyhow::Result<String> {
    if format == "plain" {
        run_tool(
            "psql",
            &[
                "--no-psqlrc".to_owned(),
                "--quiet".to_owned(),
                "--no-password".to_owned(),
                "--set=ON_ERROR_STOP=1".to_owned(),
                format!("--file={}", dump.display()),
                format!("--dbname={}", address.conninfo(into)),
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
                format!("--dbname={}", address.conninfo(into)),
                dump.display().to_string(),
            ],
        )
        .await
        .map(|_| "pg_restore finished without errors".to_owned())
    }
}

pub(super) async fn check_files(
    directory: &Path,
    manifest: &Manifest,
    report: &mut Report,
) -> anyhow::Result<()> {
    let walk_directory = directory.to_path_buf();
    let found = tokio::task::spawn_blocking(move || measure(&walk_directory))
        .await
        .context("the checksum task failed")??;
    let problems = file_problems(&manifest.files, &found);
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

/// How the files found differ from those the manifest lists: missing,
/// another size, another SHA-256. Files the manifest does not list are not
/// its business.
fn file_problems(expected: &[FileEntry], found: &[FileEntry]) -> Vec<String> {
    let mut problems = Vec::new();
    for expected in expected {
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
    problems
}

pub(super) async fn wait_ready(address: &ServerAddress) -> anyhow::Result<()> {
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
pub(super) async fn restore_globals(address: &ServerAddress, file: &Path) -> (bool, String) {
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
    let errors = globals_errors(&stderr, &address.user);
    if output.status.success() && errors.is_empty() {
        (true, "roles and tablespaces restored with psql".to_owned())
    } else if errors.is_empty() {
        (false, format!("psql failed ({})", output.status))
    } else {
        (false, errors.join("; "))
    }
}

/// The errors psql reported restoring the globals, but the one expected:
/// the scratch server's own `superuser` already exists.
fn globals_errors<'a>(stderr: &'a str, superuser: &str) -> Vec<&'a str> {
    let expected = format!("role \"{superuser}\" already exists");
    stderr
        .lines()
        .filter(|line| line.contains("ERROR:") && !line.contains(&expected))
        .collect()
}

async fn compare_counts(
    address: &ServerAddress,
    database: &DatabaseEntry,
) -> anyhow::Result<(bool, String)> {
    let client = address.connect(&database.name).await?;
    let restored = count_rows(&client).await?;
    let problems = count_problems(&database.tables, &restored);
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

/// How the restored tables' rows differ from those counted at backup time.
/// Tables the backup did not count are not its business.
fn count_problems(
    expected: &BTreeMap<String, i64>,
    restored: &BTreeMap<String, i64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (table, expected) in expected {
        match restored.get(table) {
            None => problems.push(format!("`{table}` is missing")),
            Some(count) if count != expected => problems.push(format!(
                "`{table}` has {count} rows, {expected} when backed up"
            )),
            Some(_) => {}
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::agent::fixtures::{file, write_backup};

    #[test]
    fn files_must_be_there_with_their_size_and_checksum() {
        let expected = [
            file("01-app.dump", 10, "aa"),
            file("02-b.dump", 10, "bb"),
            file("03-c.dump", 10, "cc"),
            file("globals.sql", 5, "dd"),
        ];
        let found = [
            file("01-app.dump", 10, "aa"),
            file("03-c.dump", 10, "c0"),
            file("globals.sql", 4, "dd"),
            file("stray.txt", 1, "ee"),
        ];
        assert_eq!(
            file_problems(&expected, &found),
            [
                "`02-b.dump` is missing",
                "`03-c.dump` has changed since the backup was taken (SHA-256 differs)",
                "`globals.sql` is 4 bytes but was 5 when the backup was taken (truncated?)",
            ]
        );
        assert!(file_problems(&expected, &expected).is_empty());
    }

    #[test]
    fn row_counts_must_match_those_taken_with_the_dump() {
        let counts = |items: &[(&str, i64)]| -> BTreeMap<String, i64> {
            items
                .iter()
                .map(|(table, rows)| ((*table).to_owned(), *rows))
                .collect()
        };
        let expected = counts(&[("public.a", 3), ("public.b", 0), ("s.c", 7)]);
        let restored = counts(&[("public.a", 3), ("s.c", 6), ("s.new", 1)]);
        assert_eq!(
            count_problems(&expected, &restored),
            [
                "`public.b` is missing",
                "`s.c` has 6 rows, 7 when backed up"
            ]
        );
        assert!(count_problems(&expected, &expected).is_empty());
    }

    #[test]
    fn only_the_superuser_existing_is_an_expected_globals_error() {
        let stderr = "\
psql:/backups/x/globals.sql:14: ERROR:  role \"postgres\" already exists
psql:/backups/x/globals.sql:20: NOTICE:  something harmless
psql:/backups/x/globals.sql:31: ERROR:  role \"app\" already exists
psql:/backups/x/globals.sql:40: ERROR:  tablespace location does not exist";
        assert_eq!(
            globals_errors(stderr, "postgres"),
            [
                "psql:/backups/x/globals.sql:31: ERROR:  role \"app\" already exists",
                "psql:/backups/x/globals.sql:40: ERROR:  tablespace location does not exist",
            ]
        );
        assert_eq!(globals_errors(stderr, "app").len(), 2);
    }

    /// An address nothing listens on: the checks below must end before
    /// they would connect.
    fn nowhere() -> ServerAddress {
        ServerAddress {
            host: "/nonexistent".to_owned(),
            port: 1,
            user: "postgres".to_owned(),
        }
    }

    /// A failed backup is reported as such without a restore; which backup
    /// is checked: the one named, else the newest successful one.
    #[tokio::test]
    async fn a_failed_backup_fails_the_check_before_any_restore() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let root = root.path();
        write_backup(root, "20260101T000000Z-nightly", "ledger", Status::Failed);
        let report = check(
            root,
            "ledger",
            Some("20260101T000000Z-nightly"),
            &nowhere(),
            "/nonexistent",
        )
        .await
        .expect("a report");
        assert!(!report.ok());
        assert_eq!(
            report.checks,
            [Check {
                subject: "backup".to_owned(),
                ok: false,
                detail: "the backup itself failed: no error recorded".to_owned(),
            }]
        );
        let error = check(root, "ledger", None, &nowhere(), "/nonexistent")
            .await
            .err()
            .map(|error| error.to_string());
        assert_eq!(
            error.as_deref(),
            Some("the destination holds no successful backup to verify")
        );
        std::fs::create_dir(root.join("20260102T000000Z-nightly")).expect("create a directory");
        let error = check(
            root,
            "ledger",
            Some("20260102T000000Z-nightly"),
            &nowhere(),
            "/nonexistent",
        )
        .await
        .err()
        .map(|error| error.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "backup `20260102T000000Z-nightly` has no manifest: it was cut off before it \
                 finished"
            )
        );
    }
}
