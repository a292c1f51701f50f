//! Libraries that extensions need preloaded.
//!
//! `pg_stat_statements`, `pg_cron`, `pgaudit` and the like install with
//! `CREATE EXTENSION` but work only when the server loaded their library at
//! start (`model::PRELOADED_EXTENSIONS`). When the spec wants one and does
//! not state `shared_preload_libraries` itself, the desired deployment gets
//! the live value plus the missing libraries before settings are diffed, so
//! the plan changes the setting (keeping every library already loaded) and
//! the settings diff marks the restart it needs. A spec that states the
//! setting is taken at its word; `spec::validate` already refuses one that
//! leaves out a library its extensions need.

use std::borrow::Cow;
use std::collections::BTreeSet;

use crate::model::{Deployment, PRELOADED_EXTENSIONS, Setting};

const SETTING: &str = "shared_preload_libraries";

/// `desired`, with the libraries its extensions need added to
/// `shared_preload_libraries` when the spec leaves that setting to pgspec.
pub fn with_libraries<'a>(desired: &'a Deployment, live: &Deployment) -> Cow<'a, Deployment> {
    if desired.settings.contains_key(SETTING) {
        return Cow::Borrowed(desired);
    }
    let needed: BTreeSet<&str> = desired
        .databases
        .values()
        .flat_map(|database| database.extensions.keys())
        .map(String::as_str)
        .filter(|name| PRELOADED_EXTENSIONS.contains(name))
        .collect();
    if needed.is_empty() {
        return Cow::Borrowed(desired);
    }
    // What the server loads now, and what it will load at its next start:
    // a value written by ALTER SYSTEM and waiting for a restart counts. A
    // server that is not running yet starts with the default, which loads
    // nothing.
    let (running, mut libraries) = match (&live.server, live.settings.get(SETTING)) {
        (_, Some(have)) => (
            items(&have.value),
            items(have.pending_value.as_deref().unwrap_or(&have.value)),
        ),
        (None, None) => (Vec::new(), Vec::new()),
        (Some(_), None) => return Cow::Borrowed(desired),
    };
    let missing_in = |libraries: &[String]| -> Vec<&str> {
        let loaded: BTreeSet<String> = libraries.iter().map(|item| base(item)).collect();
        needed
            .iter()
            .copied()
            .filter(|library| !loaded.contains(*library))
            .collect()
    };
    let missing = missing_in(&libraries);
    // Written but not loaded yet: the desired value is the written one, so
    // that the settings diff reports the restart still needed.
    if missing.is_empty() && missing_in(&running).is_empty() {
        return Cow::Borrowed(desired);
    }
    libraries.extend(missing.into_iter().map(str::to_owned));
    let mut desired = desired.clone();
    desired.settings.insert(
        SETTING.to_owned(),
        Setting {
            value: libraries.join(", "),
            ..Setting::default()
        },
    );
    Cow::Owned(desired)
}

/// The items of a list setting as written, without blanks or quotes.
fn items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|item| item.trim().trim_matches(['"', '\'']).to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

/// A library's name without `$libdir/` and `.so`.
fn base(item: &str) -> String {
    let name = item.rsplit('/').next().unwrap_or(item);
    name.trim_end_matches(".so").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Database, Extension, ServerInfo};

    fn desired(extensions: &[&str]) -> Deployment {
        let mut database = Database {
            name: "app".to_owned(),
            ..Database::default()
        };
        for name in extensions {
            database.extensions.insert(
                (*name).to_owned(),
                Extension {
                    name: (*name).to_owned(),
                    ..Extension::default()
                },
            );
        }
        let mut deployment = Deployment::default();
        deployment.databases.insert("app".to_owned(), database);
        deployment
    }

    fn live(value: &str, pending: Option<&str>) -> Deployment {
        let mut live = Deployment {
            server: Some(ServerInfo::default()),
            ..Deployment::default()
        };
        live.settings.insert(
            SETTING.to_owned(),
            Setting {
                value: value.to_owned(),
                context: Some("postmaster".to_owned()),
                pending_value: pending.map(str::to_owned),
                ..Setting::default()
            },
        );
        live
    }

    fn wanted(desired: &Deployment, live: &Deployment) -> Option<String> {
        with_libraries(desired, live)
            .settings
            .get(SETTING)
            .map(|setting| setting.value.clone())
    }

    #[test]
    fn missing_libraries_are_added_to_what_is_loaded() {
        let desired = desired(&["pg_stat_statements", "pg_trgm"]);
        assert_eq!(
            wanted(&desired, &live("auto_explain", None)).as_deref(),
            Some("auto_explain, pg_stat_statements")
        );
        assert_eq!(
            wanted(&desired, &live("", None)).as_deref(),
            Some("pg_stat_statements")
        );
    }

    #[test]
    fn loaded_libraries_change_nothing() {
        let desired = desired(&["pg_stat_statements"]);
        assert_eq!(
            wanted(&desired, &live("'$libdir/pg_stat_statements.so'", None)),
            None
        );
        assert_eq!(wanted(&self::desired(&["pg_trgm"]), &live("", None)), None);
    }

    #[test]
    fn a_library_waiting_for_a_restart_stays_desired() {
        let desired = desired(&["pg_stat_statements"]);
        assert_eq!(
            wanted(&desired, &live("", Some("pg_stat_statements"))).as_deref(),
            Some("pg_stat_statements")
        );
        assert_eq!(wanted(&self::desired(&["pg_trgm"]), &live("", None)), None);
    }

    #[test]
    fn a_stated_setting_is_taken_at_its_word() {
        let mut desired = desired(&["pg_stat_statements"]);
        desired.settings.insert(
            SETTING.to_owned(),
            Setting {
                value: "auto_explain".to_owned(),
                ..Setting::default()
            },
        );
        assert_eq!(
            wanted(&desired, &live("", None)).as_deref(),
            Some("auto_explain")
        );
    }
}
