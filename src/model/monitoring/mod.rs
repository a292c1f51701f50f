//! What `pgspec status` reports: the facts read from a live deployment, the
//! thresholds they are judged against (pgspec's defaults, or the spec's
//! `monitoring.thresholds`) and the green/yellow/red lines that result.
//!
//! Pure: `live` reads the facts, `evaluate` turns them into lines, the
//! command prints them.

use std::collections::BTreeMap;

mod archive;
pub mod exporter;
pub mod rules;

pub use archive::ArchiveFacts;

use serde::{Deserialize, Serialize};

/// Version of the `pgspec status --json` document.
pub const STATUS_FORMAT_VERSION: u32 = 1;

/// The spec's `monitoring` section, lowered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Monitoring {
    pub thresholds: Thresholds,
}

/// Every threshold `status` applies.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Connections in use against `max_connections` and a role's
    /// connection limit.
    pub connections: Threshold,
    /// Free space left on the data directory's file system.
    #[serde(default)]
    pub disk_free: FreeThreshold,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            // The crawl-ledger runbook alerts at 70 % and pages at 90 %.
            connections: Threshold {
                warn_percent: 70.0,
                critical_percent: 90.0,
            },
            disk_free: FreeThreshold::default(),
        }
    }
}

/// A share of a file system still free: yellow below `warn_percent`, red
/// below `critical_percent`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FreeThreshold {
    pub warn_percent: f64,
    pub critical_percent: f64,
}

impl Default for FreeThreshold {
    /// Yellow under 20 % free (the crawl-ledger runbook warns at 80 % used),
    /// red under 10 % (the feedback-engine runbook alerts there): red while
    /// a tenth is left still leaves time to grow the volume before
    /// PostgreSQL stops writing.
    fn default() -> Self {
        FreeThreshold {
            warn_percent: 20.0,
            critical_percent: 10.0,
        }
    }
}

impl FreeThreshold {
    /// The level of `available` out of `total`.
    pub fn level(&self, available: u64, total: u64) -> Level {
        let percent = free_percent(available, total);
        if percent < self.critical_percent {
            Level::Red
        } else if percent < self.warn_percent {
            Level::Yellow
        } else {
            Level::Green
        }
    }
}

/// `available` as a percentage of `total`; none left when `total` is 0.
pub fn free_percent(available: u64, total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    available as f64 * 100.0 / total as f64
}

/// A share of a limit: yellow from `warn_percent`, red from
/// `critical_percent` (both inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    pub warn_percent: f64,
    pub critical_percent: f64,
}

impl Threshold {
    /// The level of `used` out of `limit`; green when there is no limit.
    pub fn level(&self, used: i64, limit: i64) -> Level {
        if limit <= 0 {
            return if limit == 0 && used > 0 {
                Level::Red
            } else {
                Level::Green
            };
        }
        let percent = used as f64 * 100.0 / limit as f64;
        if percent >= self.critical_percent {
            Level::Red
        } else if percent >= self.warn_percent {
            Level::Yellow
        } else {
            Level::Green
        }
    }
}

/// Parses a percentage as the spec writes it: `70%`, `12.5 %` or `70`.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%').trim();
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage"))?;
    if !(0.0..=100.0).contains(&value) || !value.is_finite() {
        return Err(format!("`{text}` is not between 0% and 100%"));
    }
    Ok(value)
}

/// How a line stands. Ordered: the worst line is the greatest.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    #[default]
    Green,
    Yellow,
    Red,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Green => "green",
            Level::Yellow => "yellow",
            Level::Red => "red",
        }
    }
}

/// A transaction open this long is yellow (it holds back vacuum).
pub const TRANSACTION_WARN_SECONDS: f64 = 300.0;
/// A transaction open this long is red.
pub const TRANSACTION_CRITICAL_SECONDS: f64 = 3600.0;
/// A query running this long is yellow.
pub const QUERY_WARN_SECONDS: f64 = 60.0;
/// A query running this long is red.
pub const QUERY_CRITICAL_SECONDS: f64 = 900.0;

/// One container of the deployment as the engine reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerFacts {
    /// `server`, `pooler`, `backup`, `postgres exporter` or
    /// `pgbouncer exporter`.
    pub role: String,
    pub name: String,
    /// The engine's state (`running`, `exited`, ...), `missing` when there
    /// is no such container.
    pub state: String,
    /// The health check's status, when the container has one.
    pub health: Option<String>,
    pub restarts: i64,
    pub image: String,
}

/// Connections of one role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoleConnections {
    pub role: String,
    pub connections: i64,
    /// `rolconnlimit`, when set.
    pub limit: Option<i64>,
}

/// What the server reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerFacts {
    pub version: String,
    pub uptime_seconds: i64,
    pub max_connections: i64,
    /// Client connections by `pg_stat_activity.state` (pgspec's own
    /// connection not counted).
    pub connections_by_state: BTreeMap<String, i64>,
    /// Roles with connections or a connection limit, by name.
    pub roles: Vec<RoleConnections>,
    pub longest_query_seconds: Option<f64>,
    pub longest_transaction_seconds: Option<f64>,
    /// Deadlocks since the statistics were reset, all databases.
    pub deadlocks: i64,
    /// Size of each database, in bytes.
    pub database_sizes: BTreeMap<String, i64>,
}

impl ServerFacts {
    pub fn connections(&self) -> i64 {
        self.connections_by_state.values().sum()
    }
}

/// One PgBouncer pool (a database and user pair), from `SHOW POOLS`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolFacts {
    pub database: String,
    pub user: String,
    /// Clients linked to a server connection or idle (`cl_active`).
    pub clients: i64,
    /// Clients waiting for a server connection (`cl_waiting`).
    pub waiting: i64,
    /// Server connections of every kind (`sv_*`).
    pub servers: i64,
    /// The database's `pool_size` (`SHOW DATABASES`), when known.
    pub pool_size: Option<i64>,
}

/// What PgBouncer's admin console reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolerFacts {
    /// Client connections in use (`SHOW LISTS`, `used_clients`).
    pub clients: i64,
    /// `max_client_conn` (`SHOW CONFIG`).
    pub max_client_conn: i64,
    /// Pools of real databases; the admin console's own is left out.
    pub pools: Vec<PoolFacts>,
}

/// One backup schedule and its newest good backup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackupFacts {
    pub schedule: String,
    pub cron: String,
    /// The longest wait between two runs of the schedule, in seconds.
    pub period_seconds: Option<i64>,
    /// The newest backup of the schedule whose dumps all finished.
    pub last_good: Option<String>,
    /// Its age, in seconds.
    pub last_good_age_seconds: Option<i64>,
    /// The newest `backup verify` of a backup of this schedule.
    #[serde(default)]
    pub last_verification: Option<VerificationFacts>,
}

/// A `backup verify` as the backup's manifest records it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerificationFacts {
    /// The backup verified.
    pub backup: String,
    pub ok: bool,
    /// Checks that failed, of `checks`.
    pub failed: u64,
    pub checks: u64,
    /// How long ago it ran, in seconds.
    pub age_seconds: Option<i64>,
}

/// The file system of the server's data directory, as `df -P` inside the
/// server container reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiskFacts {
    /// The data directory (`PGDATA`).
    pub path: String,
    /// Where its file system is mounted in the container.
    pub mount: String,
    pub size_bytes: u64,
    pub used_bytes: u64,
    /// What PostgreSQL can still write (blocks reserved for root left out).
    pub available_bytes: u64,
}

impl DiskFacts {
    /// The space PostgreSQL can use: used plus available, as `df` counts
    /// its `Capacity`.
    pub fn usable_bytes(&self) -> u64 {
        self.used_bytes.saturating_add(self.available_bytes)
    }

    /// Reads `df -P -k` output: the line after the header, counted from
    /// its `Capacity` column so that a device name with spaces still parses.
    pub fn from_df(path: &str, output: &str) -> Option<DiskFacts> {
        let line = output
            .lines()
            .skip(1)
            .find(|line| !line.trim().is_empty())?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let capacity = fields
            .iter()
            .enumerate()
            .skip(4)
            .find(|(_, field)| field.ends_with('%'))?
            .0;
        let kib = |index: usize| -> Option<u64> {
            fields.get(index)?.parse::<u64>().ok()?.checked_mul(1024)
        };
        Some(DiskFacts {
            path: path.to_owned(),
            mount: fields[capacity + 1..].join(" "),
            size_bytes: kib(capacity - 3)?,
            used_bytes: kib(capacity - 2)?,
            available_bytes: kib(capacity - 1)?,
        })
    }
}

/// Everything `status` read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusFacts {
    pub containers: Vec<ContainerFacts>,
    pub server: Option<ServerFacts>,
    /// Why the server could not be read, when it could not.
    pub server_error: Option<String>,
    /// The data directory's file system, when the server container runs.
    #[serde(default)]
    pub disk: Option<DiskFacts>,
    /// Why it could not be read, when it could not.
    #[serde(default)]
    pub disk_error: Option<String>,
    /// The pooler's admin console, when the spec has a pooler.
    pub pooler: Option<PoolerFacts>,
    /// Why the admin console could not be read, when it could not.
    pub pooler_error: Option<String>,
    /// Each schedule of the spec, when it has backups.
    #[serde(default)]
    pub backups: Vec<BackupFacts>,
    /// Why the backup agent could not list backups, when it could not.
    #[serde(default)]
    pub backups_error: Option<String>,
    /// The server's TLS certificate, when the spec has `postgres.tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateFacts>,
    /// The WAL archive, when the spec has a `physical` schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveFacts>,
}

/// The server certificate in the data directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CertificateFacts {
    pub subject: String,
    /// `SHA256:` and the first 16 hex digits.
    pub fingerprint: String,
    /// The last day it is valid, `2027-01-31`.
    pub expires: String,
    /// Whole days until it expires, negative once it has.
    pub days_left: i64,
}

/// One judged line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusLine {
    /// `container`, `server`, `connections`, `role`, `database`.
    pub section: String,
    /// What the line is about: a container, a role, a database, a metric.
    pub item: String,
    pub level: Level,
    /// The value as a person reads it.
    pub text: String,
}

/// The `status` document: the lines, the worst level, and the facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub format_version: u32,
    pub deployment: String,
    pub level: Level,
    pub thresholds: Thresholds,
    pub lines: Vec<StatusLine>,
    pub facts: StatusFacts,
}

fn line(section: &str, item: &str, level: Level, text: String) -> StatusLine {
    StatusLine {
        section: section.to_owned(),
        item: item.to_owned(),
        level,
        text,
    }
}

/// Judges the facts against the thresholds.
pub fn evaluate(deployment: &str, facts: StatusFacts, thresholds: &Thresholds) -> StatusReport {
    let mut lines = Vec::new();
    for container in &facts.containers {
        lines.push(container_line(container));
    }
    if let Some(error) = &facts.server_error {
        lines.push(line("server", "reachable", Level::Red, error.clone()));
    }
    if let Some(server) = &facts.server {
        server_lines(server, thresholds, &mut lines);
    }
    if let Some(error) = &facts.disk_error {
        lines.push(line("disk", "data directory", Level::Red, error.clone()));
    }
    if let Some(disk) = &facts.disk {
        lines.push(disk_line(disk, &thresholds.disk_free));
    }
    if let Some(error) = &facts.pooler_error {
        lines.push(line("pooler", "admin console", Level::Red, error.clone()));
    }
    if let Some(pooler) = &facts.pooler {
        pooler_lines(pooler, thresholds, &mut lines);
    }
    if let Some(error) = &facts.backups_error {
        lines.push(line("backup", "list", Level::Red, error.clone()));
    }
    for backup in &facts.backups {
        lines.push(backup_line(backup));
        if backup.last_good.is_some() || backup.last_verification.is_some() {
            lines.push(verification_line(backup));
        }
    }
    if let Some(archive) = &facts.archive {
        lines.push(archive::archive_line(archive));
    }
    if let Some(certificate) = &facts.certificate {
        lines.push(certificate_line(certificate));
    }
    let level = lines
        .iter()
        .map(|line| line.level)
        .max()
        .unwrap_or_default();
    StatusReport {
        format_version: STATUS_FORMAT_VERSION,
        deployment: deployment.to_owned(),
        level,
        thresholds: *thresholds,
        lines,
        facts,
    }
}

/// Red once expired, yellow within [`crate::model::tls::EXPIRY_WARNING_DAYS`].
fn certificate_line(certificate: &CertificateFacts) -> StatusLine {
    let days = certificate.days_left;
    let (level, when) = if days < 0 {
        (Level::Red, format!("expired on {}", certificate.expires))
    } else if days < crate::model::tls::EXPIRY_WARNING_DAYS {
        (
            Level::Yellow,
            format!("expires on {} (in {days} days)", certificate.expires),
        )
    } else {
        (
            Level::Green,
            format!("expires on {} (in {days} days)", certificate.expires),
        )
    };
    line(
        "tls",
        "certificate",
        level,
        format!(
            "{when}, {} {}",
            certificate.subject, certificate.fingerprint
        ),
    )
}

fn container_line(container: &ContainerFacts) -> StatusLine {
    let health = container.health.as_deref();
    let level = match (container.state.as_str(), health) {
        ("running", Some("unhealthy")) => Level::Red,
        ("running", Some("starting")) => Level::Yellow,
        ("running", _) if container.restarts > 0 => Level::Yellow,
        ("running", _) => Level::Green,
        _ => Level::Red,
    };
    let mut text = container.state.clone();
    if let Some(health) = health {
        text.push_str(&format!(" ({health})"));
    }
    if container.state != "missing" {
        text.push_str(&format!(
            ", {} restart{}, image {}",
            container.restarts,
            if container.restarts == 1 { "" } else { "s" },
            container.image
        ));
    }
    line(
        "container",
        &format!("{} {}", container.role, container.name),
        level,
        text,
    )
}

fn server_lines(server: &ServerFacts, thresholds: &Thresholds, lines: &mut Vec<StatusLine>) {
    lines.push(line(
        "server",
        "version",
        Level::Green,
        format!(
            "PostgreSQL {}, up {}",
            server.version,
            duration_text(server.uptime_seconds as f64)
        ),
    ));
    let used = server.connections();
    let by_state = server
        .connections_by_state
        .iter()
        .map(|(state, count)| format!("{count} {state}"))
        .collect::<Vec<_>>()
        .join(", ");
    lines.push(line(
        "connections",
        "max_connections",
        thresholds.connections.level(used, server.max_connections),
        format!(
            "{used} of {} ({}){}",
            server.max_connections,
            percent_text(used, server.max_connections),
            if by_state.is_empty() {
                String::new()
            } else {
                format!(": {by_state}")
            }
        ),
    ));
    for role in &server.roles {
        if let Some(limit) = role.limit {
            lines.push(line(
                "role",
                &role.role,
                thresholds.connections.level(role.connections, limit),
                format!(
                    "{} of {limit} connections ({})",
                    role.connections,
                    percent_text(role.connections, limit)
                ),
            ));
        }
    }
    lines.push(age_line(
        "longest query",
        server.longest_query_seconds,
        QUERY_WARN_SECONDS,
        QUERY_CRITICAL_SECONDS,
    ));
    lines.push(age_line(
        "longest transaction",
        server.longest_transaction_seconds,
        TRANSACTION_WARN_SECONDS,
        TRANSACTION_CRITICAL_SECONDS,
    ));
    lines.push(line(
        "server",
        "deadlocks",
        if server.deadlocks > 0 {
            Level::Yellow
        } else {
            Level::Green
        },
        format!("{} since the statistics were reset", server.deadlocks),
    ));
    for (database, bytes) in &server.database_sizes {
        lines.push(line(
            "database",
            database,
            Level::Green,
            crate::model::notation::human_size(u64::try_from(*bytes).unwrap_or(0)),
        ));
    }
}

fn pooler_lines(pooler: &PoolerFacts, thresholds: &Thresholds, lines: &mut Vec<StatusLine>) {
    lines.push(line(
        "pooler",
        "clients",
        thresholds
            .connections
            .level(pooler.clients, pooler.max_client_conn),
        format!(
            "{} of max_client_conn {} ({})",
            pooler.clients,
            pooler.max_client_conn,
            percent_text(pooler.clients, pooler.max_client_conn)
        ),
    ));
    for pool in &pooler.pools {
        let limit = pool.pool_size.unwrap_or(0);
        let mut level = match pool.pool_size {
            Some(size) => thresholds.connections.level(pool.servers, size),
            None => Level::Green,
        };
        if pool.waiting > 0 {
            level = level.max(Level::Yellow);
        }
        lines.push(line(
            "pool",
            &format!("{}/{}", pool.database, pool.user),
            level,
            format!(
                "{} client{} ({} waiting), {} server connection{} of pool_size {}",
                pool.clients,
                if pool.clients == 1 { "" } else { "s" },
                pool.waiting,
                pool.servers,
                if pool.servers == 1 { "" } else { "s" },
                if pool.pool_size.is_some() {
                    limit.to_string()
                } else {
                    "unknown".to_owned()
                }
            ),
        ));
    }
}

/// The slack a backup gets past its schedule's period: a tenth of the
/// period, at least [`BACKUP_GRACE_MIN_SECONDS`], for the dump's own run time.
pub fn backup_grace(period_seconds: i64) -> i64 {
    (period_seconds / 10).max(BACKUP_GRACE_MIN_SECONDS)
}

/// The least grace a backup gets past its period.
pub const BACKUP_GRACE_MIN_SECONDS: i64 = 300;

/// Yellow past one period plus grace, red past two; no good backup yet is
/// yellow (a new schedule has not run).
fn backup_line(backup: &BackupFacts) -> StatusLine {
    let item = format!("{} `{}`", backup.schedule, backup.cron);
    let (Some(age), Some(id)) = (backup.last_good_age_seconds, &backup.last_good) else {
        return line(
            "backup",
            &item,
            Level::Yellow,
            "no good backup yet".to_owned(),
        );
    };
    let level = match backup.period_seconds {
        Some(period) if age > 2 * period + backup_grace(period) => Level::Red,
        Some(period) if age > period + backup_grace(period) => Level::Yellow,
        _ => Level::Green,
    };
    let period = backup
        .period_seconds
        .map(|period| format!(", every {}", duration_text(period as f64)))
        .unwrap_or_default();
    line(
        "backup",
        &item,
        level,
        format!("last good {} ago ({id}){period}", duration_text(age as f64)),
    )
}

/// The data directory's file system against the free-space threshold.
fn disk_line(disk: &DiskFacts, threshold: &FreeThreshold) -> StatusLine {
    let usable = disk.usable_bytes();
    line(
        "disk",
        "data directory",
        threshold.level(disk.available_bytes, usable),
        format!(
            "{} free of {} ({:.0} %) at {}{}",
            crate::model::notation::human_size(disk.available_bytes),
            crate::model::notation::human_size(usable),
            free_percent(disk.available_bytes, usable),
            disk.path,
            if disk.mount == disk.path || disk.mount.is_empty() {
                String::new()
            } else {
                format!(" (file system mounted at {})", disk.mount)
            }
        ),
    )
}

/// The newest verification of a schedule's backups: red when it failed,
/// yellow when none was ever verified (a backup nobody restored is a hope,
/// not a backup), green otherwise.
fn verification_line(backup: &BackupFacts) -> StatusLine {
    let item = format!("{} verified", backup.schedule);
    let Some(verification) = &backup.last_verification else {
        return line(
            "backup",
            &item,
            Level::Yellow,
            "never verified; `pgspec backup verify` restores the newest good backup".to_owned(),
        );
    };
    let age = verification
        .age_seconds
        .map(|age| format!(" {} ago", duration_text(age as f64)))
        .unwrap_or_default();
    if verification.ok {
        line(
            "backup",
            &item,
            Level::Green,
            format!(
                "passed{age} ({}, {} checks)",
                verification.backup, verification.checks
            ),
        )
    } else {
        line(
            "backup",
            &item,
            Level::Red,
            format!(
                "FAILED{age} ({}, {} of {} checks failed)",
                verification.backup, verification.failed, verification.checks
            ),
        )
    }
}

fn age_line(item: &str, seconds: Option<f64>, warn: f64, critical: f64) -> StatusLine {
    match seconds {
        None => line("server", item, Level::Green, "none running".to_owned()),
        Some(seconds) => {
            let level = if seconds >= critical {
                Level::Red
            } else if seconds >= warn {
                Level::Yellow
            } else {
                Level::Green
            };
            line("server", item, level, duration_text(seconds))
        }
    }
}

fn percent_text(used: i64, limit: i64) -> String {
    if limit <= 0 {
        return "no limit".to_owned();
    }
    format!("{:.0} %", used as f64 * 100.0 / limit as f64)
}

/// `3 d 4 h`, `5 h 12 min`, `4 min 3 s`, `12 s`.
pub fn duration_text(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as i64;
    let (days, hours, minutes, secs) = (
        total / 86_400,
        total % 86_400 / 3600,
        total % 3600 / 60,
        total % 60,
    );
    if days > 0 {
        format!("{days} d {hours} h")
    } else if hours > 0 {
        format!("{hours} h {minutes} min")
    } else if minutes > 0 {
        format!("{minutes} min {secs} s")
    } else {
        format!("{secs} s")
    }
}

#[cfg(test)]
mod tests;
