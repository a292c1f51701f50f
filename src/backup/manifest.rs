//! What a backup says about itself: a `manifest.json` next to its dump
//! files, and how a destination's backup directories are read.
//!
//! A backup is a directory `<destination>/<id>/` where the id is the UTC
//! start time and the schedule (`20260102T030405Z-nightly`). The manifest is
//! written last, through a rename, so a directory without one is a backup
//! that never finished. `prune` decides which of them retention removes.

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
    /// What a `physical` backup (`pg_basebackup`) covers of the WAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_backup: Option<BaseBackup>,
    pub databases: Vec<DatabaseEntry>,
    pub files: Vec<FileEntry>,
    pub size_bytes: u64,
    /// The last `pgspec backup verify` of this backup, recorded after it
    /// (the manifest is otherwise written once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// What a `pgspec backup verify` found, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// RFC 3339, UTC: when the verification finished.
    pub verified_at: String,
    pub ok: bool,
    pub checks: u64,
    pub failed: u64,
    pub pgspec_version: String,
}

impl Verification {
    /// When it finished, or `None` when the text is not RFC 3339.
    pub fn at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.verified_at)
            .ok()
            .map(|time| time.with_timezone(&Utc))
    }
}

impl Manifest {
    /// The start time, or `None` when the manifest's text is not RFC 3339.
    pub fn started(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.started_at)
            .ok()
            .map(|time| time.with_timezone(&Utc))
    }
}

/// The WAL a base backup needs, from `pg_basebackup`'s `backup_manifest`:
/// recovery starts at `start_lsn` and is consistent from `end_lsn` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseBackup {
    pub timeline: u32,
    pub start_lsn: String,
    pub end_lsn: String,
    /// The WAL segment holding `start_lsn`: the oldest one this backup
    /// needs, and the oldest retention keeps while the backup is kept.
    pub start_wal: String,
    pub wal_segment_bytes: u64,
    /// `pg_control_system()`'s system identifier of the cluster backed up.
    pub system_identifier: String,
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
pub(crate) fn sort_key(entry: &Entry) -> (Option<DateTime<Utc>>, &str) {
    (
        entry.manifest.as_ref().and_then(Manifest::started),
        entry.id.as_str(),
    )
}

/// A manifest of schedule `nightly` for `deployment`, started (and
/// finished) at `started`, for the tests of retention and of the agent.
#[cfg(test)]
pub(crate) fn sample(started: DateTime<Utc>, deployment: &str, status: Status) -> Manifest {
    Manifest {
        format_version: MANIFEST_VERSION,
        id: backup_id(started, "nightly"),
        deployment: deployment.to_owned(),
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
        base_backup: None,
        databases: Vec::new(),
        files: Vec::new(),
        size_bytes: 0,
        verification: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0)
            .single()
            .expect("valid time")
    }

    #[test]
    fn ids_name_their_schedule() {
        assert_eq!(schedule_of("20260102T030405Z-nightly"), Some("nightly"));
        assert_eq!(schedule_of("20260102T030405Z-a-b"), Some("a-b"));
        assert_eq!(schedule_of("lost+found"), None);
        assert_eq!(backup_id(now(), "x"), "20261122T030000Z-x");
    }
}
