//! Server settings, and the values per-role and per-database settings are
//! compared in.
//!
//! Values compare in the server's canonical form: a desired `256MB` becomes
//! the number of the live setting's unit (`32768` for `8kB` pages), `true`
//! becomes `on`, list settings compare item by item.

use crate::model::address::ObjectKind;
use crate::model::notation::list_items;
use crate::model::{Deployment, Setting, address};
use crate::plan::{Action, ActionKind, Change, Plan, PlanError, Risk, Step};
use crate::sql::{quote_ident, quote_literal};
use crate::units::{PgQuantity, UnitClass, parse_pg_quantity};

/// Settings whose value is a comma-separated list (`GUC_LIST_INPUT`).
const LIST_SETTINGS: &[&str] = &[
    "shared_preload_libraries",
    "session_preload_libraries",
    "local_preload_libraries",
    "search_path",
    "temp_tablespaces",
    "log_destination",
    "unix_socket_directories",
    "listen_addresses",
    "synchronous_standby_names",
];

/// A value in the server's canonical form.
#[derive(Debug, Clone, PartialEq)]
enum Canonical {
    Number(f64),
    Text(String),
    List(Vec<String>),
}

impl Canonical {
    fn same(&self, other: &Canonical) -> bool {
        match (self, other) {
            (Canonical::Number(left), Canonical::Number(right)) => {
                (left - right).abs() <= 1e-9 * left.abs().max(right.abs()).max(1.0)
            }
            _ => self == other,
        }
    }
}

/// How many bytes or microseconds one of the setting's units is.
fn unit_size(unit: &str) -> Option<(UnitClass, f64)> {
    let size = match unit {
        "B" => (UnitClass::Memory, 1.0),
        "kB" => (UnitClass::Memory, 1024.0),
        "8kB" => (UnitClass::Memory, 8192.0),
        "MB" => (UnitClass::Memory, 1024.0 * 1024.0),
        "16MB" => (UnitClass::Memory, 16.0 * 1024.0 * 1024.0),
        "us" => (UnitClass::Time, 1.0),
        "ms" => (UnitClass::Time, 1_000.0),
        "s" => (UnitClass::Time, 1_000_000.0),
        "min" => (UnitClass::Time, 60_000_000.0),
        _ => return None,
    };
    Some(size)
}

fn is_list(name: &str) -> bool {
    LIST_SETTINGS.contains(&name)
}

/// The canonical form of `value` for setting `name`, described by `live`
/// (unit and type) when the server knows it.
fn canonical(name: &str, value: &str, live: Option<&Setting>) -> Canonical {
    if is_list(name) {
        return Canonical::List(list_items(value));
    }
    let Some(live) = live else {
        return Canonical::Text(value.trim().to_owned());
    };
    match live.vartype.as_deref() {
        Some("bool") => Canonical::Text(bool_text(value)),
        Some("integer") | Some("real") => {
            let number = number_in_unit(value, live.unit.as_deref());
            match number {
                Some(number) if live.vartype.as_deref() == Some("integer") => {
                    Canonical::Number(number.round())
                }
                Some(number) => Canonical::Number(number),
                None => Canonical::Text(value.trim().to_owned()),
            }
        }
        Some("enum") => Canonical::Text(value.trim().to_lowercase()),
        _ => Canonical::Text(value.to_owned()),
    }
}

/// PostgreSQL's boolean spellings as `on` or `off`; anything else as is.
fn bool_text(value: &str) -> String {
    let lower = value.trim().to_lowercase();
    match lower.as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" | "tr" | "tru" | "ye" => "on".to_owned(),
        "off" | "false" | "no" | "0" | "f" | "n" | "of" | "fa" | "fal" | "fals" => "off".to_owned(),
        _ => lower,
    }
}

/// A number in the setting's own unit: `256MB` with unit `8kB` is 32768; a
/// bare number already is in the setting's unit.
fn number_in_unit(value: &str, unit: Option<&str>) -> Option<f64> {
    let trimmed = value.trim();
    if let Ok(number) = trimmed.parse::<f64>() {
        return Some(number);
    }
    let Ok(Some(PgQuantity { class, base, .. })) = parse_pg_quantity(trimmed) else {
        return None;
    };
    let (unit_class, size) = unit.and_then(unit_size)?;
    (unit_class == class).then_some(base / size)
}

/// Whether a desired value and a live one mean the same for setting `name`.
pub fn same_value(name: &str, desired: &str, live_value: &str, live: Option<&Setting>) -> bool {
    canonical(name, desired, live).same(&canonical(name, live_value, live))
}

/// A live value as people write it: `16384` pages of `8kB` is `128MB`.
pub fn display(value: &str, setting: Option<&Setting>) -> String {
    let Some((class, size)) = setting
        .and_then(|setting| setting.unit.as_deref())
        .and_then(unit_size)
    else {
        return value.to_owned();
    };
    let Ok(number) = value.trim().parse::<i64>() else {
        return value.to_owned();
    };
    if number <= 0 {
        return value.to_owned();
    }
    let base = number as f64 * size;
    let units: &[(&str, f64)] = match class {
        UnitClass::Memory => &[
            ("TB", 1_099_511_627_776.0),
            ("GB", 1_073_741_824.0),
            ("MB", 1_048_576.0),
            ("kB", 1024.0),
            ("B", 1.0),
        ],
        UnitClass::Time => &[
            ("d", 86_400_000_000.0),
            ("h", 3_600_000_000.0),
            ("min", 60_000_000.0),
            ("s", 1_000_000.0),
            ("ms", 1_000.0),
            ("us", 1.0),
        ],
    };
    for (unit, factor) in units {
        if base >= *factor && (base / factor).fract() == 0.0 {
            return format!("{}{unit}", (base / factor) as i64);
        }
    }
    value.to_owned()
}

/// The right-hand side of `SET name = …`: one literal, or one literal per
/// item for list settings so that the server quotes each item itself.
pub fn value_sql(name: &str, value: &str) -> String {
    if !is_list(name) {
        return quote_literal(value);
    }
    let items = list_items(value);
    if items.is_empty() {
        return quote_literal("");
    }
    items
        .iter()
        .map(|item| quote_literal(item))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Plans `ALTER SYSTEM SET` for every server setting the spec states and
/// the live server has otherwise.
pub fn diff(desired: &Deployment, live: &Deployment, plan: &mut Plan) {
    for (name, want) in &desired.settings {
        let address = address::setting(name);
        let have = live.settings.get(name);
        let Some(have) = have else {
            if live.server.is_some() && !name.contains('.') {
                let meant = crate::diag::did_you_mean(name, crate::model::known_settings())
                    .map(|known| format!("; did you mean `{known}`?"))
                    .unwrap_or_default();
                plan.errors.push(PlanError {
                    address,
                    message: format!("the server has no setting `{name}`{meant}"),
                });
            } else {
                // A server not started yet, or a custom setting of a library
                // not loaded yet: written as asked, compared once the server
                // knows it.
                plan.actions
                    .push(write_action(name, &want.value, None, address));
            }
            continue;
        };
        let in_effect = same_value(name, &want.value, &have.value, Some(have));
        let pending_same = have
            .pending_value
            .as_deref()
            .map(|pending| same_value(name, &want.value, pending, Some(have)));
        if in_effect && pending_same != Some(false) {
            continue;
        }
        match have.context.as_deref() {
            Some("internal") => {
                plan.errors.push(PlanError {
                    address,
                    message: format!(
                        "`{name}` is fixed when the server is built or initialised and cannot \
                         be changed"
                    ),
                });
                continue;
            }
            _ if have.source.as_deref() == Some("command line") => {
                plan.errors.push(PlanError {
                    address,
                    message: format!(
                        "`{name}` is set on the server's command line, which overrides \
                         ALTER SYSTEM; change it where the server is started"
                    ),
                });
                continue;
            }
            _ => {}
        }
        let restart = have.context.as_deref() == Some("postmaster");
        if restart && !in_effect && pending_same == Some(true) {
            // Written already; only a restart is missing.
            plan.actions.push(Action {
                address,
                object: ObjectKind::Setting,
                kind: ActionKind::Update,
                reason: format!(
                    "`{name}` is written with ALTER SYSTEM and waits for a server restart \
                     (pending_restart)"
                ),
                risk: Risk {
                    restart: true,
                    ..Risk::none()
                },
                changes: vec![Change::new(
                    "value",
                    Some(display(&have.value, Some(have))),
                    Some(want.value.clone()),
                )],
                steps: Vec::new(),
            });
            continue;
        }
        plan.actions
            .push(write_action(name, &want.value, Some(have), address));
    }
}

/// Settings whose context is `postmaster` in every supported version, for
/// plans made before the server can be asked (a container not created yet).
const KNOWN_POSTMASTER_SETTINGS: &[&str] = &[
    "archive_mode",
    "autovacuum_max_workers",
    "huge_pages",
    "listen_addresses",
    "max_connections",
    "max_files_per_process",
    "max_locks_per_transaction",
    "max_logical_replication_workers",
    "max_pred_locks_per_transaction",
    "max_prepared_transactions",
    "max_replication_slots",
    "max_wal_senders",
    "max_worker_processes",
    "port",
    "shared_buffers",
    "shared_preload_libraries",
    "superuser_reserved_connections",
    "track_commit_timestamp",
    "wal_buffers",
    "wal_level",
    "wal_log_hints",
];

fn write_action(name: &str, value: &str, have: Option<&Setting>, address: String) -> Action {
    let context = have
        .and_then(|setting| setting.context.as_deref())
        .or_else(|| {
            KNOWN_POSTMASTER_SETTINGS
                .contains(&name)
                .then_some("postmaster")
        });
    let restart = context == Some("postmaster");
    let reason = match context {
        Some("postmaster") => format!(
            "differs from the spec; `{name}` takes effect only after a server restart \
             (context `postmaster`)"
        ),
        Some(context) => format!(
            "differs from the spec; applied by a configuration reload (context `{context}`)"
        ),
        None => "not known to the server yet; written with ALTER SYSTEM".to_owned(),
    };
    let mut changes = Vec::new();
    if let Some(have) = have {
        if !same_value(name, value, &have.value, Some(have)) {
            changes.push(Change::new(
                "value",
                Some(display(&have.value, Some(have))),
                Some(value.to_owned()),
            ));
        }
        if let Some(pending) = &have.pending_value
            && !same_value(name, value, pending, Some(have))
        {
            changes.push(Change::new(
                "pending_value",
                Some(pending.clone()),
                Some(value.to_owned()),
            ));
        }
    } else {
        changes.push(Change::new("value", None, Some(value.to_owned())));
    }
    Action {
        address,
        object: ObjectKind::Setting,
        kind: ActionKind::Update,
        reason,
        risk: Risk {
            restart,
            ..Risk::none()
        },
        changes,
        // ALTER SYSTEM cannot run inside a transaction block.
        steps: vec![Step::Sql {
            database: None,
            statements: vec![
                format!(
                    "ALTER SYSTEM SET {} = {}",
                    quote_ident(name),
                    value_sql(name, value)
                ),
                "SELECT pg_reload_conf()".to_owned(),
            ],
            transaction: false,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(value: &str, unit: Option<&str>, vartype: &str) -> Setting {
        Setting {
            value: value.to_owned(),
            unit: unit.map(str::to_owned),
            vartype: Some(vartype.to_owned()),
            ..Setting::default()
        }
    }

    #[test]
    fn memory_compares_in_the_live_unit() {
        let shared_buffers = setting("32768", Some("8kB"), "integer");
        for desired in ["256MB", "262144kB", "32768", "0.25GB"] {
            assert!(
                same_value("shared_buffers", desired, "32768", Some(&shared_buffers)),
                "{desired}"
            );
        }
        assert!(!same_value(
            "shared_buffers",
            "128MB",
            "32768",
            Some(&shared_buffers)
        ));
        assert_eq!(display("16384", Some(&shared_buffers)), "128MB");
        let work_mem = setting("4096", Some("kB"), "integer");
        assert!(same_value("work_mem", "4MB", "4096", Some(&work_mem)));
        assert_eq!(display("4096", Some(&work_mem)), "4MB");
    }

    #[test]
    fn time_and_booleans_compare_by_meaning() {
        let timeout = setting("1000", Some("ms"), "integer");
        assert!(same_value(
            "statement_timeout",
            "1s",
            "1000",
            Some(&timeout)
        ));
        assert!(same_value(
            "statement_timeout",
            "1000",
            "1000",
            Some(&timeout)
        ));
        assert!(!same_value(
            "statement_timeout",
            "2s",
            "1000",
            Some(&timeout)
        ));
        assert_eq!(display("30000", Some(&timeout)), "30s");
        assert_eq!(display("0", Some(&timeout)), "0");
        let jit = setting("on", None, "bool");
        for desired in ["on", "true", "TRUE", "yes", "1"] {
            assert!(same_value("jit", desired, "on", Some(&jit)), "{desired}");
        }
        assert!(!same_value("jit", "false", "on", Some(&jit)));
        let cost = setting("1.1", None, "real");
        assert!(same_value("random_page_cost", "1.10", "1.1", Some(&cost)));
    }

    #[test]
    fn lists_compare_item_by_item() {
        let preload = setting("pg_stat_statements,auto_explain", None, "string");
        assert!(same_value(
            "shared_preload_libraries",
            "pg_stat_statements, auto_explain",
            "pg_stat_statements,auto_explain",
            Some(&preload)
        ));
        assert!(!same_value(
            "shared_preload_libraries",
            "auto_explain, pg_stat_statements",
            "pg_stat_statements,auto_explain",
            Some(&preload)
        ));
        assert_eq!(
            value_sql("search_path", "\"$user\", public"),
            "'$user', 'public'"
        );
        assert_eq!(value_sql("work_mem", "64MB"), "'64MB'");
    }

    fn planned(name: &str, desired: &str, live: impl Into<Option<Setting>>) -> Plan {
        let desired = Deployment {
            settings: [(
                name.to_owned(),
                Setting {
                    value: desired.to_owned(),
                    ..Setting::default()
                },
            )]
            .into(),
            ..Deployment::default()
        };
        let live = Deployment {
            settings: live
                .into()
                .map(|live| (name.to_owned(), live))
                .into_iter()
                .collect(),
            server: Some(crate::model::ServerInfo::default()),
            ..Deployment::default()
        };
        let mut plan = Plan::default();
        diff(&desired, &live, &mut plan);
        plan
    }

    fn shared_buffers(value: &str, pending: Option<&str>) -> Setting {
        Setting {
            context: Some("postmaster".to_owned()),
            source: Some("configuration file".to_owned()),
            pending_value: pending.map(str::to_owned),
            pending_restart: pending.is_some(),
            ..setting(value, Some("8kB"), "integer")
        }
    }

    #[test]
    fn restart_settings_are_written_once_then_wait_for_the_restart() {
        let plan = planned("shared_buffers", "256MB", shared_buffers("16384", None));
        let action = &plan.actions[0];
        assert!(action.risk.restart);
        assert!(action.reason.contains("restart"), "{}", action.reason);
        assert_eq!(action.steps.len(), 1);
        assert_eq!(
            action.changes[0],
            Change::new("value", Some("128MB".into()), Some("256MB".into()))
        );

        // Written already: still shown, nothing run again.
        let plan = planned(
            "shared_buffers",
            "256MB",
            shared_buffers("16384", Some("256MB")),
        );
        let action = &plan.actions[0];
        assert!(action.risk.restart && action.steps.is_empty());
        assert!(
            action.reason.contains("pending_restart"),
            "{}",
            action.reason
        );

        // In effect, but another value waits in the files: undo it.
        let plan = planned(
            "shared_buffers",
            "128MB",
            shared_buffers("16384", Some("1GB")),
        );
        assert_eq!(plan.actions[0].changes[0].field, "pending_value");

        assert!(
            planned("shared_buffers", "32768", shared_buffers("32768", None))
                .actions
                .is_empty()
        );
    }

    #[test]
    fn what_alter_system_cannot_change_is_an_error() {
        let internal = Setting {
            context: Some("internal".to_owned()),
            ..setting("8192", Some("B"), "integer")
        };
        assert!(
            planned("block_size", "16kB", internal).errors[0]
                .message
                .contains("cannot be changed")
        );
        let command_line = Setting {
            source: Some("command line".to_owned()),
            context: Some("postmaster".to_owned()),
            ..setting("100", None, "integer")
        };
        assert!(
            planned("max_connections", "200", command_line).errors[0]
                .message
                .contains("command line")
        );
        let plan = planned("shared_bufers", "1", None);
        assert!(
            plan.errors[0]
                .message
                .ends_with("no setting `shared_bufers`; did you mean `shared_buffers`?"),
            "{}",
            plan.errors[0].message
        );
        let plan = planned("no_such_setting", "1", None);
        assert!(plan.actions.is_empty());
        assert!(
            plan.errors[0]
                .message
                .contains("no setting `no_such_setting`")
        );
        // A library's own setting may be unknown until the library loads.
        let plan = planned("pg_stat_statements.max", "10000", None);
        assert_eq!(plan.actions.len(), 1);
    }
}
