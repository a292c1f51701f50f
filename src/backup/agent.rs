//! The backup agent: what runs inside the backup container (and inside a
//! `verify` scratch container), as the hidden `pgspec backup agent`.
//!
//! It schedules, dumps with the image's own `pg_dump`/`pg_dumpall`, writes
//! manifests, removes what `prune` selects, lists, and checks a restore. It
//! talks to Docker not at all and to PostgreSQL only through the server
//! address it is given; it writes only below the destination it is given.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, NoTls};

use super::manifest::{
    self, DatabaseEntry, Entry, FileEntry, MANIFEST_FILE, MANIFEST_VERSION, Manifest, Status,
};
use super::prune::{self, Retention, Scope};
use super::{AgentConfig, PGPASS_PATH};
use crate::model::BackupSchedule;
use crate::sql::{quote_ident, quote_literal};

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
    fn conninfo(&self, database: &str) -> String {
        let quote = |value: &str| format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
        format!(
            "host={} port={} user={} dbname={}",
            quote(&self.host),
            self.port,
            quote(&self.user),
            quote(database)
        )
    }

    async fn connect(&self, database: &str) -> anyhow::Result<Client> {
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
        let (client, connection) = config.connect(NoTls).await.with_context(|| {
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
    super::password_from_pgpass(&text)
}

fn cron_of(schedule: &BackupSchedule) -> anyhow::Result<Cron> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(&schedule.cron)
        .with_context(|| {
            format!(
                "schedule `{}` has an invalid cron expression `{}`",
                schedule.name, schedule.cron
            )
        })
}

/// The longest the scheduler sleeps before it looks at the clock again.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Runs the schedules until SIGTERM or SIGINT: sleeps until the next due
/// time, takes the due backups one after another, prunes, repeats. A
/// backup that overruns the next time skips it rather than queueing.
pub async fn schedule(config: &AgentConfig, root: &Path) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let crons = config
        .schedules
        .values()
        .map(|schedule| Ok((schedule, cron_of(schedule)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    crate::output::status(&format!(
        "pgspec backup agent {}: {} schedule(s) for `{}`: {}",
        env!("CARGO_PKG_VERSION"),
        crons.len(),
        config.deployment,
        crons
            .iter()
            .map(|(schedule, _)| format!("{} `{}`", schedule.name, schedule.cron))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut after = Utc::now();
    loop {
        let mut due: Vec<(&BackupSchedule, DateTime<Utc>)> = Vec::new();
        for (schedule, cron) in &crons {
            match cron.find_next_occurrence(&after, false) {
                Ok(next) => due.push((schedule, next)),
                Err(error) => crate::output::status(&format!(
                    "schedule `{}`: no next run time: {error}",
                    schedule.name
                )),
            }
        }
        let Some(next) = due.iter().map(|(_, time)| *time).min() else {
            bail!("no schedule has a next run time");
        };
        // Sleep in short steps against the wall clock, so a suspended host
        // or a clock step delays a backup by at most one step.
        while let Ok(wait) = (next - Utc::now()).to_std() {
            if wait.is_zero() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait.min(MAX_SLEEP)) => {}
                _ = terminate.recv() => return Ok(()),
                _ = interrupt.recv() => return Ok(()),
            }
        }
        for (schedule, time) in &due {
            if *time != next {
                continue;
            }
            // A stop during a backup ends it at once (its dump tools are
            // killed with it), so `docker stop` never waits out its
            // timeout. The directory has no manifest yet: retention never
            // removes it, and `backup list` shows it as incomplete.
            let result = tokio::select! {
                result = take_and_prune(config, schedule, root) => result,
                _ = terminate.recv() => return Ok(()),
                _ = interrupt.recv() => return Ok(()),
            };
            if let Err(error) = result {
                crate::output::status(&format!("schedule `{}`: {error:#}", schedule.name));
            }
        }
        // Never the same minute twice, even when the clock lags the timer.
        after = next.max(Utc::now());
    }
}

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

async fn take_and_prune(
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
        super::human_size(manifest.size_bytes)
    ));
    let pruned = prune(config, schedule, root, &manifest.id).await?;
    for id in pruned {
        crate::output::status(&format!("backup `{id}`: removed by retention"));
    }
    Ok(manifest)
}

/// Removes what retention selects among this deployment's backups of this
/// schedule; `just_taken` is the backup this run took. Which directories
/// may go is decided by `prune::select_pruned` alone, from the manifests.
async fn prune(
    config: &AgentConfig,
    schedule: &BackupSchedule,
    root: &Path,
    just_taken: &str,
) -> anyhow::Result<Vec<String>> {
    let entries: Vec<Entry> =
        manifest::read_all(root).with_context(|| format!("cannot read `{}`", root.display()))?;
    let scope = Scope {
        deployment: &config.deployment,
        schedule: &schedule.name,
        just_taken: Some(just_taken),
    };
    let retention = Retention {
        days: schedule.retention_days,
        max_count: schedule.max_count,
        min_count: schedule.min_count,
    };
    let pruned = prune::select_pruned(&entries, &scope, retention, Utc::now());
    for id in &pruned {
        let path = root.join(id);
        tokio::fs::remove_dir_all(&path)
            .await
            .with_context(|| format!("cannot remove `{}`", path.display()))?;
    }
    Ok(pruned)
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
async fn count_rows(client: &Client) -> anyhow::Result<std::collections::BTreeMap<String, i64>> {
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
async fn run_tool(program: &str, arguments: &[String]) -> anyhow::Result<String> {
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

/// Every file below a backup directory but the manifest, with size and
/// SHA-256, sorted by path.
fn measure(directory: &Path) -> anyhow::Result<Vec<FileEntry>> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    while let Some(current) = pending.pop() {
        for item in std::fs::read_dir(&current)
            .with_context(|| format!("cannot read `{}`", current.display()))?
        {
            let item = item.with_context(|| format!("cannot read `{}`", current.display()))?;
            let path = item.path();
            if item.file_type()?.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(directory)
                .unwrap_or(&path)
                .display()
                .to_string();
            if relative.starts_with(MANIFEST_FILE) {
                continue;
            }
            let (size_bytes, sha256) = checksum(&path)?;
            files.push(FileEntry {
                path: relative,
                size_bytes,
                sha256,
            });
        }
    }
    files.sort_by(|left, right| left.path.cmp(&right.path));
    Ok(files)
}

fn checksum(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    let mut size = 0;
    loop {
        let read = std::io::Read::read(&mut file, &mut buffer)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// The backups of a deployment in a destination, newest first, plus
/// incomplete ones whose deployment cannot be told.
pub fn list(root: &Path, deployment: &str) -> anyhow::Result<Vec<Entry>> {
    Ok(manifest::read_all(root)
        .with_context(|| format!("cannot read `{}`", root.display()))?
        .into_iter()
        .filter(|entry| {
            entry
                .manifest
                .as_ref()
                .is_none_or(|manifest| manifest.deployment == deployment)
        })
        .collect())
}

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
                super::human_size(manifest.size_bytes)
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

/// The destination directory inside a container.
pub fn root() -> PathBuf {
    PathBuf::from(super::BACKUP_MOUNT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config() -> AgentConfig {
        let schedule = BackupSchedule {
            name: "nightly".to_owned(),
            max_count: Some(1),
            ..BackupSchedule::default()
        };
        AgentConfig {
            deployment: "ledger".to_owned(),
            server: "ledger-postgres".to_owned(),
            port: 5432,
            superuser: "postgres".to_owned(),
            schedules: BTreeMap::from([("nightly".to_owned(), schedule)]),
        }
    }

    /// A backup directory with a manifest for `deployment`.
    fn write_backup(root: &Path, id: &str, deployment: &str, status: Status) {
        let directory = root.join(id);
        std::fs::create_dir(&directory).expect("create a backup directory");
        std::fs::write(directory.join("01-ledger.dump"), "dump").expect("write a dump");
        let started = chrono::NaiveDateTime::parse_from_str(&id[..16], "%Y%m%dT%H%M%SZ")
            .expect("an id that starts with a time")
            .and_utc();
        let manifest = manifest::sample(started, deployment, status);
        assert_eq!(manifest.id, id, "a nightly backup id");
        std::fs::write(
            directory.join(MANIFEST_FILE),
            serde_json::to_vec(&manifest).expect("encode a manifest"),
        )
        .expect("write a manifest");
    }

    fn names(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root)
            .expect("read the destination")
            .map(|item| {
                item.expect("a directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    /// The agent removes from disk exactly what `prune::select_pruned`
    /// selects: with `max_count: 1`, the older good backup, and nothing of
    /// another deployment, without a manifest, or not a backup at all.
    #[tokio::test]
    async fn prune_removes_only_the_selected_directories() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let root = root.path();
        let config = config();
        write_backup(root, "20260101T000000Z-nightly", "ledger", Status::Ok);
        write_backup(root, "20260102T000000Z-nightly", "ledger", Status::Ok);
        write_backup(root, "20260103T000000Z-nightly", "ledger", Status::Failed);
        write_backup(root, "20250101T000000Z-nightly", "another", Status::Ok);
        std::fs::create_dir(root.join("20240101T000000Z-nightly")).expect("create a directory");
        std::fs::create_dir(root.join("lost+found")).expect("create a directory");
        let pruned = prune(
            &config,
            &config.schedules["nightly"],
            root,
            "20260103T000000Z-nightly",
        )
        .await
        .expect("prune");
        assert_eq!(pruned, ["20260101T000000Z-nightly"]);
        assert_eq!(
            names(root),
            [
                "20240101T000000Z-nightly",
                "20250101T000000Z-nightly",
                "20260102T000000Z-nightly",
                "20260103T000000Z-nightly",
                "lost+found",
            ]
        );
    }
}
