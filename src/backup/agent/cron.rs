//! When backups are due: each schedule's cron expression parsed as
//! `validate` parses it (five fields, no seconds, no year), with croner,
//! and which schedules run next after a given moment. Pure: the clock is
//! the caller's.

use anyhow::Context;
use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::backup::AgentConfig;
use crate::model::BackupSchedule;

fn cron_of(schedule: &BackupSchedule) -> anyhow::Result<Cron> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(&schedule.cron)
        .with_context(|| {
            format!(
                "schedule `{}` has an invalid cron expression `{}`",
                schedule.name, schedule.cron
            )
        })
}

/// An agent's schedules with their parsed cron expressions, in name order.
pub(super) struct Schedules<'a>(Vec<(&'a BackupSchedule, Cron)>);

/// What runs next after a moment.
#[derive(Debug, PartialEq)]
pub(super) struct Next<'a> {
    /// The earliest next run time and every schedule due then, in name
    /// order; `None` when no schedule has a next run time.
    pub due: Option<(DateTime<Utc>, Vec<&'a BackupSchedule>)>,
    /// Schedules without a next run time, with croner's reason.
    pub stuck: Vec<(&'a BackupSchedule, String)>,
}

impl<'a> Schedules<'a> {
    /// Parses every schedule of `config`; an invalid expression is the error.
    pub fn parse(config: &'a AgentConfig) -> anyhow::Result<Self> {
        config
            .schedules
            .values()
            .map(|schedule| Ok((schedule, cron_of(schedule)?)))
            .collect::<anyhow::Result<Vec<_>>>()
            .map(Schedules)
    }

    /// The schedules as the agent announces them: `nightly `0 2 * * *``.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|(schedule, _)| format!("{} `{}`", schedule.name, schedule.cron))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// What runs next strictly after `after`, so a time just run is never
    /// due again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Next<'a> {
        let mut times = Vec::new();
        let mut stuck = Vec::new();
        for (schedule, cron) in &self.0 {
            match cron.find_next_occurrence(&after, false) {
                Ok(next) => times.push((*schedule, next)),
                Err(error) => stuck.push((*schedule, error.to_string())),
            }
        }
        let due = times.iter().map(|(_, time)| *time).min().map(|next| {
            let schedules = times
                .iter()
                .filter(|(_, time)| *time == next)
                .map(|(schedule, _)| *schedule)
                .collect();
            (next, schedules)
        });
        Next { due, stuck }
    }
}

/// How many upcoming runs `period` looks at: enough to see a week of a
/// schedule that skips the weekend.
const PERIOD_SAMPLES: usize = 16;

/// The longest wait between two runs of a cron expression among the next
/// few after `from`, in seconds: how old the newest backup of the schedule
/// may get. `None` for an expression that does not parse or never runs
/// twice.
pub fn period(expression: &str, from: DateTime<Utc>) -> Option<i64> {
    let schedule = BackupSchedule {
        cron: crate::units::check_cron(expression).ok()?,
        ..BackupSchedule::default()
    };
    let cron = cron_of(&schedule).ok()?;
    let times: Vec<DateTime<Utc>> = cron.iter_after(from).take(PERIOD_SAMPLES + 1).collect();
    times
        .windows(2)
        .map(|pair| (pair[1] - pair[0]).num_seconds())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_is_the_longest_wait_between_runs() {
        let from = at("2026-01-05T12:00:00Z");
        assert_eq!(period("0 2 * * *", from), Some(86_400));
        assert_eq!(period("@hourly", from), Some(3600));
        assert_eq!(period("*/15 * * * *", from), Some(900));
        // Weekdays only: Friday to Monday is the longest wait.
        assert_eq!(period("0 2 * * 1-5", from), Some(3 * 86_400));
        assert_eq!(period("not cron", from), None);
    }
    use crate::backup::agent::fixtures::{at, config_with};

    /// An agent with schedules of these names and cron expressions.
    fn agent(schedules: &[(&str, &str)]) -> AgentConfig {
        config_with(schedules.iter().map(|(name, cron)| BackupSchedule {
            name: (*name).to_owned(),
            cron: (*cron).to_owned(),
            ..BackupSchedule::default()
        }))
    }

    /// The next due time and the names due then.
    fn due(next: &Next<'_>) -> Option<(String, Vec<String>)> {
        next.due.as_ref().map(|(time, schedules)| {
            (
                time.to_rfc3339(),
                schedules
                    .iter()
                    .map(|schedule| schedule.name.clone())
                    .collect(),
            )
        })
    }

    fn due_at(time: &str, names: &[&str]) -> Option<(String, Vec<String>)> {
        Some((
            at(time).to_rfc3339(),
            names.iter().map(|name| (*name).to_owned()).collect(),
        ))
    }

    #[test]
    fn a_schedule_runs_at_its_next_time_and_not_twice() {
        let config = agent(&[("nightly", "0 2 * * *")]);
        let schedules = Schedules::parse(&config).expect("valid schedules");
        assert_eq!(
            due(&schedules.next_after(at("2026-01-01T01:59:30Z"))),
            due_at("2026-01-01T02:00:00Z", &["nightly"])
        );
        // The time a backup has just run is not due again.
        assert_eq!(
            due(&schedules.next_after(at("2026-01-01T02:00:00Z"))),
            due_at("2026-01-02T02:00:00Z", &["nightly"])
        );
    }

    #[test]
    fn schedules_due_at_the_same_minute_run_together_in_name_order() {
        // 2026-01-01 is a Thursday; `weekly` runs on Sundays.
        let config = agent(&[
            ("weekly", "0 2 * * 0"),
            ("nightly", "0 2 * * *"),
            ("hourly", "0 * * * *"),
        ]);
        let schedules = Schedules::parse(&config).expect("valid schedules");
        assert_eq!(
            due(&schedules.next_after(at("2026-01-01T01:30:00Z"))),
            due_at("2026-01-01T02:00:00Z", &["hourly", "nightly"])
        );
        assert_eq!(
            due(&schedules.next_after(at("2026-01-01T02:00:00Z"))),
            due_at("2026-01-01T03:00:00Z", &["hourly"])
        );
        assert_eq!(
            due(&schedules.next_after(at("2026-01-04T01:00:00Z"))),
            due_at("2026-01-04T02:00:00Z", &["hourly", "nightly", "weekly"])
        );
        assert_eq!(
            schedules.describe(),
            "hourly `0 * * * *`, nightly `0 2 * * *`, weekly `0 2 * * 0`"
        );
    }

    #[test]
    fn the_dialect_is_the_one_validate_accepts() {
        let config = agent(&[
            ("daily", "@daily"),
            ("last", "0 3 L * *"),
            ("second_monday", "0 4 * * MON#2"),
        ]);
        let schedules = Schedules::parse(&config).expect("valid schedules");
        let after = at("2026-02-10T12:00:00Z");
        let next = |name: &str| {
            schedules
                .0
                .iter()
                .find(|(schedule, _)| schedule.name == name)
                .and_then(|(_, cron)| cron.find_next_occurrence(&after, false).ok())
                .map(|time| time.to_rfc3339())
        };
        assert_eq!(next("daily"), Some(at("2026-02-11T00:00:00Z").to_rfc3339()));
        assert_eq!(next("last"), Some(at("2026-02-28T03:00:00Z").to_rfc3339()));
        assert_eq!(
            next("second_monday"),
            Some(at("2026-03-09T04:00:00Z").to_rfc3339())
        );
        // Seconds and years are not part of it.
        for cron in ["0 0 2 * * *", "0 2 * * * 2026"] {
            let error = Schedules::parse(&agent(&[("nightly", "0 2 * * *"), ("odd", cron)]))
                .err()
                .map(|error| error.to_string());
            assert_eq!(
                error.as_deref(),
                Some(format!("schedule `odd` has an invalid cron expression `{cron}`").as_str())
            );
        }
    }

    #[test]
    fn a_schedule_that_never_comes_is_reported_and_the_others_still_run() {
        let config = agent(&[("never", "0 0 30 2 *"), ("nightly", "0 2 * * *")]);
        let schedules = Schedules::parse(&config).expect("valid schedules");
        let next = schedules.next_after(at("2026-01-01T03:00:00Z"));
        assert_eq!(due(&next), due_at("2026-01-02T02:00:00Z", &["nightly"]));
        let stuck: Vec<&str> = next
            .stuck
            .iter()
            .map(|(schedule, _)| schedule.name.as_str())
            .collect();
        assert_eq!(stuck, ["never"]);

        let only = agent(&[("never", "0 0 30 2 *")]);
        let schedules = Schedules::parse(&only).expect("valid schedules");
        assert_eq!(schedules.next_after(at("2026-01-01T03:00:00Z")).due, None);
    }
}
