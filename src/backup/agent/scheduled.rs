//! Scheduled restore tests (`verify: "<cron>"` on a schedule): the agent
//! restores the newest successful backup of the schedule into a scratch
//! data directory inside the backup container, served by a temporary
//! server of the image's own binaries on a Unix socket only, checks it as
//! `backup verify` does, and records the result in the backup's manifest.
//! A dump is restored into a fresh `initdb` cluster; a base backup is
//! prepared for recovery from the archive and must open read-write.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, bail};
use chrono::Utc;

use super::server::ServerAddress;
use super::verify::{Report, check, check_files};
use super::{list, record_verification};
use crate::backup::AgentConfig;
use crate::backup::manifest::{Status, Verification};
use crate::model::BackupSchedule;

/// The schedules that have a restore test, with the test's cron expression
/// as their `cron`, so `cron::Schedules` says when each is due.
pub(super) fn verify_config(config: &AgentConfig) -> AgentConfig {
    AgentConfig {
        schedules: config
            .schedules
            .iter()
            .filter_map(|(name, schedule)| {
                let cron = schedule.verify.clone()?;
                Some((
                    name.clone(),
                    BackupSchedule {
                        cron,
                        ..schedule.clone()
                    },
                ))
            })
            .collect(),
        ..config.clone()
    }
}

/// The server's operating-system user in the image (`postgres`): uid and gid.
fn server_user() -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("cannot read /etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .context("the image has no `postgres` user to run a scratch server as")
}

/// Runs the restore test of `schedule` now and records it in the tested
/// backup's manifest. Returns the report. Holds the destination's lock, so
/// retention never removes the backup under test.
pub async fn verify_now(
    config: &AgentConfig,
    schedule: &str,
    root: &Path,
) -> anyhow::Result<Report> {
    let _lock = super::take::lock_destination(root).await?;
    let Some(manifest) = list(root, &config.deployment)?
        .into_iter()
        .filter(|entry| entry.status == Status::Ok)
        .filter_map(|entry| entry.manifest)
        .find(|manifest| manifest.schedule == schedule)
    else {
        bail!("schedule `{schedule}` has no successful backup to test");
    };
    crate::output::status(&format!(
        "restore test of backup `{}` in a scratch server…",
        manifest.id
    ));
    let scratch = PathBuf::from(format!("/tmp/pgspec-verify-{}", manifest.id));
    let _ = tokio::fs::remove_dir_all(&scratch).await;
    let result = restore_test(
        config,
        root,
        &manifest.id,
        manifest.kind == "physical",
        &scratch,
    )
    .await;
    let _ = tokio::fs::remove_dir_all(&scratch).await;
    let report = match result {
        Ok(report) => report,
        Err(error) => Report {
            id: manifest.id.clone(),
            kind: manifest.kind.clone(),
            format: manifest.format.clone(),
            started_at: manifest.started_at.clone(),
            checks: vec![super::verify::Check {
                subject: "restore".to_owned(),
                ok: false,
                detail: format!("{error:#}"),
            }],
        },
    };
    let failed = report.checks.iter().filter(|check| !check.ok).count() as u64;
    record_verification(
        root,
        &config.deployment,
        &manifest.id,
        Verification {
            verified_at: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ok: report.ok(),
            checks: report.checks.len() as u64,
            failed,
            pgspec_version: env!("CARGO_PKG_VERSION").to_owned(),
        },
    )?;
    for check in report.checks.iter().filter(|check| !check.ok) {
        crate::output::status(&format!(
            "restore test: {}: {}",
            check.subject, check.detail
        ));
    }
    crate::output::status(&format!(
        "restore test of backup `{}`: {}",
        manifest.id,
        if report.ok() { "ok" } else { "FAILED" }
    ));
    Ok(report)
}

async fn restore_test(
    config: &AgentConfig,
    root: &Path,
    id: &str,
    physical: bool,
    scratch: &Path,
) -> anyhow::Result<Report> {
    let (uid, gid) = server_user()?;
    let pgdata = scratch.join("data");
    let socket = scratch.join("socket");
    tokio::fs::create_dir_all(&socket)
        .await
        .with_context(|| format!("cannot create `{}`", socket.display()))?;
    for path in [scratch, socket.as_path()] {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .with_context(|| format!("cannot hand `{}` to the server", path.display()))?;
    }
    let address = ServerAddress {
        host: socket.display().to_string(),
        port: crate::backup::SERVER_PORT,
        user: config.superuser.clone(),
    };
    if physical {
        // Files first: a damaged archive is reported as such, not as a
        // server that does not start.
        let manifest = list(root, &config.deployment)?
            .into_iter()
            .find(|entry| entry.id == id)
            .and_then(|entry| entry.manifest)
            .with_context(|| format!("backup `{id}` has no manifest"))?;
        let mut report = Report {
            id: manifest.id.clone(),
            kind: manifest.kind.clone(),
            format: manifest.format.clone(),
            started_at: manifest.started_at.clone(),
            checks: Vec::new(),
        };
        check_files(&root.join(id), &manifest, &mut report).await?;
        if !report.ok() {
            return Ok(report);
        }
        super::recover::prepare(
            root,
            &config.deployment,
            &pgdata,
            &super::recover::RecoveryTarget::Latest,
            "postgres",
        )
        .await?;
        let _server = start_server(&pgdata, &socket, uid, gid)?;
        let (ok, detail) = match wait_open(&address).await {
            Ok(databases) => (
                true,
                format!(
                    "the base backup recovered with the archived WAL and opened read-write \
                     ({databases} database(s))"
                ),
            ),
            Err(error) => (false, format!("{error:#}")),
        };
        report.checks.push(super::verify::Check {
            subject: "recovery".to_owned(),
            ok,
            detail,
        });
        return Ok(report);
    }
    let mut initdb = tokio::process::Command::new("initdb");
    initdb
        .args([
            format!("--pgdata={}", pgdata.display()),
            format!("--username={}", config.superuser),
            "--auth=trust".to_owned(),
            "--encoding=UTF8".to_owned(),
            "--locale=C".to_owned(),
            "--no-sync".to_owned(),
        ])
        .uid(uid)
        .gid(gid)
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let output = initdb.output().await.context("cannot run `initdb`")?;
    if !output.status.success() {
        bail!(
            "`initdb` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let _server = start_server(&pgdata, &socket, uid, gid)?;
    check(
        root,
        &config.deployment,
        Some(id),
        &address,
        &socket.display().to_string(),
    )
    .await
}

/// A temporary server on `pgdata`, on the Unix socket in `socket` only,
/// as the server's user; killed when dropped.
fn start_server(
    pgdata: &Path,
    socket: &Path,
    uid: u32,
    gid: u32,
) -> anyhow::Result<tokio::process::Child> {
    tokio::process::Command::new("postgres")
        .args([
            "-D".to_owned(),
            pgdata.display().to_string(),
            "-k".to_owned(),
            socket.display().to_string(),
            "-c".to_owned(),
            "listen_addresses=".to_owned(),
            "-c".to_owned(),
            "fsync=off".to_owned(),
            "-p".to_owned(),
            crate::backup::SERVER_PORT.to_string(),
        ])
        .uid(uid)
        .gid(gid)
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start the scratch server")
}

/// Waits until a recovered server accepts connections and is out of
/// recovery; the number of databases it has.
async fn wait_open(address: &ServerAddress) -> anyhow::Result<i64> {
    let started = std::time::Instant::now();
    loop {
        if let Ok(client) = address.connect("postgres").await
            && let Ok(row) = client
                .query_one(
                    "SELECT pg_is_in_recovery(), (SELECT count(*) FROM pg_database)",
                    &[],
                )
                .await
            && !row.get::<_, bool>(0)
        {
            return Ok(row.get(1));
        }
        if started.elapsed() > std::time::Duration::from_secs(300) {
            bail!("the recovered scratch server did not open within 300 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Runs the restore tests on their own cron expressions until the agent
/// stops.
pub(super) async fn run_schedules(config: AgentConfig, root: PathBuf) {
    let tests = verify_config(&config);
    let schedules = match super::cron::Schedules::parse(&tests) {
        Ok(schedules) => schedules,
        Err(error) => {
            crate::output::status(&format!("restore tests: {error:#}"));
            return;
        }
    };
    let mut after = Utc::now();
    loop {
        let Some((next, due)) = schedules.next_after(after).due else {
            return;
        };
        while let Ok(wait) = (next - Utc::now()).to_std() {
            if wait.is_zero() {
                break;
            }
            tokio::time::sleep(wait.min(std::time::Duration::from_secs(30))).await;
        }
        for schedule in due {
            if let Err(error) = verify_now(&config, &schedule.name, &root).await {
                crate::output::status(&format!(
                    "restore test of schedule `{}`: {error:#}",
                    schedule.name
                ));
            }
        }
        after = next.max(Utc::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::agent::fixtures::config_with;

    #[test]
    fn only_schedules_with_a_restore_test_run_on_its_cron() {
        let config = config_with([
            BackupSchedule {
                name: "nightly".to_owned(),
                cron: "0 2 * * *".to_owned(),
                verify: Some("0 3 1 * *".to_owned()),
                ..BackupSchedule::default()
            },
            BackupSchedule {
                name: "hourly".to_owned(),
                cron: "0 * * * *".to_owned(),
                ..BackupSchedule::default()
            },
        ]);
        let tests = verify_config(&config);
        assert_eq!(
            tests
                .schedules
                .values()
                .map(|schedule| (schedule.name.as_str(), schedule.cron.as_str()))
                .collect::<Vec<_>>(),
            [("nightly", "0 3 1 * *")]
        );
    }
}

/// How long after its due time a restore test may take before it counts
/// as overdue.
const GRACE: chrono::Duration = chrono::Duration::hours(1);

/// The last restore test of every schedule that has one, for drift.
pub fn restore_tests(
    config: &AgentConfig,
    root: &Path,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<std::collections::BTreeMap<String, crate::model::RestoreTest>> {
    let entries = list(root, &config.deployment)?;
    Ok(config
        .schedules
        .values()
        .filter_map(|schedule| {
            let verify = schedule.verify.as_deref()?;
            Some((
                schedule.name.clone(),
                judge(&entries, &schedule.name, verify, now)?,
            ))
        })
        .collect())
}

/// The last restore test of `schedule` among `entries` (newest first);
/// `None` while the schedule has no successful backup.
fn judge(
    entries: &[crate::backup::manifest::Entry],
    schedule: &str,
    verify: &str,
    now: chrono::DateTime<Utc>,
) -> Option<crate::model::RestoreTest> {
    let manifests: Vec<&crate::backup::manifest::Manifest> = entries
        .iter()
        .filter(|entry| entry.status == Status::Ok)
        .filter_map(|entry| entry.manifest.as_ref())
        .filter(|manifest| manifest.schedule == schedule)
        .collect();
    let newest = manifests.first()?;
    let last = manifests
        .iter()
        .filter_map(|manifest| manifest.verification.as_ref())
        .max_by_key(|verification| verification.at());
    let first_backup = manifests
        .iter()
        .filter_map(|manifest| manifest.started())
        .min();
    // The latest due time of the test before now less the grace.
    let period = super::cron::period(verify, now - chrono::Duration::days(400))
        .map(chrono::Duration::seconds);
    let due = period.and_then(|period| {
        let cutoff = now - GRACE;
        let cron = croner_of(verify)?;
        cron.iter_after(cutoff - period - period)
            .take_while(|time| *time <= cutoff)
            .last()
    });
    let overdue = match (due, first_backup) {
        (Some(due), Some(first)) if due > first => last
            .and_then(|verification| verification.at())
            .is_none_or(|at| at < due),
        _ => false,
    };
    Some(crate::model::RestoreTest {
        backup: newest.id.clone(),
        verified_at: last.map(|verification| verification.verified_at.clone()),
        ok: last.map(|verification| verification.ok),
        overdue,
    })
}

fn croner_of(expression: &str) -> Option<croner::Cron> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(expression)
        .ok()
}

#[cfg(test)]
mod judge_tests {
    use super::*;
    use crate::backup::agent::fixtures::at;
    use crate::backup::manifest::{Entry, sample};

    fn entry(started: &str, verified: Option<(&str, bool)>) -> Entry {
        let mut manifest = sample(at(started), "ledger", Status::Ok);
        manifest.verification = verified.map(|(time, ok)| Verification {
            verified_at: time.to_owned(),
            ok,
            checks: 3,
            failed: u64::from(!ok),
            pgspec_version: "0".to_owned(),
        });
        Entry {
            id: manifest.id.clone(),
            status: Status::Ok,
            manifest: Some(manifest),
        }
    }

    #[test]
    fn a_test_is_overdue_only_after_its_due_time_and_grace() {
        let monthly = "0 3 1 * *";
        // Backups since mid-November, no test yet: due on 1 December.
        let entries = [
            entry("2026-11-20T02:00:00Z", None),
            entry("2026-11-15T02:00:00Z", None),
        ];
        let before =
            judge(&entries, "nightly", monthly, at("2026-12-01T03:30:00Z")).expect("a test");
        assert!(!before.overdue, "{before:?}");
        assert_eq!(before.backup, "20261120T020000Z-nightly");
        let after =
            judge(&entries, "nightly", monthly, at("2026-12-01T05:00:00Z")).expect("a test");
        assert!(after.overdue, "{after:?}");
        // Tested after the due time: not overdue; a failure is recorded.
        let tested = [
            entry(
                "2026-11-20T02:00:00Z",
                Some(("2026-12-01T03:10:00Z", false)),
            ),
            entry("2026-11-15T02:00:00Z", None),
        ];
        let judged =
            judge(&tested, "nightly", monthly, at("2026-12-02T00:00:00Z")).expect("a test");
        assert_eq!((judged.overdue, judged.ok), (false, Some(false)));
        // A deployment younger than the last due time is not overdue.
        let young = [entry("2026-12-01T04:00:00Z", None)];
        let judged = judge(&young, "nightly", monthly, at("2026-12-02T00:00:00Z")).expect("a test");
        assert!(!judged.overdue);
        assert_eq!(
            judge(&[], "nightly", monthly, at("2026-12-02T00:00:00Z")),
            None
        );
    }
}
