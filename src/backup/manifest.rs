//! What a backup says about itself: a `manifest.json` next to its dump
//! files, and the retention rule that decides which backups to remove.
//!
//! A backup is a directory `<destination>/<id>/` where the id is the UTC
//! start time and the schedule (`20260102T030405Z-nightly`). The manifest is
//! written last, through a rename, so a directory without one is a backup
//! that never finished. Retention is a pure function of the manifests and
//! the time, tested without a container.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the manifest format.
pub const MANIFEST_VERSION: u32 = 1;

/// The manifest's file name inside a backup directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// How a backup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every dump finished and was measured.
    Ok,
    /// A dump failed; `error` says why. The files are kept for diagnosis.
    Failed,
    /// No manifest: the backup was cut off (listing only, never written).
    Incomplete,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Incomplete => "incomplete",
        }
    }
}

/// One file of a backup, relative to the backup's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size_bytes: u64,
    pub sha256: String,
}

/// One dumped database.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseEntry {
    pub name: String,
    /// The dump: a file, or a directory for the `directory` format.
    pub dump: String,
    /// Rows per table (`schema.table`), counted in the snapshot the dump was
    /// taken from. Empty for schema-only backups.
    #[serde(default)]
    pub tables: BTreeMap<String, i64>,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub id: String,
    pub deployment: String,
    pub schedule: String,
    /// RFC 3339, UTC. Retention measures a backup's age from here.
    pub started_at: String,
    pub finished_at: String,
    pub kind: String,
    pub format: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `server_version` of the server dumped.
    #[serde(default)]
    pub server_version: String,
    pub pgspec_version: String,
    /// `pg_dumpall --globals-only` output, for `full` and `globals` kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals: Option<String>,
    pub databases: Vec<DatabaseEntry>,
    pub files: Vec<FileEntry>,
    pub size_bytes: u64,
}

impl Manifest {
    /// The start time, or `None` when the manifest's text is not RFC 3339.
    pub fn started(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.started_at)
            .ok()
            .map(|time| time.with_timezone(&Utc))
    }
}

/// A backup directory as `backup list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub status: Status,
    /// `None` for an incomplete backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
}

/// The schedule part of a backup id (`20260102T030405Z-nightly` →
/// `nightly`), for directories that have no manifest.
pub fn schedule_of(id: &str) -> Option<&str> {
    let (stamp, rest) = id.split_once('-')?;
    let looks_like_time = stamp.len() == 16 && stamp.ends_with('Z') && stamp.contains('T');
    looks_like_time.then_some(rest)
}

/// A backup id for a start time and schedule.
pub fn backup_id(started: DateTime<Utc>, schedule: &str) -> String {
    format!("{}-{schedule}", started.format("%Y%m%dT%H%M%SZ"))
}

/// Reads every backup directory under `root`, newest first. Directories
/// whose names are not backup ids are not pgspec's and are skipped.
pub fn read_all(root: &Path) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for item in std::fs::read_dir(root)? {
        let item = item?;
        let Some(id) = item.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !item.file_type()?.is_dir() || schedule_of(&id).is_none() {
            continue;
        }
        let manifest = std::fs::read(item.path().join(MANIFEST_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Manifest>(&bytes).ok());
        entries.push(Entry {
            status: manifest
                .as_ref()
                .map_or(Status::Incomplete, |manifest| manifest.status),
            id,
            manifest,
        });
    }
    entries.sort_by(|left, right| sort_key(right).cmp(&sort_key(left)));
    Ok(entries)
}

/// Newest first: by manifest start time, then id.
fn sort_key(entry: &Entry) -> (Option<DateTime<Utc>>, &str) {
    (
        entry.manifest.as_ref().and_then(Manifest::started),
        entry.id.as_str(),
    )
}

/// How long backups of one schedule are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub days: Option<i64>,
    pub max_count: Option<i64>,
    pub min_count: Option<i64>,
}

/// The ids retention removes from one schedule's backups.
///
/// Newest first, the newest `min_count` successful backups are always
/// kept, whatever their age. Any other backup goes when it is older than
/// `days`, or when `max_count` newer ones are already kept. An incomplete
/// backup (no manifest) goes too: the caller holds the destination's lock,
/// so no backup is in progress.
pub fn select_pruned(entries: &[Entry], retention: Retention, now: DateTime<Utc>) -> Vec<String> {
    let mut ordered: Vec<&Entry> = entries.iter().collect();
    ordered.sort_by(|left, right| sort_key(right).cmp(&sort_key(left)));
    let min_count = retention.min_count.unwrap_or(0).max(0);
    let mut protected = 0;
    let mut kept = 0;
    let mut pruned = Vec::new();
    for entry in ordered {
        let Some(manifest) = &entry.manifest else {
            pruned.push(entry.id.clone());
            continue;
        };
        if manifest.status == Status::Ok && protected < min_count {
            protected += 1;
            kept += 1;
            continue;
        }
        let too_old = match (retention.days, manifest.started()) {
            (Some(days), Some(started)) => {
                now.signed_duration_since(started).num_seconds() > days * 86_400
            }
            _ => false,
        };
        let too_many = retention.max_count.is_some_and(|max| kept >= max);
        if too_old || too_many {
            pruned.push(entry.id.clone());
        } else {
            kept += 1;
        }
    }
    pruned
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn entry(days_ago: i64, status: Status, now: DateTime<Utc>) -> Entry {
        let started = now - chrono::Duration::days(days_ago);
        let id = backup_id(started, "nightly");
        Entry {
            id: id.clone(),
            status,
            manifest: Some(Manifest {
                format_version: MANIFEST_VERSION,
                id,
                deployment: "ledger".to_owned(),
                schedule: "nightly".to_owned(),
                started_at: started.to_rfc3339(),
                finished_at: started.to_rfc3339(),
                kind: "full".to_owned(),
                format: "custom".to_owned(),
                status,
                error: None,
                server_version: "17.0".to_owned(),
                pgspec_version: "0".to_owned(),
                globals: None,
                databases: Vec::new(),
                files: Vec::new(),
                size_bytes: 0,
            }),
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0)
            .single()
            .expect("valid time")
    }

    fn days_of(pruned: &[String], entries: &[Entry]) -> Vec<usize> {
        entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| pruned.contains(&entry.id))
            .map(|(index, _)| index)
            .collect()
    }

    #[test]
    fn old_backups_go_but_the_newest_min_count_stay() {
        let now = now();
        // Newest 40 days old: every one is past 30 days.
        let entries: Vec<Entry> = (40..46).map(|days| entry(days, Status::Ok, now)).collect();
        let retention = Retention {
            days: Some(30),
            max_count: None,
            min_count: Some(3),
        };
        let pruned = select_pruned(&entries, retention, now);
        assert_eq!(days_of(&pruned, &entries), [3, 4, 5]);
    }

    #[test]
    fn young_backups_stay_and_max_count_caps_them() {
        let now = now();
        let entries: Vec<Entry> = (0..6).map(|days| entry(days, Status::Ok, now)).collect();
        let keep_all = Retention {
            days: Some(30),
            max_count: None,
            min_count: Some(3),
        };
        assert!(select_pruned(&entries, keep_all, now).is_empty());
        let capped = Retention {
            days: None,
            max_count: Some(4),
            min_count: None,
        };
        assert_eq!(
            days_of(&select_pruned(&entries, capped, now), &entries),
            [4, 5]
        );
    }

    #[test]
    fn failed_and_incomplete_backups_do_not_count_towards_min_count() {
        let now = now();
        let mut entries = vec![
            entry(31, Status::Failed, now),
            entry(32, Status::Ok, now),
            entry(33, Status::Ok, now),
            entry(34, Status::Ok, now),
            entry(35, Status::Ok, now),
        ];
        entries.push(Entry {
            id: "20261001T000000Z-nightly".to_owned(),
            status: Status::Incomplete,
            manifest: None,
        });
        let retention = Retention {
            days: Some(30),
            max_count: None,
            min_count: Some(3),
        };
        let pruned = select_pruned(&entries, retention, now);
        assert_eq!(days_of(&pruned, &entries), [0, 4, 5]);
    }

    #[test]
    fn ids_name_their_schedule() {
        assert_eq!(schedule_of("20260102T030405Z-nightly"), Some("nightly"));
        assert_eq!(schedule_of("20260102T030405Z-a-b"), Some("a-b"));
        assert_eq!(schedule_of("lost+found"), None);
        assert_eq!(backup_id(now(), "x"), "20261122T030000Z-x");
    }
}
