//! Server settings: the names PostgreSQL knows and a setting's value as
//! the spec states it or `pg_settings` reports it.

use serde::{Deserialize, Serialize};

/// The server settings of the PostgreSQL majors pgspec supports (15 to
/// 18), lower case, sorted: what `validate` checks a spec's setting names
/// against. Settings with a dot (`pg_stat_statements.max`) belong to
/// extensions and are not listed.
pub fn known_settings() -> impl Iterator<Item = &'static str> {
    include_str!("settings.txt")
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
}

/// Whether `name` is a server setting of a supported major (names are
/// case-insensitive, as PostgreSQL reads them).
pub fn is_known_setting(name: &str) -> bool {
    let lower = name.to_lowercase();
    known_settings().any(|known| known == lower)
}

/// A server setting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    /// The value as text, in the form `ALTER SYSTEM` accepts.
    pub value: String,
    /// Live only: the unit pg_settings reports (`8kB`, `ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Live only: `postmaster`, `sighup`, `user`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Live only: where the value comes from (`configuration file`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Live only: a new value is written but needs a restart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_restart: bool,
    /// Live only: `bool`, `integer`, `real`, `string` or `enum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vartype: Option<String>,
    /// Live only: the value the configuration files hold when it is not yet
    /// in effect (written by `ALTER SYSTEM`, waiting for a reload or restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_value: Option<String>,
}

/// Server settings a major version removed: the version, the setting, and
/// what takes its place. A server of that version or later refuses to
/// start with one in its configuration.
const REMOVED: &[(u32, &str, &str)] = &[
    (16, "force_parallel_mode", "renamed `debug_parallel_query`"),
    (
        16,
        "promote_trigger_file",
        "use `pg_ctl promote` or `pg_promote()`",
    ),
    (
        16,
        "vacuum_defer_cleanup_age",
        "use `hot_standby_feedback` or a replication slot",
    ),
    (17, "old_snapshot_threshold", "no replacement"),
    (17, "db_user_namespace", "no replacement"),
    (17, "trace_recovery_messages", "no replacement"),
];

/// The settings among `names` that a major version after `from` and up to
/// `to` removed, with the version and what takes their place.
pub fn removed_between<'a>(
    names: impl IntoIterator<Item = &'a str>,
    from: u32,
    to: u32,
) -> Vec<(&'a str, u32, &'static str)> {
    names
        .into_iter()
        .filter_map(|name| {
            REMOVED
                .iter()
                .find(|(major, removed, _)| *removed == name && *major > from && *major <= to)
                .map(|(major, _, instead)| (name, *major, *instead))
        })
        .collect()
}
