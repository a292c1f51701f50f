//! Server settings (`pg_settings`), values waiting in the configuration
//! files (`pg_file_settings`) and per-database settings
//! (`pg_db_role_setting`): one query each.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Client;

use super::query_error;
use crate::live::ObserveError;
use crate::model::{Deployment, Setting};

/// Every setting name the desired deployment uses anywhere: server,
/// per-role and per-database settings. Their units and types are what the
/// diff compares per-role and per-database values in.
fn names(desired: &Deployment) -> Vec<String> {
    // A preloaded extension makes the diff add its library to this one.
    let preload = "shared_preload_libraries".to_owned();
    let mut names: BTreeSet<&String> = desired.settings.keys().collect();
    if desired.databases.values().any(|database| {
        database
            .extensions
            .keys()
            .any(|name| crate::model::PRELOADED_EXTENSIONS.contains(&name.as_str()))
    }) {
        names.insert(&preload);
    }
    for role in desired.roles.values() {
        names.extend(role.settings.keys());
    }
    for database in desired.databases.values() {
        names.extend(database.settings.keys());
    }
    names.into_iter().cloned().collect()
}

/// Reads the settings the desired deployment names. `file_settings` says
/// whether `pg_file_settings` is readable (superuser or
/// `pg_read_all_settings`); without it pending values stay unknown.
pub async fn observe(
    client: &Client,
    database: &str,
    desired: &Deployment,
    file_settings: bool,
) -> Result<BTreeMap<String, Setting>, ObserveError> {
    let names = names(desired);
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let rows = client
        .query(
            "SELECT name::text, setting, unit, context, source, pending_restart, vartype \
             FROM pg_settings WHERE name = ANY($1) ORDER BY 1",
            &[&names],
        )
        .await
        .map_err(query_error("settings", database))?;
    let mut settings: BTreeMap<String, Setting> = rows
        .into_iter()
        .map(|row| {
            (
                row.get(0),
                Setting {
                    value: row.get::<_, Option<String>>(1).unwrap_or_default(),
                    unit: row.get(2),
                    context: row.get(3),
                    source: row.get(4),
                    pending_restart: row.get(5),
                    vartype: row.get(6),
                    pending_value: None,
                },
            )
        })
        .collect();
    if !file_settings {
        return Ok(settings);
    }
    // The last entry for a name wins, as when the server reads the files;
    // one that is not applied is waiting for a reload or a restart.
    let rows = client
        .query(
            "SELECT DISTINCT ON (name) name::text, setting, applied \
             FROM pg_file_settings WHERE name = ANY($1) \
             ORDER BY name, seqno DESC",
            &[&names],
        )
        .await
        .map_err(query_error("configuration files", database))?;
    for row in rows {
        let name: String = row.get(0);
        let applied: bool = row.get(2);
        if let Some(setting) = settings.get_mut(&name)
            && !applied
        {
            setting.pending_value = row.get(1);
        }
    }
    Ok(settings)
}

/// Per-database settings (`ALTER DATABASE … SET`), by database.
pub async fn observe_databases(
    client: &Client,
    database: &str,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, ObserveError> {
    let rows = client
        .query(
            "SELECT d.datname::text, s.setconfig \
             FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
             WHERE s.setrole = 0 ORDER BY 1",
            &[],
        )
        .await
        .map_err(query_error("database settings", database))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let config: Vec<String> = row.get::<_, Option<Vec<String>>>(1).unwrap_or_default();
            (row.get(0), super::roles::parse_config(&config))
        })
        .collect())
}
