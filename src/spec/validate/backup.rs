//! Checks of the `backup` section: schedules, cron expressions, retention
//! and where the dumps go.

use std::collections::{BTreeMap, BTreeSet};

use super::checker::{Checker, is_docker_name};
use crate::spec::file::{BackupSpec, RetentionSpec, SpecFile};
use crate::spec::load::{join_index, join_key};
use crate::units;

impl Checker<'_> {
    pub(super) fn check_retention(&mut self, path: &str, retention: &Option<RetentionSpec>) {
        if let Some(retention) = retention {
            for (field, value) in [
                ("days", retention.days),
                ("max_count", retention.max_count),
                ("min_count", retention.min_count),
            ] {
                self.check_at_least(&join_key(path, field), value, 0, &format!("`{field}`"));
            }
        }
    }

    pub(super) fn check_cron(&mut self, path: &str, expression: &str) {
        if let Err(error) = units::check_cron(expression) {
            self.error(path, error.message).help = error.help;
        }
    }

    pub(super) fn check_backup(&mut self, file: &SpecFile, backup: &BackupSpec) {
        match (&backup.schedule, backup.schedules.is_empty()) {
            (Some(_), false) => {
                self.error(
                    "backup.schedules",
                    "`backup` takes `schedule` or `schedules`, not both",
                )
                .help =
                    Some("move the single `schedule` into `schedules` with a `name`".to_owned());
            }
            (None, true) => {
                self.error("backup", "`backup` needs a `schedule` or `schedules`")
                    .help = Some("for a nightly dump: `schedule: \"0 2 * * *\"`".to_owned());
            }
            _ => {}
        }
        if let Some(schedule) = &backup.schedule {
            self.check_cron("backup.schedule", schedule);
        }
        self.check_retention("backup.retention", &backup.retention);
        match (&backup.destination.volume, &backup.destination.directory) {
            (Some(_), Some(_)) => {
                self.error(
                    "backup.destination",
                    "a backup destination takes `volume` or `directory`, not both",
                );
            }
            (None, None) => {
                self.error(
                    "backup.destination",
                    "a backup destination needs `volume` or `directory`",
                );
            }
            (Some(volume), None) if !is_docker_name(volume) => {
                self.error(
                    "backup.destination.volume",
                    format!("volume name `{volume}` is not a valid Docker name"),
                );
            }
            _ => {}
        }
        let declared: BTreeSet<&str> = file
            .databases
            .iter()
            .map(|database| database.name.as_str())
            .collect();
        let check_databases = |checker: &mut Self, path: &str, databases: &[String]| {
            for (index, name) in databases.iter().enumerate() {
                if !declared.contains(name.as_str()) {
                    checker.warning(
                        &join_index(path, index),
                        format!("backup of database `{name}`, which the spec does not declare"),
                    );
                }
            }
        };
        check_databases(self, "backup.databases", &backup.databases);
        let mut seen = BTreeMap::new();
        for (index, schedule) in backup.schedules.iter().enumerate() {
            let path = join_index("backup.schedules", index);
            let name_path = join_key(&path, "name");
            if !is_docker_name(&schedule.name) {
                self.error(
                    &name_path,
                    format!("schedule name `{}` is not a plain name", schedule.name),
                )
                .help = Some(
                    "use letters, digits, `_`, `.` and `-`, starting with a letter or digit"
                        .to_owned(),
                );
            }
            self.check_duplicate(&mut seen, &name_path, &schedule.name, "backup schedule");
            self.check_cron(&join_key(&path, "schedule"), &schedule.schedule);
            self.check_retention(&join_key(&path, "retention"), &schedule.retention);
            check_databases(self, &join_key(&path, "databases"), &schedule.databases);
        }
    }
}
