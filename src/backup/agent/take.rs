//! Taking a backup: a directory named by the start time and schedule,
//! readable by root only, the dumps (`pg_dumpall --globals-only`, then
//! `pg_dump --snapshot` per database after counting its rows in the same
//! snapshot), and the manifest, written last through a rename. Backups and
//! pruning hold the destination's lock, so they never overlap.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::files::measure;
use super::retention::prune;
use super::server::{ServerAddress, count_rows, run_tool};
use crate::backup::AgentConfig;
use crate::backup::manifest::{
    self, DatabaseEntry, FileEntry, MANIFEST_FILE, MANIFEST_VERSION, Manifest, Status,
};
use crate::model::BackupSchedule;

/// Takes one backup of each named schedule (all when `only` is `None`),
/// now, and prunes after each. Returns the manifests; a failed backup is
/// in the list with status `failed`.
pub async fn once(
    config: &AgentConfig,
    only: Option<&str>,
    root: &Path,
) -> anyhow::Result<Vec<Manifest>> {
    let schedules: Vec<&BackupSchedule> = match only {
        Some(name) => vec![config.schedules.get(name).with_context(|| {
            format!(
                "no backup schedule `{name}`; the backup container has {}",
                names(config)
            )
        })?],
        None => config.schedules.values().collect(),
    };
    let mut manifests = Vec::new();
    for schedule in schedules {
        manifests.push(take_and_prune(config, schedule, root).await?);
    }
    Ok(manifests)
}

fn names(config: &AgentConfig) -> String {
    config
        .schedules
        .keys()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Holds the destination's lock file; backups and pruning never overlap,
/// whether started by the schedule or by `backup run`.
pub(super) async fn lock_destination(root: &Path) -> anyhow::Result<std::fs::File> {
    let path = root.join(".pgspec-backup.lock");
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock file `{}`", path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock `{}`", path.display()))?;
        Ok(file)
    })
    .await
    .context("the lock task failed")?
}

pub(super) async fn take_and_prune(
    config: &AgentConfig,
    schedule: &BackupSchedule,
    root: &Path,
) -> anyhow::Result<Manifest> {
    let _lock = lock_destination(root).await?;
    let manifest = take(config, schedule, root).await?;
    crate::output::status(&format!(
        "backup `{}`: {}{}, {}",
        manifest.id,
        manifest.status.as_str(),
        manifest
            .error
            .as_deref()
            .map(|error| format!(" ({error})"))
            .unwrap_or_default(),
        crate::backup::human_size(manifest.size_bytes)
    ));
    let pruned = prune(config, schedule, root, &manifest.id).await?;
    for id in pruned {
        crate::output::status(&format!("backup `{id}`: removed by retention"));
    }
    if schedule.kind == "physical" {
        let removed = super::physical::prune_wal(root, &config.deployment, &schedule.name).await?;
        if removed > 0 {
            crate::output::status(&format!(
                "{removed} WAL segment(s) older than the oldest kept base backup removed"
            ));
        }
    }
    Ok(manifest)
}

/// Takes one backup and writes its manifest, `ok` or `failed`. Errs only
/// when not even the manifest could be written.
async fn take(
    config: &AgentConfig,
    schedule: &BackupSchedule,
    root: &Path,
) -> anyhow::Result<Manifest> {
    let (started, directory) = loop {
        let started = Utc::now();
        let directory = root.join(manifest::backup_id(started, &schedule.name));
        match tokio::fs::create_dir(&directory).await {
            Ok(()) => {
                // Dumps hold every row and the roles' password verifiers:
                // nobody but root reads them, whatever the umask.
                use std::os::unix::fs::PermissionsExt;
                tokio::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o700))
                    .await
                    .with_context(|| format!("cannot restrict `{}`", directory.display()))?;
                break (started, directory);
            }
            // Two backups of one schedule in one second: take the next.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("cannot create `{}`", directory.display()));
            }
        }
    };
    let address = ServerAddress {
        host: config.server.clone(),
        port: config.port,
        user: config.superuser.clone(),
    };
    let mut manifest = start_manifest(config, schedule, started);
    let dumped = dump(&address, schedule, &directory, &mut manifest).await;
    let walk_directory = directory.clone();
    let files = tokio::task::spawn_blocking(move || measure(&walk_directory))
        .await
        .context("the checksum task failed")??;
    finish(&mut manifest, dumped, files, Utc::now());
    write_manifest(&directory, &manifest).await?;
    Ok(manifest)
}

/// A time as manifests write it: RFC 3339 in whole seconds, UTC, `Z`.
fn manifest_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The manifest of a backup of `schedule` that started at `started`,
/// before anything is dumped: `ok` until a dump fails.
fn start_manifest(
    config: &AgentConfig,
    schedule: &BackupSchedule,
    started: DateTime<Utc>,
) -> Manifest {
    Manifest {
        format_version: MANIFEST_VERSION,
        id: manifest::backup_id(started, &schedule.name),
        deployment: config.deployment.clone(),
        schedule: schedule.name.clone(),
        started_at: manifest_time(started),
        finished_at: String::new(),
        kind: schedule.kind.clone(),
        format: schedule.format.clone(),
        status: Status::Ok,
        error: None,
        server_version: String::new(),
        pgspec_version: env!("CARGO_PKG_VERSION").to_owned(),
        globals: None,
        base_backup: None,
        databases: Vec::new(),
        files: Vec::new(),
        size_bytes: 0,
        verification: None,
    }
}

/// Records how the dumps ended and what they left: a failed dump makes the
/// backup `failed` with the whole error chain, and the files found are
/// kept either way, for diagnosis.
fn finish(
    manifest: &mut Manifest,
    dumped: anyhow::Result<()>,
    files: Vec<FileEntry>,
    finished: DateTime<Utc>,
) {
    if let Err(error) = dumped {
        manifest.status = Status::Failed;
        manifest.error = Some(format!("{error:#}"));
    }
    manifest.size_bytes = files.iter().map(|file| file.size_bytes).sum();
    manifest.files = files;
    manifest.finished_at = manifest_time(finished);
}

async fn write_manifest(directory: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(manifest).context("cannot encode the manifest")?;
    text.push('\n');
    let partial = directory.join(format!("{MANIFEST_FILE}.partial"));
    tokio::fs::write(&partial, text)
        .await
        .with_context(|| format!("cannot write `{}`", partial.display()))?;
    let path = directory.join(MANIFEST_FILE);
    tokio::fs::rename(&partial, &path)
        .await
        .with_context(|| format!("cannot write `{}`", path.display()))
}

/// File name of a database's dump: the name with anything but letters,
/// digits, `_`, `-` and `.` replaced, made unique by its position.
fn dump_name(database: &str, index: usize, format: &str) -> String {
    let plain: String = database
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || matches!(character, '_' | '-' | '.') {
                character
            } else {
                '_'
            }
        })
        .collect();
    let extension = match format {
        "plain" => "sql",
        "directory" => "dir",
        _ => "dump",
    };
    format!("{index:02}-{plain}.{extension}")
}

async fn dump(
    address: &ServerAddress,
    schedule: &BackupSchedule,
    directory: &Path,
    manifest: &mut Manifest,
) -> anyhow::Result<()> {
    let maintenance = address.connect("postgres").await?;
    manifest.server_version = maintenance
        .query_one("SHOW server_version", &[])
        .await
        .context("cannot read the server version")?
        .get(0);
    if schedule.kind == "physical" {
        manifest.base_backup =
            Some(super::physical::base_backup(address, &maintenance, directory).await?);
        return Ok(());
    }
    if matches!(schedule.kind.as_str(), "full" | "globals") {
        let file = "globals.sql".to_owned();
        run_tool(
            "pg_dumpall",
            &[
                "--globals-only".to_owned(),
                "--no-password".to_owned(),
                format!("--file={}", directory.join(&file).display()),
                format!("--dbname={}", address.conninfo("postgres")),
            ],
        )
        .await?;
        manifest.globals = Some(file);
    }
    if schedule.kind == "globals" {
        return Ok(());
    }
    let databases = if schedule.databases.is_empty() {
        maintenance
            .query(
                "SELECT datname FROM pg_database \
                 WHERE NOT datistemplate AND datallowconn AND datname <> 'postgres' \
                 ORDER BY datname",
                &[],
            )
            .await
            .context("cannot list databases")?
            .iter()
            .map(|row| row.get(0))
            .collect()
    } else {
        schedule.databases.clone()
    };
    for (index, database) in databases.iter().enumerate() {
        crate::output::status(&format!("backing up database `{database}`…"));
        let entry = dump_database(address, schedule, directory, database, index + 1)
            .await
            .with_context(|| format!("cannot back up database `{database}`"))?;
        manifest.databases.push(entry);
    }
    Ok(())
}

/// Dumps one database with `pg_dump --snapshot`, counting each table's
/// rows in the same snapshot first.
async fn dump_database(
    address: &ServerAddress,
    schedule: &BackupSchedule,
    directory: &Path,
    database: &str,
    index: usize,
) -> anyhow::Result<DatabaseEntry> {
    let client = address.connect(database).await?;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .context("cannot open the snapshot transaction")?;
    let snapshot: String = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .context("cannot export a snapshot")?
        .get(0);
    let tables = if schedule.kind == "schema" {
        Default::default()
    } else {
        count_rows(&client).await?
    };
    let dump = dump_name(database, index, &schedule.format);
    let arguments = pg_dump_arguments(
        schedule,
        &directory.join(&dump),
        &snapshot,
        &address.conninfo(database),
    );
    run_tool("pg_dump", &arguments).await?;
    client
        .batch_execute("COMMIT")
        .await
        .context("cannot close the snapshot transaction")?;
    Ok(DatabaseEntry {
        name: database.to_owned(),
        dump,
        tables,
    })
}

/// `pg_dump`'s arguments for one database of `schedule`, in the snapshot
/// the rows were counted in.
fn pg_dump_arguments(
    schedule: &BackupSchedule,
    file: &Path,
    snapshot: &str,
    conninfo: &str,
) -> Vec<String> {
    let mut arguments = vec![
        "--no-password".to_owned(),
        format!(
            "--format={}",
            match schedule.format.as_str() {
                "plain" => "p",
                "directory" => "d",
                _ => "c",
            }
        ),
        format!("--file={}", file.display()),
        format!("--snapshot={snapshot}"),
    ];
    match schedule.kind.as_str() {
        "data" => arguments.push("--data-only".to_owned()),
        "schema" => arguments.push("--schema-only".to_owned()),
        _ => {}
    }
    arguments.push(format!("--dbname={conninfo}"));
    arguments
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::agent::fixtures::{at, config, file};

    fn schedule(kind: &str, format: &str) -> BackupSchedule {
        BackupSchedule {
            name: "nightly".to_owned(),
            kind: kind.to_owned(),
            format: format.to_owned(),
            ..BackupSchedule::default()
        }
    }

    #[test]
    fn a_backup_is_named_by_its_start_second_and_schedule() {
        let schedule = schedule("full", "custom");
        let manifest = start_manifest(&config(), &schedule, at("2026-01-02T03:04:05.678+00:00"));
        assert_eq!(manifest.id, "20260102T030405Z-nightly");
        assert_eq!(manifest.started_at, "2026-01-02T03:04:05Z");
        assert_eq!(manifest.deployment, "ledger");
        assert_eq!(
            (manifest.kind.as_str(), manifest.format.as_str()),
            ("full", "custom")
        );
        assert_eq!(manifest.status, Status::Ok);
        assert_eq!(manifest.pgspec_version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn a_failed_dump_is_recorded_with_its_whole_error_and_its_files() {
        let schedule = schedule("full", "custom");
        let mut manifest = start_manifest(&config(), &schedule, at("2026-01-02T03:04:05Z"));
        let error = anyhow::anyhow!("`pg_dump` failed (exit status: 1): permission denied")
            .context("cannot back up database `app`");
        let files = vec![file("01-app.dump", 3, ""), file("globals.sql", 4, "")];
        finish(
            &mut manifest,
            Err(error),
            files,
            at("2026-01-02T03:05:00.9Z"),
        );
        assert_eq!(manifest.status, Status::Failed);
        assert_eq!(
            manifest.error.as_deref(),
            Some(
                "cannot back up database `app`: `pg_dump` failed (exit status: 1): \
                 permission denied"
            )
        );
        assert_eq!(manifest.files.len(), 2);
        assert_eq!(manifest.size_bytes, 7);
        assert_eq!(manifest.finished_at, "2026-01-02T03:05:00Z");
    }

    #[test]
    fn a_dump_that_worked_stays_ok() {
        let schedule = schedule("full", "custom");
        let mut manifest = start_manifest(&config(), &schedule, at("2026-01-02T03:04:05Z"));
        finish(
            &mut manifest,
            Ok(()),
            vec![file("01-app.dump", 5, "")],
            Utc::now(),
        );
        assert_eq!((manifest.status, manifest.error), (Status::Ok, None));
        assert_eq!(manifest.size_bytes, 5);
    }

    #[test]
    fn dump_names_are_plain_unique_and_say_their_format() {
        assert_eq!(dump_name("app", 1, "custom"), "01-app.dump");
        assert_eq!(dump_name("my db/ü", 12, "plain"), "12-my_db__.sql");
        assert_eq!(dump_name("a.b-c_d", 3, "directory"), "03-a.b-c_d.dir");
        // Names that differ only in replaced characters still differ.
        assert_ne!(dump_name("a b", 1, "custom"), dump_name("a/b", 2, "custom"));
    }

    #[test]
    fn pg_dump_dumps_the_kind_and_format_in_the_snapshot() {
        let arguments = |kind: &str, format: &str| {
            pg_dump_arguments(
                &schedule(kind, format),
                Path::new("/backups/x/01-app.dump"),
                "00000003-1",
                "dbname='app'",
            )
        };
        assert_eq!(
            arguments("full", "custom"),
            [
                "--no-password",
                "--format=c",
                "--file=/backups/x/01-app.dump",
                "--snapshot=00000003-1",
                "--dbname=dbname='app'",
            ]
        );
        let data = arguments("data", "plain");
        assert!(data.contains(&"--format=p".to_owned()), "{data:?}");
        assert!(data.contains(&"--data-only".to_owned()), "{data:?}");
        let schema = arguments("schema", "directory");
        assert!(schema.contains(&"--format=d".to_owned()), "{schema:?}");
        assert!(schema.contains(&"--schema-only".to_owned()), "{schema:?}");
        assert_eq!(
            schema.last().map(String::as_str),
            Some("--dbname=dbname='app'")
        );
    }

    /// `backup run` with a schedule the container does not have says which
    /// it has, before it touches anything.
    #[tokio::test]
    async fn an_unknown_schedule_names_the_ones_there_are() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let error = once(&config(), Some("weekly"), root.path())
            .await
            .err()
            .map(|error| error.to_string());
        assert_eq!(
            error.as_deref(),
            Some("no backup schedule `weekly`; the backup container has `nightly`")
        );
        assert!(
            std::fs::read_dir(root.path())
                .expect("read the destination")
                .next()
                .is_none()
        );
    }
}
