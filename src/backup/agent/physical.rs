//! Physical backups: base backups with `pg_basebackup` (tar format, WAL
//! streamed into the backup, a `backup_manifest` with SHA-256 checksums),
//! the WAL archiver (`pg_receivewal` on the deployment's replication slot,
//! restarted whenever it exits) and the retention of archived WAL.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;
use tokio_postgres::Client;

use super::server::{ServerAddress, run_tool};
use crate::backup::AgentConfig;
use crate::backup::manifest::{BaseBackup, Status};
use crate::model::backup::{slot_name, wal_directory};

/// Takes a base backup into `directory`: `base.tar`, `pg_wal.tar` (the WAL
/// from start to end, so the backup is consistent on its own) and
/// `backup_manifest`.
pub(super) async fn base_backup(
    address: &ServerAddress,
    maintenance: &Client,
    directory: &Path,
) -> anyhow::Result<BaseBackup> {
    let row = maintenance
        .query_one(
            "SELECT (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'), \
                    system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
        .context("cannot read the WAL segment size")?;
    let segment_bytes: i64 = row.get(0);
    let system_identifier: String = row.get(1);
    crate::output::status("taking a base backup with pg_basebackup…");
    run_tool(
        "pg_basebackup",
        &[
            format!("--pgdata={}", directory.display()),
            "--format=tar".to_owned(),
            "--wal-method=stream".to_owned(),
            "--checkpoint=fast".to_owned(),
            "--manifest-checksums=SHA256".to_owned(),
            "--label=pgspec".to_owned(),
            "--no-password".to_owned(),
            format!("--dbname={}", address.conninfo("postgres")),
        ],
    )
    .await?;
    let text = tokio::fs::read(directory.join("backup_manifest"))
        .await
        .context("pg_basebackup wrote no `backup_manifest`")?;
    let range = wal_range(&text)?;
    let segment_bytes = u64::try_from(segment_bytes).unwrap_or(0);
    Ok(BaseBackup {
        start_wal: segment_name(range.timeline, parse_lsn(&range.start)?, segment_bytes)?,
        timeline: range.timeline,
        start_lsn: range.start,
        end_lsn: range.end,
        wal_segment_bytes: segment_bytes,
        system_identifier,
    })
}

#[derive(Debug, PartialEq)]
struct WalRange {
    timeline: u32,
    start: String,
    end: String,
}

/// The first WAL range of a `backup_manifest`.
fn wal_range(manifest: &[u8]) -> anyhow::Result<WalRange> {
    #[derive(Deserialize)]
    struct Manifest {
        #[serde(rename = "WAL-Ranges")]
        ranges: Vec<Range>,
    }
    #[derive(Deserialize)]
    struct Range {
        #[serde(rename = "Timeline")]
        timeline: u32,
        #[serde(rename = "Start-LSN")]
        start: String,
        #[serde(rename = "End-LSN")]
        end: String,
    }
    let manifest: Manifest = serde_json::from_slice(manifest)
        .context("cannot read pg_basebackup's `backup_manifest`")?;
    let range = manifest
        .ranges
        .into_iter()
        .next()
        .context("`backup_manifest` names no WAL range")?;
    Ok(WalRange {
        timeline: range.timeline,
        start: range.start,
        end: range.end,
    })
}

/// An LSN as PostgreSQL writes and reads it (`16/B374D848`): one to eight
/// hex digits on each side of the slash, nothing else (no sign, as
/// `from_str_radix` alone would take).
pub fn parse_lsn(text: &str) -> anyhow::Result<u64> {
    let half = |digits: &str| {
        (1..=8).contains(&digits.len()) && digits.bytes().all(|byte| byte.is_ascii_hexdigit())
    };
    match text.trim().split_once('/') {
        Some((high, low)) if half(high) && half(low) => {
            let value = |digits| u64::from_str_radix(digits, 16);
            Ok((value(high)? << 32) | value(low)?)
        }
        _ => bail!("`{text}` is not an LSN"),
    }
}

/// The name of the WAL segment holding `lsn` (`pg_walfile_name`).
pub fn segment_name(timeline: u32, lsn: u64, segment_bytes: u64) -> anyhow::Result<String> {
    if segment_bytes == 0 || !segment_bytes.is_power_of_two() {
        bail!("`{segment_bytes}` is not a WAL segment size");
    }
    let segment = lsn / segment_bytes;
    let per_id = 0x1_0000_0000 / segment_bytes;
    Ok(format!(
        "{timeline:08X}{:08X}{:08X}",
        segment / per_id,
        segment % per_id
    ))
}

/// Whether `name` is a complete WAL segment's file name.
fn is_segment(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// The position of a segment in the WAL, whatever its timeline.
fn position(segment: &str) -> &str {
    segment.get(8..).unwrap_or(segment)
}

/// The segments retention may remove: complete segments older than the
/// oldest segment a kept base backup needs. Partial segments and timeline
/// history files always stay.
fn removable_segments<'a>(names: &'a [String], oldest_needed: &str) -> Vec<&'a str> {
    names
        .iter()
        .map(String::as_str)
        .filter(|name| is_segment(name) && position(name) < position(oldest_needed))
        .collect()
}

/// The oldest segment a kept base backup needs: the oldest start among
/// those on the timeline the archive streams now (the newest segment's).
/// Base backups of an earlier timeline (before a restore to a point in
/// time set its archive aside) do not count: their positions say nothing
/// about the new timeline's segments. `None`: nothing may go.
fn oldest_needed(bases: &[&BaseBackup], names: &[String]) -> Option<String> {
    let newest = names
        .iter()
        .map(|name| name.strip_suffix(".partial").unwrap_or(name))
        .filter(|name| is_segment(name))
        .max_by(|left, right| position(left).cmp(position(right)))?;
    let timeline = u32::from_str_radix(newest.get(..8)?, 16).ok()?;
    bases
        .iter()
        .filter(|base| base.timeline == timeline)
        .map(|base| base.start_wal.clone())
        .min_by(|left, right| position(left).cmp(position(right)))
}

/// Removes the archived WAL no kept base backup of `schedule` needs; keeps
/// everything while there is no successful one. Returns how many
/// segments went.
pub(super) async fn prune_wal(
    root: &Path,
    deployment: &str,
    schedule: &str,
) -> anyhow::Result<usize> {
    let entries = super::list(root, deployment)?;
    let bases: Vec<&BaseBackup> = entries
        .iter()
        .filter(|entry| entry.status == Status::Ok)
        .filter_map(|entry| entry.manifest.as_ref())
        .filter(|manifest| manifest.schedule == schedule)
        .filter_map(|manifest| manifest.base_backup.as_ref())
        .collect();
    let directory = archive_directory(root, deployment);
    let names = match std::fs::read_dir(&directory) {
        Ok(items) => items
            .filter_map(|item| item.ok()?.file_name().into_string().ok())
            .collect::<Vec<_>>(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read `{}`", directory.display()));
        }
    };
    let Some(oldest) = oldest_needed(&bases, &names) else {
        return Ok(0);
    };
    let removable = removable_segments(&names, &oldest);
    for name in &removable {
        let path = directory.join(name);
        tokio::fs::remove_file(&path)
            .await
            .with_context(|| format!("cannot remove `{}`", path.display()))?;
    }
    Ok(removable.len())
}

/// Where a deployment's WAL is archived below `root`.
pub fn archive_directory(root: &Path, deployment: &str) -> PathBuf {
    let mount = Path::new(crate::backup::BACKUP_MOUNT);
    let full = PathBuf::from(wal_directory(deployment));
    root.join(full.strip_prefix(mount).unwrap_or(&full))
}

/// How long the archiver waits before restarting `pg_receivewal`: longer
/// after each quick failure, up to a minute.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs((5u64 << failures.min(4)).min(60))
}

/// Streams WAL into the archive until the process ends: creates the
/// deployment's replication slot when missing (so the server keeps WAL
/// from then on while the archiver is down), then runs `pg_receivewal` on
/// it, restarting it whenever it exits.
pub(super) async fn archive(config: &AgentConfig, root: &Path) {
    let directory = archive_directory(root, &config.deployment);
    let slot = slot_name(&config.deployment);
    let address = ServerAddress {
        host: config.server.clone(),
        port: config.port,
        user: config.superuser.clone(),
    };
    let mut failures = 0;
    loop {
        let started = Instant::now();
        match stream_once(&address, &directory, &slot).await {
            Ok(status) => crate::output::status(&format!(
                "WAL archiver: pg_receivewal exited ({status}); restarting"
            )),
            Err(error) => crate::output::status(&format!("WAL archiver: {error:#}")),
        }
        if started.elapsed() > Duration::from_secs(120) {
            failures = 0;
        }
        tokio::time::sleep(backoff(failures)).await;
        failures += 1;
    }
}

/// Drops the deployment's replication slot when no schedule streams WAL any
/// more (a `physical` schedule was removed): an abandoned slot would keep
/// every WAL segment on the server from then on. An active slot is left.
pub(super) async fn drop_abandoned_slot(config: &AgentConfig) {
    let address = ServerAddress {
        host: config.server.clone(),
        port: config.port,
        user: config.superuser.clone(),
    };
    let slot = slot_name(&config.deployment);
    let dropped = async {
        let client = address.connect("postgres").await?;
        let rows = client
            .query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = $1 AND slot_type = 'physical' AND NOT active",
                &[&slot],
            )
            .await
            .context("cannot drop the replication slot")?;
        anyhow::Ok(!rows.is_empty())
    }
    .await;
    match dropped {
        Ok(true) => crate::output::status(&format!(
            "WAL archiver: no schedule streams WAL any more; replication slot `{slot}` dropped"
        )),
        Ok(false) => {}
        // Quietly: most agents never had a slot.
        Err(error) => tracing::debug!(%slot, "cannot check for an abandoned slot: {error:#}"),
    }
}

async fn stream_once(
    address: &ServerAddress,
    directory: &Path,
    slot: &str,
) -> anyhow::Result<std::process::ExitStatus> {
    tokio::fs::create_dir_all(directory)
        .await
        .with_context(|| format!("cannot create `{}`", directory.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o700))
            .await
            .with_context(|| format!("cannot restrict `{}`", directory.display()))?;
    }
    let conninfo = address.conninfo("postgres");
    run_tool(
        "pg_receivewal",
        &[
            "--create-slot".to_owned(),
            "--if-not-exists".to_owned(),
            format!("--slot={slot}"),
            "--no-password".to_owned(),
            format!("--dbname={conninfo}"),
        ],
    )
    .await
    .context("cannot create the replication slot")?;
    crate::output::status(&format!(
        "WAL archiver: streaming into `{}` on slot `{slot}`",
        directory.display()
    ));
    let status = tokio::process::Command::new("pg_receivewal")
        .args([
            format!("--directory={}", directory.display()),
            format!("--slot={slot}"),
            "--synchronous".to_owned(),
            "--no-loop".to_owned(),
            "--no-password".to_owned(),
            format!("--dbname={conninfo}"),
        ])
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .status()
        .await
        .context("cannot run `pg_receivewal`")?;
    Ok(status)
}

/// The oldest and the newest archived segment (a complete one, or the one
/// being written, `.partial`) and when the newest was last written, for
/// `backup list` and the recoverable window.
pub fn archive_state(root: &Path, deployment: &str) -> crate::backup::text::ArchiveState {
    let segments = segments(root, deployment);
    let newest = segments
        .iter()
        .max_by(|left, right| position(&left.0).cmp(position(&right.0)));
    let oldest = segments
        .iter()
        .min_by(|left, right| position(&left.0).cmp(position(&right.0)));
    crate::backup::text::ArchiveState {
        oldest_segment: oldest.map(|(name, _)| name.clone()),
        newest_segment: newest.map(|(name, _)| name.clone()),
        newest_at: newest.map(|(_, modified)| {
            chrono::DateTime::<chrono::Utc>::from(*modified)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        }),
    }
}

/// The archived segments (a partial one under its complete name) and when
/// each was last written.
fn segments(root: &Path, deployment: &str) -> Vec<(String, std::time::SystemTime)> {
    let directory = archive_directory(root, deployment);
    let Ok(items) = std::fs::read_dir(directory) else {
        return Vec::new();
    };
    items
        .filter_map(|item| {
            let item = item.ok()?;
            let name = item.file_name().into_string().ok()?;
            let segment = name.strip_suffix(".partial").unwrap_or(&name).to_owned();
            is_segment(&segment).then_some(())?;
            Some((segment, item.metadata().ok()?.modified().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_are_pg_walfile_name() {
        let mib16 = 16 * 1024 * 1024;
        let lsn = parse_lsn("0/2000028").expect("an LSN");
        assert_eq!(
            segment_name(1, lsn, mib16).expect("a name"),
            "000000010000000000000002"
        );
        let lsn = parse_lsn("16/B374D848").expect("an LSN");
        assert_eq!(
            segment_name(3, lsn, mib16).expect("a name"),
            "0000000300000016000000B3"
        );
        // 1 GiB segments: four per WAL id.
        let lsn = parse_lsn("1/C0000000").expect("an LSN");
        assert_eq!(
            segment_name(1, lsn, 1 << 30).expect("a name"),
            "000000010000000100000003"
        );
        assert!(segment_name(1, lsn, 3).is_err());
        assert!(parse_lsn("nonsense").is_err());
        assert!(parse_lsn("100000000/0").is_err());
        for refused in [
            "000000001/0",
            "0/000000001",
            "+1/0",
            "0/+1",
            "/1",
            "1/",
            "0/-1",
            "1/2/3",
        ] {
            assert!(parse_lsn(refused).is_err(), "{refused}");
        }
        assert_eq!(parse_lsn(" FFFFFFFF/ffffffff ").expect("an LSN"), u64::MAX);
    }

    #[test]
    fn the_wal_range_comes_from_backup_manifest() {
        let text = br#"{ "PostgreSQL-Backup-Manifest-Version": 1,
            "Files": [],
            "WAL-Ranges": [ { "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" } ],
            "Manifest-Checksum": "00" }"#;
        assert_eq!(
            wal_range(text).expect("a range"),
            WalRange {
                timeline: 1,
                start: "0/2000028".to_owned(),
                end: "0/2000100".to_owned(),
            }
        );
        assert!(wal_range(b"{}").is_err());
    }

    /// Only complete segments before the oldest needed one go, on any
    /// timeline; partial segments and history files stay.
    #[test]
    fn retention_removes_only_segments_before_the_oldest_needed() {
        let names: Vec<String> = [
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000003",
            "000000020000000000000001",
            "000000010000000000000004.partial",
            "00000002.history",
            "000000010000000000000001.partial",
            "notes.txt",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            removable_segments(&names, "000000010000000000000003"),
            [
                "000000010000000000000001",
                "000000010000000000000002",
                "000000020000000000000001"
            ]
        );
        assert!(removable_segments(&names, "000000010000000000000001").is_empty());
    }

    /// After a restore to a point in time, the archive streams a new
    /// timeline: only its base backups say what it still needs.
    #[test]
    fn only_base_backups_on_the_archives_timeline_hold_its_segments() {
        let base = |timeline: u32, start_wal: &str| BaseBackup {
            timeline,
            start_lsn: "0/0".to_owned(),
            end_lsn: "0/0".to_owned(),
            start_wal: start_wal.to_owned(),
            wal_segment_bytes: 16 << 20,
            system_identifier: "1".to_owned(),
        };
        let old = base(1, "00000001000000000000000A");
        let new = base(2, "000000020000000000000006");
        let names: Vec<String> = [
            "000000020000000000000005",
            "000000020000000000000006",
            "000000020000000000000007.partial",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            oldest_needed(&[&old, &new], &names).as_deref(),
            Some("000000020000000000000006")
        );
        // No base backup on the new timeline yet: everything stays.
        assert_eq!(oldest_needed(&[&old], &names), None);
        assert_eq!(oldest_needed(&[&old, &new], &[]), None);
    }

    #[test]
    fn the_archiver_waits_longer_after_each_failure() {
        assert_eq!(backoff(0), Duration::from_secs(5));
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(9), Duration::from_secs(60));
    }
}
