//! Preparing point-in-time recovery into an empty data directory: the
//! newest base backup before the target, unpacked; the archived WAL it
//! needs copied beside it (`pgspec_wal/`, so the prepared volume needs no
//! archive mounted); `restore_command`, the target and
//! `recovery_target_action = 'promote'` in `postgresql.auto.conf` (with a
//! `recovery_end_command` that removes the copied WAL once recovery ends);
//! and `recovery.signal`. A server started on it replays to exactly the
//! target and opens read-write on a new timeline.

use std::path::Path;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::list;
use super::physical::{archive_directory, parse_lsn};
use super::server::run_tool;
use crate::backup::manifest::Manifest;

/// Where recovery should stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// Everything archived.
    Latest,
    /// The last transaction committed at or before this time.
    Time(DateTime<Utc>),
    /// This WAL position (`16/B374D848`).
    Lsn(String),
}

impl RecoveryTarget {
    /// The target as the agent's command line takes it: `latest`,
    /// `time:<RFC 3339>` or `lsn:<LSN>`.
    pub fn argument(&self) -> String {
        match self {
            RecoveryTarget::Latest => "latest".to_owned(),
            RecoveryTarget::Time(time) => format!("time:{}", time.to_rfc3339()),
            RecoveryTarget::Lsn(lsn) => format!("lsn:{lsn}"),
        }
    }

    /// The inverse of [`RecoveryTarget::argument`].
    pub fn parse_argument(text: &str) -> anyhow::Result<Self> {
        if text == "latest" {
            Ok(RecoveryTarget::Latest)
        } else if let Some(time) = text.strip_prefix("time:") {
            Ok(RecoveryTarget::Time(
                DateTime::parse_from_rfc3339(time)
                    .with_context(|| format!("`{time}` is not an RFC 3339 time"))?
                    .with_timezone(&Utc),
            ))
        } else if let Some(lsn) = text.strip_prefix("lsn:") {
            parse_lsn(lsn)?;
            Ok(RecoveryTarget::Lsn(lsn.to_owned()))
        } else {
            bail!("`{text}` is not a recovery target (`latest`, `time:…` or `lsn:…`)")
        }
    }
}

/// What was prepared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepared {
    /// The base backup unpacked.
    pub backup: String,
    /// From when on the base backup is consistent (its manifest's end).
    pub backup_finished_at: String,
    /// The target, as [`RecoveryTarget::argument`] writes it.
    pub target: String,
    /// How many archived WAL files were copied into `pgspec_wal/`.
    pub wal_files: usize,
}

/// The directory inside the data directory that holds the archived WAL a
/// recovery replays; `restore_command` reads it relative to the data
/// directory.
pub const RECOVERY_WAL: &str = "pgspec_wal";

/// The recovery settings appended to `postgresql.auto.conf`.
fn recovery_settings(backup: &str, target: &RecoveryTarget) -> String {
    let mut text = format!(
        "\n# pgspec: point-in-time recovery from backup {backup}; \
         remove these lines once the server has been promoted\n\
         restore_command = 'cp {RECOVERY_WAL}/%f \"%p\"'\n\
         recovery_end_command = 'rm -rf {RECOVERY_WAL}'\n"
    );
    match target {
        RecoveryTarget::Latest => {}
        RecoveryTarget::Time(time) => text.push_str(&format!(
            "recovery_target_time = '{}'\n",
            time.format("%Y-%m-%d %H:%M:%S%.6f+00")
        )),
        RecoveryTarget::Lsn(lsn) => text.push_str(&format!("recovery_target_lsn = '{lsn}'\n")),
    }
    if *target != RecoveryTarget::Latest {
        text.push_str("recovery_target_action = 'promote'\n");
    }
    text
}

/// Which archived files a recovery from a base backup starting in segment
/// `start_wal` may need: every segment from there on (a partial one under
/// its complete name, unless the complete one is there too) and every
/// timeline history file. Pairs of (file in the archive, name to give it).
fn wal_to_copy(names: &[String], start_wal: &str) -> Vec<(String, String)> {
    let position = |name: &str| name.get(8..).unwrap_or(name).to_owned();
    let is_segment =
        |name: &str| name.len() == 24 && name.bytes().all(|byte| byte.is_ascii_hexdigit());
    let mut files = Vec::new();
    for name in names {
        let history = name.ends_with(".history");
        if history || (is_segment(name) && position(name) >= position(start_wal)) {
            files.push((name.clone(), name.clone()));
        } else if let Some(segment) = name.strip_suffix(".partial")
            && is_segment(segment)
            && position(segment) >= position(start_wal)
            && !names.iter().any(|other| other == segment)
        {
            files.push((name.clone(), segment.to_owned()));
        }
    }
    files.sort();
    files
}

/// Prepares `pgdata` (empty or missing) for recovery to `target` from the
/// archive under `root`, as the server's user `owner`.
pub async fn prepare(
    root: &Path,
    deployment: &str,
    pgdata: &Path,
    target: &RecoveryTarget,
    owner: &str,
) -> anyhow::Result<Prepared> {
    let manifests: Vec<Manifest> = list(root, deployment)?
        .into_iter()
        .filter_map(|entry| entry.manifest)
        .collect();
    let archive = super::physical::archive_state(root, deployment);
    let manifest = crate::backup::window::base_backup_for(deployment, &manifests, &archive, target)
        .map_err(anyhow::Error::msg)?;
    let base = manifest
        .base_backup
        .as_ref()
        .context("the chosen backup is no base backup")?;
    if std::fs::read_dir(pgdata).is_ok_and(|mut items| items.next().is_some()) {
        bail!(
            "`{}` is not empty; recovery is prepared only into an empty data directory",
            pgdata.display()
        )
    }
    tokio::fs::create_dir_all(pgdata)
        .await
        .with_context(|| format!("cannot create `{}`", pgdata.display()))?;
    let directory = root.join(&manifest.id);
    crate::output::status(&format!("unpacking base backup `{}`…", manifest.id));
    let untar = |archive: &Path, into: &Path| {
        vec![
            "-x".to_owned(),
            "-f".to_owned(),
            archive.display().to_string(),
            "-C".to_owned(),
            into.display().to_string(),
        ]
    };
    run_tool("tar", &untar(&directory.join("base.tar"), pgdata)).await?;
    let pg_wal = pgdata.join("pg_wal");
    tokio::fs::create_dir_all(&pg_wal)
        .await
        .with_context(|| format!("cannot create `{}`", pg_wal.display()))?;
    if directory.join("pg_wal.tar").exists() {
        run_tool("tar", &untar(&directory.join("pg_wal.tar"), &pg_wal)).await?;
    }
    let archive = archive_directory(root, deployment);
    let names: Vec<String> = std::fs::read_dir(&archive)
        .map(|items| {
            items
                .filter_map(|item| item.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    let wal = pgdata.join(RECOVERY_WAL);
    tokio::fs::create_dir_all(&wal)
        .await
        .with_context(|| format!("cannot create `{}`", wal.display()))?;
    let files = wal_to_copy(&names, &base.start_wal);
    for (from, to) in &files {
        tokio::fs::copy(archive.join(from), wal.join(to))
            .await
            .with_context(|| format!("cannot copy WAL file `{from}`"))?;
    }
    let auto_conf = pgdata.join("postgresql.auto.conf");
    let mut settings = tokio::fs::read_to_string(&auto_conf)
        .await
        .unwrap_or_default();
    settings.push_str(&recovery_settings(&manifest.id, target));
    tokio::fs::write(&auto_conf, settings)
        .await
        .with_context(|| format!("cannot write `{}`", auto_conf.display()))?;
    tokio::fs::write(pgdata.join("recovery.signal"), "")
        .await
        .context("cannot write `recovery.signal`")?;
    {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(pgdata, std::fs::Permissions::from_mode(0o700))
            .await
            .with_context(|| format!("cannot restrict `{}`", pgdata.display()))?;
    }
    run_tool(
        "chown",
        &[
            "-R".to_owned(),
            format!("{owner}:{owner}"),
            pgdata.display().to_string(),
        ],
    )
    .await?;
    Ok(Prepared {
        backup: manifest.id.clone(),
        backup_finished_at: manifest.finished_at.clone(),
        target: target.argument(),
        wal_files: files.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::agent::fixtures::at;

    #[test]
    fn recovery_stops_at_the_target_and_promotes() {
        let settings = recovery_settings(
            "x",
            &RecoveryTarget::Time(at("2026-11-29T12:00:00.25+01:00")),
        );
        assert!(
            settings.contains("restore_command = 'cp pgspec_wal/%f \"%p\"'\n"),
            "{settings}"
        );
        assert!(
            settings.contains("recovery_target_time = '2026-11-29 11:00:00.250000+00'\n"),
            "{settings}"
        );
        assert!(settings.contains("recovery_target_action = 'promote'\n"));
        assert!(settings.contains("recovery_end_command = 'rm -rf pgspec_wal'\n"));
        let lsn = recovery_settings("x", &RecoveryTarget::Lsn("0/3000060".to_owned()));
        assert!(lsn.contains("recovery_target_lsn = '0/3000060'\n"), "{lsn}");
        let latest = recovery_settings("x", &RecoveryTarget::Latest);
        assert!(!latest.contains("recovery_target"), "{latest}");
    }

    #[test]
    fn targets_round_trip_through_the_command_line() {
        for target in [
            RecoveryTarget::Latest,
            RecoveryTarget::Time(at("2026-11-29T12:00:00.5Z")),
            RecoveryTarget::Lsn("16/B374D848".to_owned()),
        ] {
            assert_eq!(
                RecoveryTarget::parse_argument(&target.argument()).expect("a target"),
                target
            );
        }
        assert!(RecoveryTarget::parse_argument("yesterday").is_err());
        assert!(RecoveryTarget::parse_argument("lsn:x").is_err());
    }

    #[test]
    fn the_wal_from_the_backups_start_is_copied_partial_under_its_full_name() {
        let names: Vec<String> = [
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000003.partial",
            "000000010000000000000002.partial",
            "00000002.history",
            "stray",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            wal_to_copy(&names, "000000010000000000000002"),
            [
                (
                    "000000010000000000000002".to_owned(),
                    "000000010000000000000002".to_owned()
                ),
                (
                    "000000010000000000000003.partial".to_owned(),
                    "000000010000000000000003".to_owned()
                ),
                ("00000002.history".to_owned(), "00000002.history".to_owned()),
            ]
        );
    }
}
