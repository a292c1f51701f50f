//! `pgspec status -f SPEC [--json] [--watch SECONDS]`: one read-only screen
//! over the deployment, each line green, yellow or red. Exit 0 when nothing
//! is red, 2 when a red threshold is crossed, 1 on error.

use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::backup::agent::cron_period;
use crate::backup::docker::exec_agent;
use crate::backup::manifest::{Entry, Status as ManifestStatus};
use crate::cli::{Exit, SpecArg, load_spec, open};
use crate::diag::printable;
use crate::live::status;
use crate::model::monitoring::{ArchiveFacts, BackupFacts, VerificationFacts};
use crate::model::monitoring::{Level, StatusReport, evaluate};
use crate::model::{BackupSchedule, Desired};
use crate::output::{self, Colors};
use crate::plan::render::Paint;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub spec: SpecArg,
    /// Print a JSON document (`format_version` 1) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Read again every SECONDS until interrupted.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub watch: Option<u64>,
}

pub async fn run(args: &StatusArgs, colors: Colors) -> anyhow::Result<Exit> {
    let spec = load_spec(&args.spec.file, colors.stderr)?;
    let connections = open(&spec).await?;
    loop {
        let report = read(&spec, &connections).await?;
        let text = if args.json {
            let mut json = serde_json::to_string_pretty(&report)?;
            json.push('\n');
            json
        } else {
            let clear = if args.watch.is_some() && colors.stdout {
                "\x1b[2J\x1b[H"
            } else {
                ""
            };
            format!("{clear}{}", render(&report, colors.stdout))
        };
        output::stdout(&text)?;
        match args.watch {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
            None => {
                return Ok(if report.level == Level::Red {
                    Exit::Changes
                } else {
                    Exit::Success
                });
            }
        }
    }
}

async fn read(
    spec: &Desired,
    connections: &crate::live::Connections,
) -> anyhow::Result<StatusReport> {
    let (facts, backups) = tokio::join!(
        status::read(&spec.deployment, connections),
        backups(spec, connections)
    );
    let mut facts =
        facts.with_context(|| format!("cannot read deployment `{}`", spec.deployment.name))?;
    match backups {
        Ok((backups, archive)) => {
            facts.backups = backups;
            facts.archive = archive;
        }
        Err(error) => facts.backups_error = Some(format!("{error:#}")),
    }
    Ok(evaluate(
        &spec.deployment.name,
        facts,
        &spec.monitoring.thresholds,
    ))
}

/// Each schedule of the spec with its newest good backup, as the backup
/// agent lists them (one exec in the backup container), and the WAL
/// archive when a schedule streams WAL (one more, and the slot).
async fn backups(
    spec: &Desired,
    connections: &crate::live::Connections,
) -> anyhow::Result<(Vec<BackupFacts>, Option<ArchiveFacts>)> {
    let (Some(backup), Some(docker)) = (&spec.deployment.backup, &connections.engine) else {
        return Ok((Vec::new(), None));
    };
    let name = &spec.deployment.name;
    let listed = tokio::time::timeout(
        BACKUP_LIST_TIMEOUT,
        exec_agent(
            docker,
            name,
            Some(&backup.schedules),
            &["list", "--deployment", name],
        ),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "the backup agent did not list backups within {} s",
            BACKUP_LIST_TIMEOUT.as_secs()
        )
    })??;
    if listed.code != 0 {
        anyhow::bail!(
            "the backup agent could not list backups: {}",
            listed.stderr.trim()
        );
    }
    let entries: Vec<Entry> =
        serde_json::from_str(&listed.stdout).context("cannot read the backup agent's answer")?;
    let archive = if crate::live::backup::streams_wal(&spec.deployment) {
        Some(archive(spec, connections, docker, &entries).await)
    } else {
        None
    };
    Ok((
        newest_good(&backup.schedules, &entries, chrono::Utc::now()),
        archive,
    ))
}

/// The recoverable window and the archiver's lag; an archive or slot that
/// cannot be read is a window that cannot be told.
async fn archive(
    spec: &Desired,
    connections: &crate::live::Connections,
    docker: &crate::engine::Docker,
    entries: &[Entry],
) -> ArchiveFacts {
    let name = &spec.deployment.name;
    let schedules = spec
        .deployment
        .backup
        .as_ref()
        .map(|backup| &backup.schedules);
    let state = tokio::time::timeout(
        BACKUP_LIST_TIMEOUT,
        exec_agent(docker, name, schedules, &["archive", "--deployment", name]),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .filter(|output| output.code == 0)
    .and_then(|output| serde_json::from_str(&output.stdout).ok())
    .unwrap_or_default();
    let archiver = crate::live::backup::observe_archiver(&connections.target, name)
        .await
        .ok();
    let report = crate::backup::text::archive_report(entries, &state, archiver.as_ref());
    ArchiveFacts {
        window: report
            .window
            .as_ref()
            .map(crate::backup::window::window_phrase),
        not_recoverable: report.not_recoverable,
        streaming: archiver.as_ref().is_some_and(|archiver| archiver.active),
        lag_seconds: archiver.and_then(|archiver| archiver.lag_seconds),
    }
}

/// How long listing backups may take.
const BACKUP_LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// The newest good backup of each schedule, aged at `now`.
fn newest_good(
    schedules: &std::collections::BTreeMap<String, BackupSchedule>,
    entries: &[Entry],
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<BackupFacts> {
    schedules
        .values()
        .map(|schedule| {
            let newest = entries
                .iter()
                .filter_map(|entry| entry.manifest.as_ref())
                .filter(|manifest| {
                    manifest.schedule == schedule.name && manifest.status == ManifestStatus::Ok
                })
                .filter_map(|manifest| Some((manifest.started()?, manifest)))
                .max_by_key(|(started, _)| *started);
            BackupFacts {
                schedule: schedule.name.clone(),
                cron: schedule.cron.clone(),
                period_seconds: cron_period(&schedule.cron, now),
                last_good: newest.map(|(_, manifest)| manifest.id.clone()),
                last_good_age_seconds: newest.map(|(started, _)| (now - started).num_seconds()),
                last_verification: last_verification(&schedule.name, entries, now),
            }
        })
        .collect()
}

/// The newest verification recorded in a manifest of the schedule.
fn last_verification(
    schedule: &str,
    entries: &[Entry],
    now: chrono::DateTime<chrono::Utc>,
) -> Option<VerificationFacts> {
    entries
        .iter()
        .filter_map(|entry| entry.manifest.as_ref())
        .filter(|manifest| manifest.schedule == schedule)
        .filter_map(|manifest| Some((manifest, manifest.verification.as_ref()?)))
        .max_by_key(|(_, verification)| verification.at())
        .map(|(manifest, verification)| VerificationFacts {
            backup: manifest.id.clone(),
            ok: verification.ok,
            failed: verification.failed,
            checks: verification.checks,
            age_seconds: verification.at().map(|at| (now - at).num_seconds()),
        })
}

/// One line per item: level, what, value. Names come from the live side,
/// so control characters are shown escaped.
pub fn render(report: &StatusReport, color: bool) -> String {
    let paint = Paint { color };
    let word = |level: Level| match level {
        Level::Green => paint.green(level.as_str()),
        Level::Yellow => paint.yellow(level.as_str()),
        Level::Red => paint.red(level.as_str()),
    };
    let level = |level: Level| format!("{}{}", word(level), " ".repeat(6 - level.as_str().len()));
    let width = report
        .lines
        .iter()
        .map(|line| line.section.len() + line.item.len() + 1)
        .max()
        .unwrap_or(0);
    let mut text = format!(
        "{} {}\n",
        paint.bold(&format!("Deployment `{}`:", printable(&report.deployment))),
        word(report.level)
    );
    for line in &report.lines {
        let what = format!("{} {}", line.section, line.item);
        text.push_str(&format!(
            "  {} {:<width$}  {}\n",
            level(line.level),
            printable(&what),
            printable(&line.text),
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::manifest::sample;
    use chrono::{DateTime, Utc};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn entry(started: &str, status: ManifestStatus) -> Entry {
        let manifest = sample(at(started), "ledger", status);
        Entry {
            id: manifest.id.clone(),
            status,
            manifest: Some(manifest),
        }
    }

    #[test]
    fn the_newest_good_backup_of_each_schedule_is_aged() {
        let schedules = std::collections::BTreeMap::from([
            (
                "nightly".to_owned(),
                BackupSchedule {
                    name: "nightly".to_owned(),
                    cron: "0 2 * * *".to_owned(),
                    ..BackupSchedule::default()
                },
            ),
            (
                "hourly".to_owned(),
                BackupSchedule {
                    name: "hourly".to_owned(),
                    cron: "@hourly".to_owned(),
                    ..BackupSchedule::default()
                },
            ),
        ]);
        let entries = [
            entry("2026-01-03T02:00:00Z", ManifestStatus::Failed),
            entry("2026-01-01T02:00:00Z", ManifestStatus::Ok),
            entry("2026-01-02T02:00:00Z", ManifestStatus::Ok),
        ];
        let facts = newest_good(&schedules, &entries, at("2026-01-03T12:00:00Z"));
        let hourly = &facts[0];
        assert_eq!(
            (hourly.schedule.as_str(), hourly.last_good_age_seconds),
            ("hourly", None)
        );
        let nightly = &facts[1];
        assert_eq!(
            nightly.last_good.as_deref(),
            Some("20260102T020000Z-nightly")
        );
        assert_eq!(nightly.last_good_age_seconds, Some(34 * 3600));
        assert_eq!(nightly.period_seconds, Some(86_400));
    }
}
