//! Which backups retention removes: a pure function of the manifests and
//! the time, tested without a container.

use chrono::{DateTime, Utc};

use super::manifest::{Entry, Status, sort_key};

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
    use crate::backup::manifest::{MANIFEST_VERSION, Manifest, backup_id};
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
}
