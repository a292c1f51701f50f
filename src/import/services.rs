//! The containers beside the server: the PgBouncer pooler, read through
//! its admin console, and the backup schedules the backup container's
//! labels carry.

use std::collections::BTreeSet;

use crate::model::{BackupDestination, BackupSchedule, ContainerState};
use crate::spec::file::{
    BackupFormat, BackupKind, BackupScheduleSpec, BackupSpec, DatabaseSpec, DestinationSpec,
    PoolMode, PoolerDatabaseSpec, PoolerSpec, RetentionSpec,
};

use super::Importer;

impl Importer<'_> {
    /// PgBouncer beside the server: what `SHOW CONFIG` and `SHOW DATABASES`
    /// report, where it differs from PgBouncer's defaults.
    pub(super) fn pooler(&mut self, databases: &[DatabaseSpec]) -> Option<PoolerSpec> {
        let container = self.options.container.as_ref()?;
        let pooler = container.pooler.as_ref()?;
        if pooler.state != ContainerState::Running {
            self.note(
                "pooler",
                "the PgBouncer container is not running, so its settings are unknown; a plan \
                 starts it"
                    .to_owned(),
            );
        }
        if let Some(error) = &pooler.console_error {
            self.note(
                "pooler",
                format!("PgBouncer's admin console did not answer ({error}); its settings are not imported"),
            );
        }
        let setting = |name: &str| {
            pooler.settings.get(name).filter(|value| {
                POOLER_DEFAULTS
                    .iter()
                    .all(|default| *default != (name, value.as_str()))
            })
        };
        let number = |name: &str| setting(name).and_then(|value| value.parse::<i64>().ok());
        let seconds = |name: &str| setting(name).map(|value| format!("{value}s"));
        let global = |name: &str| {
            pooler.settings.get(name).cloned().unwrap_or_else(|| {
                POOLER_DEFAULTS
                    .iter()
                    .find(|(default, _)| *default == name)
                    .map(|(_, value)| (*value).to_owned())
                    .unwrap_or_default()
            })
        };
        let mut spec = PoolerSpec {
            image: Some(pooler.image.clone()),
            port: (pooler.port != 6432).then_some(i64::from(pooler.port)),
            bind_address: (pooler.bind_address != "127.0.0.1").then(|| pooler.bind_address.clone()),
            pool_mode: setting("pool_mode").and_then(|mode| pool_mode(mode)),
            default_pool_size: number("default_pool_size"),
            min_pool_size: number("min_pool_size"),
            reserve_pool_size: number("reserve_pool_size"),
            max_client_conn: number("max_client_conn"),
            max_db_connections: number("max_db_connections"),
            server_idle_timeout: seconds("server_idle_timeout"),
            server_lifetime: seconds("server_lifetime"),
            query_wait_timeout: seconds("query_wait_timeout"),
            ..PoolerSpec::default()
        };
        for database in databases {
            let Some(live) = pooler.databases.get(&database.name) else {
                continue;
            };
            let differs = |name: &str, global_name: &str| {
                live.get(name)
                    .filter(|value| **value != global(global_name))
                    .cloned()
            };
            let overrides = PoolerDatabaseSpec {
                pool_size: differs("pool_size", "default_pool_size")
                    .and_then(|value| value.parse().ok()),
                pool_mode: differs("pool_mode", "pool_mode").and_then(|mode| pool_mode(&mode)),
                max_db_connections: differs("max_db_connections", "max_db_connections")
                    .and_then(|value| value.parse().ok()),
                ..PoolerDatabaseSpec::default()
            };
            if overrides.pool_size.is_some()
                || overrides.pool_mode.is_some()
                || overrides.max_db_connections.is_some()
            {
                spec.databases.insert(database.name.clone(), overrides);
            }
        }
        let spec_databases: BTreeSet<&str> = databases
            .iter()
            .map(|database| database.name.as_str())
            .collect();
        let extra: Vec<String> = pooler
            .databases
            .keys()
            .filter(|name| {
                *name != "pgbouncer"
                    && !spec_databases.contains(name.as_str())
                    && !pooler.served.contains_key(*name)
            })
            .map(|name| format!("`{name}`"))
            .collect();
        if !extra.is_empty() && !spec_databases.is_empty() {
            self.note(
                "pooler",
                format!(
                    "PgBouncer also serves {}, which the spec does not list; a plan stops \
                     serving them",
                    extra.join(", ")
                ),
            );
        }
        Some(spec)
    }

    /// The backup schedules the backup container runs.
    pub(super) fn backup(&mut self, databases: &[DatabaseSpec]) -> Option<BackupSpec> {
        let container = self.options.container.as_ref()?;
        let backup = container.backup.as_ref()?;
        let agent = backup.agent.as_ref()?;
        if agent.version != env!("CARGO_PKG_VERSION") {
            self.note(
                "backup",
                format!(
                    "the backup container runs the agent of pgspec {}; a plan replaces it with \
                     this pgspec's",
                    agent.version
                ),
            );
        }
        if agent.image != container.container.image {
            self.note(
                "backup",
                format!(
                    "the backup container runs image `{}`, not the server's; a plan replaces \
                     it",
                    agent.image
                ),
            );
        }
        let mut all_databases: Vec<String> = databases
            .iter()
            .map(|database| database.name.clone())
            .collect();
        all_databases.sort();
        let retention = |schedule: &BackupSchedule| {
            let retention = RetentionSpec {
                days: schedule.retention_days,
                max_count: schedule.max_count,
                min_count: schedule.min_count,
            };
            let empty = retention.days.is_none()
                && retention.max_count.is_none()
                && retention.min_count.is_none();
            (!empty).then_some(retention)
        };
        let schedules: Vec<&BackupSchedule> = backup.schedules.values().collect();
        let first_retention = schedules.first().and_then(|schedule| retention(schedule));
        let shared_retention = schedules
            .iter()
            .all(|schedule| format!("{:?}", retention(schedule)) == format!("{first_retention:?}"));
        let databases_of = |schedule: &BackupSchedule| {
            if schedule.databases == all_databases || schedule.kind == "physical" {
                Vec::new()
            } else {
                schedule.databases.clone()
            }
        };
        let mut spec = BackupSpec {
            destination: match &backup.destination {
                BackupDestination::Volume(volume) => DestinationSpec {
                    volume: Some(volume.clone()),
                    directory: None,
                },
                BackupDestination::Directory(directory) => DestinationSpec {
                    volume: None,
                    directory: Some(directory.into()),
                },
            },
            retention: if shared_retention {
                first_retention.clone()
            } else {
                None
            },
            ..BackupSpec::default()
        };
        match schedules.as_slice() {
            [single] if single.name == "default" => {
                spec.schedule = Some(single.cron.clone());
                spec.kind = backup_kind(&single.kind);
                spec.format = backup_format(&single.format);
                spec.databases = databases_of(single);
                spec.verify = single.verify.clone();
            }
            _ => {
                spec.schedules = schedules
                    .iter()
                    .map(|schedule| BackupScheduleSpec {
                        name: schedule.name.clone(),
                        schedule: schedule.cron.clone(),
                        kind: backup_kind(&schedule.kind),
                        format: backup_format(&schedule.format),
                        databases: databases_of(schedule),
                        retention: if shared_retention {
                            None
                        } else {
                            retention(schedule)
                        },
                        verify: schedule.verify.clone(),
                    })
                    .collect();
            }
        }
        if spec.schedule.is_none() && spec.schedules.is_empty() {
            return None;
        }
        Some(spec)
    }
}

/// PgBouncer's own defaults, left out of an imported spec.
const POOLER_DEFAULTS: &[(&str, &str)] = &[
    ("pool_mode", "session"),
    ("default_pool_size", "20"),
    ("min_pool_size", "0"),
    ("reserve_pool_size", "0"),
    ("max_client_conn", "100"),
    ("max_db_connections", "0"),
    ("server_idle_timeout", "600"),
    ("server_lifetime", "3600"),
    ("query_wait_timeout", "120"),
];

fn pool_mode(text: &str) -> Option<PoolMode> {
    match text {
        "session" => Some(PoolMode::Session),
        "transaction" => Some(PoolMode::Transaction),
        "statement" => Some(PoolMode::Statement),
        _ => None,
    }
}

/// A backup kind as the spec writes it; `None` for the default (`full`).
fn backup_kind(kind: &str) -> Option<BackupKind> {
    match kind {
        "data" => Some(BackupKind::Data),
        "schema" => Some(BackupKind::Schema),
        "globals" => Some(BackupKind::Globals),
        "physical" => Some(BackupKind::Physical),
        _ => None,
    }
}

/// A backup format as the spec writes it; `None` for the default
/// (`custom`).
fn backup_format(format: &str) -> Option<BackupFormat> {
    match format {
        "plain" => Some(BackupFormat::Plain),
        "directory" => Some(BackupFormat::Directory),
        _ => None,
    }
}
