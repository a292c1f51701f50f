//! When backups are due: a schedule's cron expression parsed as
//! `validate` parses it (five fields, no seconds, no year), with croner.

use anyhow::Context;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::model::BackupSchedule;

pub(super) fn cron_of(schedule: &BackupSchedule) -> anyhow::Result<Cron> {
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
