//! Which backups retention removes: a pure function of the manifests and
//! the time, tested without a container.

use chrono::{DateTime, TimeDelta, Utc};

use super::manifest::{Entry, Status, sort_key};

/// How long backups of one schedule are kept, as the spec says it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub days: Option<i64>,
    pub max_count: Option<i64>,
    pub min_count: Option<i64>,
}

/// Whose backups one prune may remove.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub deployment: &'a str,
    pub schedule: &'a str,
    /// The backup this run has just taken: kept when it succeeded, whatever
    /// the clock or the retention says.
    pub just_taken: Option<&'a str>,
}

impl Scope<'_> {
    /// A backup is this scope's only when its manifest says so, under the
    /// directory's own name. A directory without a manifest, with one that
    /// cannot be read, or with another deployment's or schedule's is never
    /// this scope's, whatever its name.
    fn owns(&self, entry: &Entry) -> bool {
        entry.manifest.as_ref().is_some_and(|manifest| {
            manifest.deployment == self.deployment
                && manifest.schedule == self.schedule
                && manifest.id == entry.id
        })
    }
}

/// The ids retention removes among the backups in a destination.
///
/// Only backups the scope owns are ever selected (see [`Scope::owns`]).
/// Among them, newest first:
///
/// - the newest `min_count` successful backups are kept whatever their age,
///   and never fewer than one, even when the spec says `min_count: 0`; so is
///   the backup just taken when it succeeded;
/// - age is counted back from the newest successful backup's start, or from
///   `now` when that is earlier. A run of failed backups therefore ages
///   nothing, and a clock that jumps ahead ages nothing beyond what the
///   successful backups' own start times show; the newest `min_count` stay
///   whatever the clock says;
/// - any other successful backup goes when it started more than `days`
///   before that reference, or when `max_count` newer successful ones are
///   already kept;
/// - a failed backup goes by the same age, or when `max_count` newer failed
///   ones are kept: failed backups never count towards the successful
///   ones' `max_count`, so they cannot push a good backup out.
///
/// A backup cut off before it finished has no manifest, so it is never
/// selected; `backup list` shows it as incomplete.
///
/// A limit below what `validate` accepts (`days` or `max_count` under 1) is
/// no limit, and a negative `min_count` is the default of one: they can
/// only come from a configuration `validate` never saw, and keeping more
/// is the safe reading. Time arithmetic is checked; a
/// limit beyond what a time can express keeps everything.
pub fn select_pruned(
    entries: &[Entry],
    scope: &Scope<'_>,
    retention: Retention,
    now: DateTime<Utc>,
) -> Vec<String> {
    let mut owned: Vec<&Entry> = entries.iter().filter(|entry| scope.owns(entry)).collect();
    owned.sort_by(|left, right| sort_key(right).cmp(&sort_key(left)));
    let newest_good_start = owned
        .iter()
        .filter(|entry| entry.status == Status::Ok)
        .find_map(|entry| {
            entry
                .manifest
                .as_ref()
                .and_then(|manifest| manifest.started())
        });
    let reference = newest_good_start.map_or(now, |started| started.min(now));
    let cutoff = retention
        .days
        .filter(|days| *days >= 1)
        .and_then(TimeDelta::try_days)
        .and_then(|days| reference.checked_sub_signed(days));
    let max_count = retention
        .max_count
        .filter(|max| *max >= 1)
        .map(|max| usize::try_from(max).unwrap_or(usize::MAX));
    let min_count = retention
        .min_count
        .and_then(|min| usize::try_from(min).ok())
        .unwrap_or(1)
        .max(1);

    let mut good_kept = 0usize;
    let mut failed_kept = 0usize;
    let mut pruned = Vec::new();
    for entry in owned {
        let started = entry
            .manifest
            .as_ref()
            .and_then(|manifest| manifest.started());
        let too_old =
            matches!((cutoff, started), (Some(cutoff), Some(started)) if started < cutoff);
        let kept = match entry.status {
            Status::Ok => &mut good_kept,
            // pgspec never writes `incomplete` into a manifest; one that
            // says so is kept or removed like a failed backup.
            Status::Failed | Status::Incomplete => &mut failed_kept,
        };
        let protected = entry.status == Status::Ok
            && (*kept < min_count || scope.just_taken == Some(entry.id.as_str()));
        let too_many = max_count.is_some_and(|max| *kept >= max);
        if protected || !(too_old || too_many) {
            *kept += 1;
        } else {
            pruned.push(entry.id.clone());
        }
    }
    pruned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::manifest::{self, Manifest};
    use chrono::TimeZone;
    use proptest::prelude::*;

    const SCOPE: Scope<'static> = Scope {
        deployment: "ledger",
        schedule: "nightly",
        just_taken: None,
    };

    fn backup(started: DateTime<Utc>, status: Status) -> Entry {
        let manifest = manifest::sample(started, "ledger", status);
        Entry {
            id: manifest.id.clone(),
            status,
            manifest: Some(manifest),
        }
    }

    fn entry(days_ago: i64, status: Status, now: DateTime<Utc>) -> Entry {
        backup(now - TimeDelta::days(days_ago), status)
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0)
            .single()
            .expect("valid time")
    }

    fn retention(days: Option<i64>, max_count: Option<i64>, min_count: Option<i64>) -> Retention {
        Retention {
            days,
            max_count,
            min_count,
        }
    }

    /// Positions in `entries` of the pruned ids.
    fn positions(pruned: &[String], entries: &[Entry]) -> Vec<usize> {
        entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| pruned.contains(&entry.id))
            .map(|(index, _)| index)
            .collect()
    }

    fn pruned_positions(entries: &[Entry], retention: Retention, now: DateTime<Utc>) -> Vec<usize> {
        positions(&select_pruned(entries, &SCOPE, retention, now), entries)
    }

    #[test]
    fn old_backups_go_but_the_newest_min_count_stay() {
        let now = now();
        // Newest 40 days old: every one is past 30 days, counted from now.
        let entries: Vec<Entry> = (40..46).map(|days| entry(days, Status::Ok, now)).collect();
        let pruned = pruned_positions(&entries, retention(Some(30), None, Some(3)), now);
        // Counted from the newest (40 days), only 46..=45 are past 30 days.
        assert_eq!(pruned, [] as [usize; 0]);
        let later: Vec<Entry> = [0, 40, 41, 42, 43]
            .into_iter()
            .map(|days| entry(days, Status::Ok, now))
            .collect();
        let pruned = pruned_positions(&later, retention(Some(30), None, Some(3)), now);
        assert_eq!(pruned, [3, 4]);
    }

    #[test]
    fn young_backups_stay_and_max_count_caps_them() {
        let now = now();
        let entries: Vec<Entry> = (0..6).map(|days| entry(days, Status::Ok, now)).collect();
        let keep_all = retention(Some(30), None, Some(3));
        assert!(pruned_positions(&entries, keep_all, now).is_empty());
        let capped = retention(None, Some(4), None);
        assert_eq!(pruned_positions(&entries, capped, now), [4, 5]);
    }

    /// Issue 15: `days: 999999999999999` overflowed, every backup counted
    /// as too old and, with no `min_count`, all went, the new one included.
    #[test]
    fn days_beyond_any_time_keep_everything() {
        let now = now();
        let entries: Vec<Entry> = (0..5).map(|days| entry(days, Status::Ok, now)).collect();
        for days in [999_999_999_999_999, i64::MAX, 106_751_991_167_301] {
            assert!(
                pruned_positions(&entries, retention(Some(days), None, None), now).is_empty(),
                "days: {days}"
            );
        }
    }

    #[test]
    fn the_newest_good_backup_stays_even_with_min_count_zero() {
        let now = now();
        let entries = [
            entry(0, Status::Failed, now),
            entry(400, Status::Ok, now),
            entry(401, Status::Ok, now),
        ];
        for limits in [
            retention(Some(1), None, Some(0)),
            retention(None, Some(1), Some(0)),
            retention(Some(1), Some(1), None),
        ] {
            let pruned = pruned_positions(&entries, limits, now);
            assert!(!pruned.contains(&1), "{limits:?}: {pruned:?}");
        }
        // Limits validate rejects are no limits at all.
        assert!(pruned_positions(&entries, retention(Some(-5), Some(0), Some(-1)), now).is_empty());
    }

    #[test]
    fn failed_backups_do_not_count_towards_max_count() {
        let now = now();
        let entries = [
            entry(0, Status::Failed, now),
            entry(1, Status::Failed, now),
            entry(2, Status::Failed, now),
            entry(3, Status::Ok, now),
            entry(4, Status::Ok, now),
            entry(5, Status::Ok, now),
        ];
        // Two good and two failed stay.
        assert_eq!(
            pruned_positions(&entries, retention(None, Some(2), None), now),
            [2, 5]
        );
    }

    #[test]
    fn failed_backups_alone_age_no_good_one() {
        let now = now();
        // A month of failures after the last good backups: those are aged
        // from the newest good one, not from now. Only a failed backup
        // more than 30 days before the newest good one goes.
        let mut entries: Vec<Entry> = (0..40)
            .map(|days| entry(days, Status::Failed, now))
            .collect();
        entries.extend((40..43).map(|days| entry(days, Status::Ok, now)));
        entries.push(entry(75, Status::Failed, now));
        let pruned = pruned_positions(&entries, retention(Some(30), None, Some(1)), now);
        assert_eq!(pruned, [43]);
    }

    #[test]
    fn a_clock_far_ahead_keeps_the_newest_min_count() {
        let now = now();
        let entries: Vec<Entry> = (0..6).map(|days| entry(days, Status::Ok, now)).collect();
        let far = Utc
            .with_ymd_and_hms(9999, 1, 1, 0, 0, 0)
            .single()
            .expect("valid time");
        let limits = retention(Some(30), None, Some(2));
        assert!(pruned_positions(&entries, limits, far).is_empty());
        assert!(pruned_positions(&entries, limits, DateTime::<Utc>::MAX_UTC).is_empty());
        // A backup taken with the clock ahead ages the rest by the jump,
        // but the newest two stay.
        let mut jumped = vec![backup(far, Status::Ok)];
        jumped.extend(entries);
        assert_eq!(pruned_positions(&jumped, limits, far), [2, 3, 4, 5, 6]);
    }

    #[test]
    fn the_backup_just_taken_stays_when_the_clock_went_back() {
        let now = now();
        let far = Utc
            .with_ymd_and_hms(2090, 1, 1, 0, 0, 0)
            .single()
            .expect("valid time");
        // Two backups stamped by a clock that ran ahead, then one taken now.
        let entries = [
            backup(far, Status::Ok),
            backup(far - TimeDelta::days(1), Status::Ok),
            entry(0, Status::Ok, now),
        ];
        let scope = Scope {
            just_taken: Some(&entries[2].id),
            ..SCOPE
        };
        let pruned = select_pruned(&entries, &scope, retention(Some(30), Some(1), None), now);
        assert_eq!(positions(&pruned, &entries), [1]);
    }

    #[test]
    fn only_this_deployments_and_schedules_backups_can_go() {
        let now = now();
        let ours = entry(400, Status::Failed, now);
        let mut other_deployment = entry(401, Status::Failed, now);
        let mut other_schedule = entry(402, Status::Failed, now);
        let mut moved = entry(403, Status::Failed, now);
        if let Some(manifest) = &mut other_deployment.manifest {
            manifest.deployment = "other".to_owned();
        }
        if let Some(manifest) = &mut other_schedule.manifest {
            manifest.schedule = "weekly".to_owned();
        }
        // A manifest copied into a directory of another name.
        moved.id = "20200101T000000Z-nightly".to_owned();
        let stray = Entry {
            id: "20200102T000000Z-nightly".to_owned(),
            status: Status::Incomplete,
            manifest: None,
        };
        let mut cut_off = entry(404, Status::Incomplete, now);
        if let Some(manifest) = &mut cut_off.manifest {
            manifest.status = Status::Incomplete;
        }
        let entries = [
            entry(0, Status::Ok, now),
            ours,
            other_deployment,
            other_schedule,
            moved,
            stray,
            cut_off,
        ];
        let limits = retention(Some(1), Some(1), Some(1));
        assert_eq!(pruned_positions(&entries, limits, now), [1, 6]);
    }

    /// One backup directory of an arbitrary kind, for the properties.
    #[derive(Debug, Clone, Copy)]
    enum Kind {
        Ours,
        OtherDeployment,
        OtherSchedule,
        NoManifest,
        MovedManifest,
    }

    fn arbitrary_entries() -> impl Strategy<Value = Vec<Entry>> {
        let one = (
            -3_000_000_000i64..3_000_000_000,
            prop_oneof![
                Just(Status::Ok),
                Just(Status::Failed),
                Just(Status::Incomplete)
            ],
            prop_oneof![
                6 => Just(Kind::Ours),
                1 => Just(Kind::OtherDeployment),
                1 => Just(Kind::OtherSchedule),
                1 => Just(Kind::NoManifest),
                1 => Just(Kind::MovedManifest),
            ],
            proptest::bool::weighted(0.05),
        );
        proptest::collection::vec(one, 0..24).prop_map(|items| {
            items
                .into_iter()
                .enumerate()
                .map(|(index, (offset, status, kind, unreadable_time))| {
                    let started = now() + TimeDelta::seconds(offset);
                    let mut entry = backup(started, status);
                    // Unique ids, whatever the times.
                    entry.id = format!("{}-{index}", entry.id);
                    if let Some(manifest) = &mut entry.manifest {
                        manifest.id = entry.id.clone();
                        if unreadable_time {
                            manifest.started_at = "yesterday".to_owned();
                        }
                        match kind {
                            Kind::OtherDeployment => manifest.deployment = "other".to_owned(),
                            Kind::OtherSchedule => manifest.schedule = "weekly".to_owned(),
                            Kind::MovedManifest => manifest.id = "elsewhere".to_owned(),
                            Kind::Ours | Kind::NoManifest => {}
                        }
                    }
                    if matches!(kind, Kind::NoManifest) {
                        entry.manifest = None;
                        entry.status = Status::Incomplete;
                    }
                    entry
                })
                .collect()
        })
    }

    fn arbitrary_limit() -> impl Strategy<Value = Option<i64>> {
        prop_oneof![
            Just(None),
            (-3i64..40).prop_map(Some),
            any::<i64>().prop_map(Some),
        ]
    }

    fn arbitrary_now() -> impl Strategy<Value = DateTime<Utc>> {
        prop_oneof![
            (-3_000_000_000i64..3_000_000_000)
                .prop_map(|offset| now() + TimeDelta::seconds(offset)),
            Just(DateTime::<Utc>::MAX_UTC),
            Just(DateTime::<Utc>::MIN_UTC),
        ]
    }

    fn owned_good_newest_first(entries: &[Entry]) -> Vec<&Entry> {
        let mut good: Vec<&Entry> = entries
            .iter()
            .filter(|entry| entry.status == Status::Ok && SCOPE.owns(entry))
            .collect();
        good.sort_by(|left, right| sort_key(right).cmp(&sort_key(left)));
        good
    }

    fn good_pruned(entries: &[Entry], retention: Retention, now: DateTime<Utc>) -> Vec<String> {
        let good = owned_good_newest_first(entries);
        select_pruned(entries, &SCOPE, retention, now)
            .into_iter()
            .filter(|id| good.iter().any(|entry| entry.id == *id))
            .collect()
    }

    proptest! {
        #[test]
        fn nothing_outside_this_deployment_and_schedule_is_selected(
            entries in arbitrary_entries(),
            days in arbitrary_limit(),
            max_count in arbitrary_limit(),
            min_count in arbitrary_limit(),
            now in arbitrary_now(),
        ) {
            let pruned = select_pruned(&entries, &SCOPE, retention(days, max_count, min_count), now);
            for id in &pruned {
                let entry = entries.iter().find(|entry| entry.id == *id);
                let manifest = entry.and_then(|entry| entry.manifest.as_ref());
                prop_assert!(manifest.is_some_and(|manifest| manifest.deployment == "ledger"
                    && manifest.schedule == "nightly"
                    && manifest.id == *id), "{id} selected");
            }
        }

        #[test]
        fn the_newest_min_count_good_backups_always_survive(
            entries in arbitrary_entries(),
            days in arbitrary_limit(),
            max_count in arbitrary_limit(),
            min_count in arbitrary_limit(),
            now in arbitrary_now(),
            just_taken in any::<prop::sample::Index>(),
        ) {
            let good = owned_good_newest_first(&entries);
            let floor = min_count.and_then(|min| usize::try_from(min).ok()).unwrap_or(1).max(1);
            let taken = (!entries.is_empty()).then(|| entries[just_taken.index(entries.len())].id.as_str());
            let scope = Scope { just_taken: taken, ..SCOPE };
            let pruned = select_pruned(&entries, &scope, retention(days, max_count, min_count), now);
            for entry in good.iter().take(floor) {
                prop_assert!(!pruned.contains(&entry.id), "{} of the newest good went", entry.id);
            }
            if let Some(taken) = taken
                && good.iter().any(|entry| entry.id == taken)
            {
                prop_assert!(!pruned.iter().any(|id| id == taken), "the backup just taken went");
            }
        }

        #[test]
        fn a_failed_backup_never_makes_a_good_one_go(
            entries in arbitrary_entries(),
            days in arbitrary_limit(),
            max_count in arbitrary_limit(),
            min_count in arbitrary_limit(),
            now in arbitrary_now(),
        ) {
            let limits = retention(days, max_count, min_count);
            let without_failed: Vec<Entry> = entries
                .iter()
                .filter(|entry| entry.status != Status::Failed)
                .cloned()
                .collect();
            prop_assert_eq!(
                good_pruned(&entries, limits, now),
                good_pruned(&without_failed, limits, now)
            );
        }

        #[test]
        fn a_clock_ahead_of_the_newest_good_backup_removes_no_more(
            entries in arbitrary_entries(),
            days in arbitrary_limit(),
            max_count in arbitrary_limit(),
            min_count in arbitrary_limit(),
        ) {
            let limits = retention(days, max_count, min_count);
            let newest = owned_good_newest_first(&entries)
                .first()
                .and_then(|entry| entry.manifest.as_ref())
                .and_then(Manifest::started);
            if let Some(newest) = newest {
                prop_assert_eq!(
                    good_pruned(&entries, limits, DateTime::<Utc>::MAX_UTC),
                    good_pruned(&entries, limits, newest)
                );
            }
        }
    }
}
