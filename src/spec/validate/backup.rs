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
        if let Some(verify) = &backup.verify {
            self.check_cron("backup.verify", verify);
        }
        self.check_physical(backup);
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
            if let Some(verify) = &schedule.verify {
                self.check_cron(&join_key(&path, "verify"), verify);
            }
            check_databases(self, &join_key(&path, "databases"), &schedule.databases);
        }
    }

    /// `physical` schedules: one per deployment (one WAL stream, one
    /// replication slot), no dump format or databases; `max_lag` needs one.
    fn check_physical(&mut self, backup: &BackupSpec) {
        use crate::spec::file::BackupKind;
        let single = backup.schedule.as_ref().map(|_| {
            (
                "backup".to_owned(),
                backup.kind,
                backup.format.is_some(),
                !backup.databases.is_empty(),
            )
        });
        let listed = backup
            .schedules
            .iter()
            .enumerate()
            .map(|(index, schedule)| {
                (
                    join_index("backup.schedules", index),
                    schedule.kind.or(backup.kind),
                    schedule.format.or(backup.format).is_some(),
                    !schedule.databases.is_empty() || !backup.databases.is_empty(),
                )
            });
        let mut physical = 0;
        for (path, kind, format, databases) in single.into_iter().chain(listed) {
            if kind != Some(BackupKind::Physical) {
                continue;
            }
            physical += 1;
            if physical == 2 {
                self.error(
                    &join_key(&path, "kind"),
                    "only one schedule may be `physical`: a deployment has one WAL stream",
                );
            }
            if format {
                self.error(
                    &join_key(&path, "format"),
                    "a `physical` backup has no dump format: it is a `pg_basebackup` tar archive",
                );
            }
            if databases {
                self.error(
                    &join_key(&path, "databases"),
                    "a `physical` backup holds the whole cluster, not chosen databases",
                );
            }
        }
        if let Some(max_lag) = &backup.max_lag {
            match units::parse_pg_time(max_lag, "s") {
                Err(error) => self.error("backup.max_lag", error.message).help = error.help,
                Ok(microseconds) if microseconds < 1_000_000.0 => {
                    self.error("backup.max_lag", "`max_lag` must be at least `1s`");
                }
                Ok(_) if physical == 0 => {
                    self.error(
                        "backup.max_lag",
                        "`max_lag` is the lag of WAL streaming, which needs a schedule of kind \
                         `physical`",
                    )
                    .help = Some(
                        "add a schedule `{ name: base, schedule: \"0 3 * * *\", kind: physical }`"
                            .to_owned(),
                    );
                }
                Ok(_) => {}
            }
        }
    }
}
