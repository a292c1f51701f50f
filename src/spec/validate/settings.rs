//! Checks of server, role and database settings, and of the extensions
//! that need a library in `shared_preload_libraries`.

use std::collections::BTreeMap;

use super::checker::Checker;
use super::databases::extension_name;
use crate::spec::file::{SettingValue, SpecFile};
use crate::spec::load::{did_you_mean, join_index, join_key};
use crate::units::{self, UnitClass};

/// Settings whose unit class is well known, so a value with the wrong kind
/// of unit can be caught before the server rejects it.
const MEMORY_SETTINGS: &[&str] = &[
    "shared_buffers",
    "work_mem",
    "maintenance_work_mem",
    "effective_cache_size",
    "wal_buffers",
    "wal_keep_size",
    "max_wal_size",
    "min_wal_size",
    "temp_buffers",
];
const TIME_SETTINGS: &[&str] = &[
    "log_min_duration_statement",
    "statement_timeout",
    "checkpoint_timeout",
    "idle_in_transaction_session_timeout",
    "lock_timeout",
];

/// Extensions whose library must be in `shared_preload_libraries`.
const PRELOADED_EXTENSIONS: &[&str] = crate::model::PRELOADED_EXTENSIONS;

/// The text of a setting value in the form `ALTER SYSTEM` accepts.
pub fn setting_text(value: &SettingValue) -> String {
    match value {
        SettingValue::Bool(true) => "on".to_owned(),
        SettingValue::Bool(false) => "off".to_owned(),
        SettingValue::Integer(number) => number.to_string(),
        SettingValue::Float(number) => number.to_string(),
        SettingValue::Text(text) => text.clone(),
        SettingValue::List(items) => items.join(", "),
    }
}

/// Library names in a `shared_preload_libraries` value, without quotes or
/// `$libdir/` prefixes.
pub(super) fn preload_libraries(value: &SettingValue) -> Vec<String> {
    let items: Vec<String> = match value {
        SettingValue::List(items) => items.clone(),
        other => setting_text(other).split(',').map(str::to_owned).collect(),
    };
    items
        .iter()
        .map(|item| {
            let item = item.trim().trim_matches('"').trim_matches('\'');
            let base = item.rsplit('/').next().unwrap_or(item);
            base.trim_end_matches(".so").to_owned()
        })
        .filter(|item| !item.is_empty())
        .collect()
}

impl Checker<'_> {
    /// A setting name PostgreSQL does not have is caught here, before the
    /// server is asked: an error with the setting meant when one is close,
    /// a warning otherwise (a setting of a newer major than the list).
    /// Names with a dot belong to extensions and are the server's to judge.
    pub(super) fn check_setting_name(&mut self, path: &str, name: &str) {
        if name.contains('.') || crate::model::is_known_setting(name) {
            return;
        }
        match did_you_mean(name, crate::model::known_settings()) {
            Some(suggestion) => {
                let diagnostic = self.error(path, format!("`{name}` is not a PostgreSQL setting"));
                diagnostic.help = Some(format!("did you mean `{suggestion}`?"));
            }
            None => {
                let diagnostic = self.warning(
                    path,
                    format!("`{name}` is not a setting of PostgreSQL 15 to 18 that pgspec knows"),
                );
                diagnostic.help =
                    Some("the server checks it at plan time; check the spelling".to_owned());
            }
        }
    }

    pub(super) fn check_settings(
        &mut self,
        parent: &str,
        settings: &BTreeMap<String, SettingValue>,
    ) {
        for (name, value) in settings {
            let path = join_key(parent, name);
            if name.trim().is_empty() {
                self.error(&path, "setting name is empty");
                continue;
            }
            if !self.check_no_control(&path, name, "setting") {
                continue;
            }
            self.check_setting_name(&path, name);
            let SettingValue::Text(text) = value else {
                continue;
            };
            let expected = if MEMORY_SETTINGS.contains(&name.as_str()) {
                Some(UnitClass::Memory)
            } else if TIME_SETTINGS.contains(&name.as_str()) {
                Some(UnitClass::Time)
            } else {
                None
            };
            match units::parse_pg_quantity(text) {
                Err(error) => {
                    let diagnostic = self.error(&path, format!("`{name}`: {}", error.message));
                    diagnostic.help = error.help;
                }
                Ok(Some(quantity)) => {
                    if let Some(expected) = expected
                        && expected != quantity.class
                    {
                        self.error(
                            &path,
                            format!(
                                "`{name}` takes a {}, `{text}` is a {}",
                                match expected {
                                    UnitClass::Memory => "memory size",
                                    UnitClass::Time => "duration",
                                },
                                quantity.class.noun()
                            ),
                        )
                        .help = Some(match expected {
                            UnitClass::Memory => {
                                "use `B`, `kB`, `MB`, `GB` or `TB`: `256MB`".to_owned()
                            }
                            UnitClass::Time => {
                                "use `us`, `ms`, `s`, `min`, `h` or `d`: `1s`".to_owned()
                            }
                        });
                    }
                }
                Ok(None) => {
                    let bare_number = text.trim().parse::<f64>().is_ok();
                    if expected.is_some() && !bare_number && !text.trim().is_empty() {
                        self.error(
                            &path,
                            format!("`{name}` takes a number with a unit, found `{text}`"),
                        );
                    }
                }
            }
        }
    }

    /// Extensions that only work when their library is preloaded.
    pub(super) fn check_preload(&mut self, file: &SpecFile) {
        let postgres = file.postgres.as_ref();
        let preload =
            postgres.and_then(|postgres| postgres.settings.get("shared_preload_libraries"));
        let managed_container = postgres.is_some_and(|postgres| postgres.image.is_some());
        let libraries = preload.map(preload_libraries);
        for (database_index, database) in file.databases.iter().enumerate() {
            for (extension_index, extension) in database.extensions.iter().enumerate() {
                let extension_path = join_index(
                    &join_key(&join_index("databases", database_index), "extensions"),
                    extension_index,
                );
                let (name, path) = extension_name(extension, &extension_path);
                if !PRELOADED_EXTENSIONS.contains(&name) {
                    continue;
                }
                match &libraries {
                    Some(libraries) if !libraries.iter().any(|library| library == name) => {
                        let mut wanted = libraries.clone();
                        wanted.push(name.to_owned());
                        self.error(
                            &path,
                            format!(
                                "extension `{name}` needs `{name}` in `shared_preload_libraries`, \
                                 which does not list it"
                            ),
                        )
                        .help = Some(format!(
                            "add it under `postgres.settings`: `shared_preload_libraries: [{}]` \
                             (a change there restarts the server)",
                            wanted.join(", ")
                        ));
                    }
                    None if managed_container => {
                        self.warning(
                            &path,
                            format!(
                                "extension `{name}` needs `{name}` in `shared_preload_libraries`, \
                                 which the spec does not set"
                            ),
                        )
                        .help = Some(format!(
                            "add `shared_preload_libraries: [{name}]` under `postgres.settings`"
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
}
