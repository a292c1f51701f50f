//! The recoverable window of a deployment's WAL archive, and the base
//! backup a point-in-time recovery starts from. Pure: manifests and what
//! the agent found in the archive in, a window or a refusal out.
//!
//! A base backup counts only while the archive can carry it forward: it
//! is on the timeline the archive streams now, and the archive still holds
//! the segment its backup ended in (the WAL from its start to its end is
//! inside the backup). A restore to a point in time starts a new timeline
//! and sets the archive of the old one aside, so the base backups of the
//! old timeline leave the window until a new one is taken.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::agent::RecoveryTarget;
use super::agent::{parse_lsn, segment_name};
use super::manifest::{Manifest, Status};
use super::text::ArchiveState;

/// From when to when a deployment can be recovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// When the oldest usable base backup became consistent (it finished),
    /// RFC 3339.
    pub from: String,
    /// Its position: the end of that base backup.
    pub from_lsn: String,
    /// The oldest usable base backup.
    pub from_backup: String,
    /// When the newest archived WAL was written, RFC 3339.
    pub to: String,
    /// The newest archived segment (complete or being written).
    pub to_segment: String,
    /// The end of that segment: no archived WAL lies beyond it.
    pub to_lsn_bound: Option<String>,
    /// The timeline the archive streams.
    pub timeline: u32,
}

/// Why nothing is recoverable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoWindow {
    /// No successful base backup at all.
    NoBaseBackup,
    /// No WAL archived yet.
    NoWal,
    /// Base backups, but none the archive can carry forward (another
    /// timeline, or their WAL is gone).
    NoBaseBackupInArchive { timeline: u32 },
}

impl std::fmt::Display for NoWindow {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoWindow::NoBaseBackup => formatter.write_str("no successful base backup"),
            NoWindow::NoWal => formatter.write_str("no WAL archived"),
            NoWindow::NoBaseBackupInArchive { timeline } => write!(
                formatter,
                "no base backup on timeline {timeline}, the one the archive streams (a restore \
                 to a point in time starts a new timeline: take a base backup with `pgspec \
                 backup run`)"
            ),
        }
    }
}

/// The timeline of a WAL segment's name.
fn timeline_of(segment: &str) -> Option<u32> {
    u32::from_str_radix(segment.get(..8)?, 16).ok()
}

/// The position of a segment in the WAL, whatever its timeline.
fn position(segment: &str) -> &str {
    segment.get(8..).unwrap_or(segment)
}

/// The successful base backups the archive can carry forward, in no
/// particular order.
pub fn usable<'a>(manifests: &'a [Manifest], archive: &ArchiveState) -> Vec<&'a Manifest> {
    let (Some(oldest), Some(newest)) = (&archive.oldest_segment, &archive.newest_segment) else {
        return Vec::new();
    };
    let timeline = timeline_of(newest);
    manifests
        .iter()
        .filter(|manifest| manifest.status == Status::Ok)
        .filter(|manifest| {
            let Some(base) = &manifest.base_backup else {
                return false;
            };
            let end = parse_lsn(&base.end_lsn)
                .and_then(|end| segment_name(base.timeline, end, base.wal_segment_bytes));
            Some(base.timeline) == timeline
                && end.is_ok_and(|end| position(oldest) <= position(&end))
        })
        .collect()
}

/// The recoverable window: from the oldest usable base backup's end to the
/// newest archived WAL.
pub fn recoverable_window(
    manifests: &[Manifest],
    archive: &ArchiveState,
) -> Result<Window, NoWindow> {
    let any_base = manifests
        .iter()
        .any(|manifest| manifest.status == Status::Ok && manifest.base_backup.is_some());
    if !any_base {
        return Err(NoWindow::NoBaseBackup);
    }
    let (Some(newest), Some(newest_at)) = (&archive.newest_segment, &archive.newest_at) else {
        return Err(NoWindow::NoWal);
    };
    let timeline = timeline_of(newest).unwrap_or(0);
    let oldest = usable(manifests, archive)
        .into_iter()
        .min_by(|left, right| left.finished_at.cmp(&right.finished_at))
        .ok_or(NoWindow::NoBaseBackupInArchive { timeline })?;
    let base = oldest.base_backup.as_ref().expect("usable ones have one");
    let to_lsn_bound = segment_end(newest, base.wal_segment_bytes);
    Ok(Window {
        from: oldest.finished_at.clone(),
        from_lsn: base.end_lsn.clone(),
        from_backup: oldest.id.clone(),
        to: newest_at.clone(),
        to_segment: newest.clone(),
        to_lsn_bound,
        timeline,
    })
}

/// The LSN just past segment `name` (`000000010000000000000007` of 16 MiB
/// ends at `0/8000000`).
fn segment_end(name: &str, segment_bytes: u64) -> Option<String> {
    let id = u64::from_str_radix(name.get(8..16)?, 16).ok()?;
    let segment = u64::from_str_radix(name.get(16..24)?, 16).ok()?;
    (segment_bytes > 0).then_some(())?;
    let end = (id << 32).checked_add((segment + 1).checked_mul(segment_bytes)?)?;
    Some(format!("{:X}/{:X}", end >> 32, end & 0xFFFF_FFFF))
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}

/// The newest base backup from which `target` can be reached: consistent
/// before it (finished before the time, ended at or before the LSN).
pub fn newest_before<'a>(
    manifests: impl IntoIterator<Item = &'a Manifest>,
    target: &RecoveryTarget,
) -> Option<&'a Manifest> {
    manifests
        .into_iter()
        .filter(|manifest| manifest.status == Status::Ok)
        .filter(|manifest| match (&manifest.base_backup, target) {
            (None, _) => false,
            (Some(_), RecoveryTarget::Latest) => true,
            (Some(_), RecoveryTarget::Time(time)) => {
                parse_time(&manifest.finished_at).is_some_and(|finished| {
                    // Finished times are whole seconds, rounded down.
                    finished + chrono::Duration::seconds(1) <= *time
                })
            }
            (Some(base), RecoveryTarget::Lsn(lsn)) => {
                matches!((parse_lsn(&base.end_lsn), parse_lsn(lsn)), (Ok(end), Ok(lsn)) if end <= lsn)
            }
        })
        .max_by(|left, right| left.started().cmp(&right.started()))
}

/// The window as one phrase, for errors: `from … to … UTC`.
pub fn window_phrase(window: &Window) -> String {
    format!(
        "from {} (base backup `{}`, LSN {}) to {} UTC (segment {}{})",
        plain_time(&window.from),
        window.from_backup,
        window.from_lsn,
        plain_time(&window.to),
        window.to_segment,
        window
            .to_lsn_bound
            .as_ref()
            .map_or(String::new(), |bound| format!(", LSN below {bound}"))
    )
}

/// `2026-11-29T12:00:00Z` as `2026-11-29 12:00:00`.
pub fn plain_time(text: &str) -> String {
    text.replace('T', " ")
        .trim_end_matches('Z')
        .trim_end_matches("+00:00")
        .to_owned()
}

/// The base backup a recovery to `target` starts from, once `target` is
/// known to lie inside the recoverable window; else why not, in words
/// that name the window.
pub fn base_backup_for<'a>(
    deployment: &str,
    manifests: &'a [Manifest],
    archive: &ArchiveState,
    target: &RecoveryTarget,
) -> Result<&'a Manifest, String> {
    let window = recoverable_window(manifests, archive)
        .map_err(|why| format!("nothing of `{deployment}` can be recovered: {why}"))?;
    let outside = |where_: &str| {
        format!(
            "{} is {where_} the recoverable window of `{deployment}`, {}",
            describe_target(target),
            window_phrase(&window)
        )
    };
    match target {
        RecoveryTarget::Latest => {}
        RecoveryTarget::Time(time) => {
            let to = parse_time(&window.to).unwrap_or(*time);
            // The newest write time is whole seconds, rounded down.
            if *time >= to + chrono::Duration::seconds(1) {
                return Err(outside("after the last archived WAL, outside"));
            }
        }
        RecoveryTarget::Lsn(lsn) => {
            let beyond = window
                .to_lsn_bound
                .as_deref()
                .and_then(|bound| parse_lsn(bound).ok())
                .zip(parse_lsn(lsn).ok())
                .is_some_and(|(bound, lsn)| lsn >= bound);
            if beyond {
                return Err(outside("after the last archived WAL, outside"));
            }
        }
    }
    newest_before(usable(manifests, archive), target)
        .ok_or_else(|| outside("before the oldest base backup's end, outside"))
}

/// The target in words: `2026-11-29 12:00:00 UTC`, `LSN 0/3000060`.
pub fn describe_target(target: &RecoveryTarget) -> String {
    match target {
        RecoveryTarget::Latest => "the newest archived WAL".to_owned(),
        RecoveryTarget::Time(time) => format!("{} UTC", time.format("%Y-%m-%d %H:%M:%S%.f")),
        RecoveryTarget::Lsn(lsn) => format!("LSN {lsn}"),
    }
}

/// Reads `--to-time`: `2026-11-29 12:00:00+00`, with a `T` or a space,
/// fractions of a second, and a zone (`Z`, `+00`, `+01:00`) that must be
/// there, so no one restores to a time in an unintended zone.
pub fn parse_target_time(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    let normal = text.replacen('T', " ", 1);
    let normal = match normal.strip_suffix('Z') {
        Some(rest) => format!("{rest}+00"),
        None => normal,
    };
    DateTime::parse_from_str(&normal, "%Y-%m-%d %H:%M:%S%.f%#z")
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| {
            format!(
                "`{text}` is not a time with its zone; write it as `2026-11-29 12:00:00+00` \
                 (or RFC 3339, `2026-11-29T12:00:00Z`)"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::agent::fixtures::at;
    use crate::backup::manifest::{BaseBackup, sample};

    fn base(started: &str, finished: &str, timeline: u32, end_lsn: &str) -> Manifest {
        let mut manifest = sample(at(started), "ledger", Status::Ok);
        manifest.finished_at = finished.to_owned();
        manifest.kind = "physical".to_owned();
        manifest.schedule = "base".to_owned();
        manifest.id = manifest.id.replace("nightly", "base");
        manifest.base_backup = Some(BaseBackup {
            timeline,
            start_lsn: "0/1000028".to_owned(),
            end_lsn: end_lsn.to_owned(),
            start_wal: format!("{timeline:08X}0000000000000001"),
            wal_segment_bytes: 16 << 20,
            system_identifier: "1".to_owned(),
        });
        manifest
    }

    fn archive(oldest: &str, newest: &str, at: &str) -> ArchiveState {
        ArchiveState {
            oldest_segment: Some(oldest.to_owned()),
            newest_segment: Some(newest.to_owned()),
            newest_at: Some(at.to_owned()),
        }
    }

    fn manifests() -> Vec<Manifest> {
        let mut failed = base(
            "2026-01-03T00:00:00Z",
            "2026-01-03T00:01:00Z",
            1,
            "0/9000000",
        );
        failed.status = Status::Failed;
        vec![
            base(
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:01:00Z",
                1,
                "0/3000100",
            ),
            base(
                "2026-01-02T00:00:00Z",
                "2026-01-02T00:01:00Z",
                1,
                "0/5000100",
            ),
            failed,
            sample(at("2026-01-02T12:00:00Z"), "ledger", Status::Ok),
        ]
    }

    #[test]
    fn the_window_runs_from_the_oldest_usable_base_backup_to_the_newest_wal() {
        let manifests = manifests();
        let state = archive(
            "000000010000000000000002",
            "000000010000000000000007",
            "2026-01-04T10:00:00Z",
        );
        let window = recoverable_window(&manifests, &state).expect("a window");
        assert_eq!(window.from, "2026-01-01T00:01:00Z");
        assert_eq!(window.from_backup, "20260101T000000Z-base");
        assert_eq!(window.from_lsn, "0/3000100");
        assert_eq!(window.to, "2026-01-04T10:00:00Z");
        assert_eq!(window.to_lsn_bound.as_deref(), Some("0/8000000"));
        assert_eq!(window.timeline, 1);
        // Retention removed the WAL the first base backup ended in.
        let pruned = archive(
            "000000010000000000000004",
            "000000010000000000000007",
            "2026-01-04T10:00:00Z",
        );
        let window = recoverable_window(&manifests, &pruned).expect("a window");
        assert_eq!(window.from_backup, "20260102T000000Z-base");
    }

    #[test]
    fn after_a_restore_to_a_point_in_time_the_old_timeline_leaves_the_window() {
        let mut manifests = manifests();
        let state = archive(
            "000000020000000000000006",
            "000000020000000000000006",
            "2026-01-05T10:00:00Z",
        );
        assert_eq!(
            recoverable_window(&manifests, &state),
            Err(NoWindow::NoBaseBackupInArchive { timeline: 2 })
        );
        manifests.push(base(
            "2026-01-05T09:00:00Z",
            "2026-01-05T09:00:02Z",
            2,
            "0/6000100",
        ));
        let window = recoverable_window(&manifests, &state).expect("a window");
        assert_eq!(window.from_backup, "20260105T090000Z-base");
        assert_eq!(window.timeline, 2);
        assert_eq!(
            recoverable_window(&manifests, &ArchiveState::default()),
            Err(NoWindow::NoWal)
        );
        assert_eq!(
            recoverable_window(&manifests[3..4], &state),
            Err(NoWindow::NoBaseBackup)
        );
    }

    #[test]
    fn the_newest_base_backup_consistent_before_the_target_is_chosen() {
        let manifests = manifests();
        let state = archive(
            "000000010000000000000001",
            "000000010000000000000009",
            "2026-01-04T10:00:00Z",
        );
        let chosen = |target: RecoveryTarget| {
            base_backup_for("ledger", &manifests, &state, &target).map(|m| m.id.clone())
        };
        let time = |text: &str| RecoveryTarget::Time(at(text));
        assert_eq!(
            chosen(RecoveryTarget::Latest).as_deref(),
            Ok("20260102T000000Z-base")
        );
        assert_eq!(
            chosen(time("2026-01-02T00:00:30Z")).as_deref(),
            Ok("20260101T000000Z-base")
        );
        // Finished at 00:01:00 (rounded down): consistent by 00:01:01.
        assert_eq!(
            chosen(time("2026-01-02T00:01:00.5Z")).as_deref(),
            Ok("20260101T000000Z-base")
        );
        assert_eq!(
            chosen(time("2026-01-02T00:01:01Z")).as_deref(),
            Ok("20260102T000000Z-base")
        );
        let lsn = |text: &str| RecoveryTarget::Lsn(text.to_owned());
        assert_eq!(
            chosen(lsn("0/4000000")).as_deref(),
            Ok("20260101T000000Z-base")
        );
        assert_eq!(
            chosen(lsn("0/5000100")).as_deref(),
            Ok("20260102T000000Z-base")
        );
        let before = chosen(time("2025-12-31T00:00:00Z")).expect_err("before the window");
        assert!(
            before.contains("before the oldest base backup's end")
                && before.contains("from 2026-01-01 00:01:00 (base backup `20260101T000000Z-base`"),
            "{before}"
        );
        // The newest WAL was written at 10:00:00 (rounded down).
        assert!(chosen(time("2026-01-04T10:00:00.9Z")).is_ok());
        let after = chosen(time("2026-01-04T10:00:01Z")).expect_err("after the window");
        assert!(
            after.contains("after the last archived WAL")
                && after.contains("to 2026-01-04 10:00:00 UTC"),
            "{after}"
        );
        assert!(chosen(lsn("0/9FFFFFF")).is_ok());
        assert!(chosen(lsn("0/A000000")).is_err());
    }

    #[test]
    fn a_target_time_needs_its_zone() {
        let parsed = |text: &str| parse_target_time(text).map(|time| time.to_rfc3339());
        assert_eq!(
            parsed("2026-11-29 12:00:00+00").as_deref(),
            Ok("2026-11-29T12:00:00+00:00")
        );
        assert_eq!(
            parsed("2026-11-29T13:00:00.25+01:00").as_deref(),
            Ok("2026-11-29T12:00:00.250+00:00")
        );
        assert_eq!(
            parsed("2026-11-29T12:00:00Z").as_deref(),
            Ok("2026-11-29T12:00:00+00:00")
        );
        assert!(parsed("2026-11-29 12:00:00").is_err());
        assert!(parsed("yesterday").is_err());
    }
}
