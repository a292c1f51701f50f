//! What the agent's tests share: times, agent configurations, manifest
//! file entries and backup directories on disk.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::backup::AgentConfig;
use crate::backup::manifest::{self, FileEntry, MANIFEST_FILE, Status};
use crate::model::BackupSchedule;

/// A time written in RFC 3339, in UTC.
pub fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("an RFC 3339 time")
        .with_timezone(&Utc)
}

/// A file of a backup as a manifest lists it.
pub fn file(path: &str, size_bytes: u64, sha256: &str) -> FileEntry {
    FileEntry {
        path: path.to_owned(),
        size_bytes,
        sha256: sha256.to_owned(),
    }
}

/// The agent of deployment `ledger` with one schedule, `nightly`, that
/// keeps one backup.
pub fn config() -> AgentConfig {
    config_with([BackupSchedule {
        name: "nightly".to_owned(),
        max_count: Some(1),
        ..BackupSchedule::default()
    }])
}

/// The agent of deployment `ledger` with `schedules`.
pub fn config_with(schedules: impl IntoIterator<Item = BackupSchedule>) -> AgentConfig {
    AgentConfig {
        deployment: "ledger".to_owned(),
        server: "ledger-postgres".to_owned(),
        port: 5432,
        superuser: "postgres".to_owned(),
        schedules: schedules
            .into_iter()
            .map(|schedule| (schedule.name.clone(), schedule))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// A backup directory with a manifest for `deployment`.
pub fn write_backup(root: &Path, id: &str, deployment: &str, status: Status) {
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

/// The names in `root`, sorted.
pub fn directory_names(root: &Path) -> Vec<String> {
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
