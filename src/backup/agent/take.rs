//! Taking a backup: a directory named by the start time and schedule,
//! readable by root only, the dumps (`pg_dumpall --globals-only`, then
//! `pg_dump --snapshot` per database after counting its rows in the same
//! snapshot), and the manifest, written last through a rename. Backups and
//! pruning hold the destination's lock, so they never overlap.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;

use super::files::measure;
use super::retention::prune;
use super::server::{ServerAddress, count_rows, run_tool};
use crate::backup::AgentConfig;
use crate::backup::manifest::{
    self, DatabaseEntry, MANIFEST_FILE, MANIFEST_VERSION, Manifest, Status,
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
async fn lock_destination(root: &Path) -> anyhow::Result<std::fs::File> {
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
    let mut manifest = Manifest {
        format_version: MANIFEST_VERSION,
        id: manifest::backup_id(started, &schedule.name),
        deployment: config.deployment.clone(),
        schedule: schedule.name.clone(),
        started_at: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        finished_at: String::new(),
        kind: schedule.kind.clone(),
        format: schedule.format.clone(),
        status: Status::Ok,
        error: None,
        server_version: String::new(),
        pgspec_version: env!("CARGO_PKG_VERSION").to_owned(),
        globals: None,
        databases: Vec::new(),
        files: Vec::new(),
        size_bytes: 0,
    };
    if let Err(error) = dump(&address, schedule, &directory, &mut manifest).await {
        manifest.status = Status::Failed;
        manifest.error = Some(format!("{error:#}"));
    }
    let walk_directory = directory.clone();
    manifest.files = tokio::task::spawn_blocking(move || measure(&walk_directory))
        .await
        .context("the checksum task failed")??;
    manifest.size_bytes = manifest.files.iter().map(|file| file.size_bytes).sum();
    manifest.finished_at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    write_manifest(&directory, &manifest).await?;
    Ok(manifest)
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
        format!("--file={}", directory.join(&dump).display()),
        format!("--snapshot={snapshot}"),
    ];
    match schedule.kind.as_str() {
        "data" => arguments.push("--data-only".to_owned()),
        "schema" => arguments.push("--schema-only".to_owned()),
        _ => {}
    }
    arguments.push(format!("--dbname={}", address.conninfo(database)));
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
