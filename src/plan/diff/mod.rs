//! `diff(&desired, &live, &options) -> Plan`: pure, synchronous and
//! deterministic. It never fails; what cannot be done is a `PlanError` in
//! the plan.
//!
//! Only what the desired side states is compared: a field the spec leaves
//! unset accepts whatever is live.

use crate::model::address::ObjectKind;
use crate::model::{self, Database, Deployment, Extension, address, managed_mark};
use crate::plan::{Action, ActionKind, Change, Note, Plan, PlanError, Risk, Step};

pub mod access;
mod adoption;
pub mod backup;
mod container;
pub mod exporter;
mod networks;

use crate::model::DiffOptions;
use crate::sql::{quote_ident, quote_literal};

pub mod grants;
pub(super) mod indexes;
pub mod pooler;
mod preload;
pub mod replicas;
mod requires;
mod roles;
mod schemas;
pub mod settings;
pub mod tls;
mod upgrade;
use container::diff_container;
pub use container::format_bytes;
pub use container::unproven_message;
pub use indexes::stamp_statement;

/// Compares a desired and a live deployment and returns the ordered plan
/// that makes live match desired.
pub fn diff(desired: &Deployment, live: &Deployment, options: &DiffOptions) -> Plan {
    let mut plan = Plan {
        deployment: desired.name.clone(),
        ..Plan::default()
    };
    let server_known = diff_container(desired, live, &mut plan);
    if server_known {
        let with_libraries = preload::with_libraries(desired, live);
        tls::diff(desired, live, &mut plan);
        settings::diff(&with_libraries, live, &mut plan);
        roles::diff(desired, live, options, &mut plan);
        diff_databases(desired, live, options, &mut plan);
        access::diff(desired, live, &mut plan);
    }
    access::listening_notes(desired, &mut plan);
    replicas::diff(desired, live, options, &mut plan);
    backup::diff(desired, live, options, &mut plan);
    pooler::diff(desired, live, options, &mut plan);
    exporter::diff(desired, live, options, &mut plan);
    container::restart_for_settings(desired, &mut plan);
    super::order::sort(&mut plan);
    // Each action's kind of object is set where it is built; its address
    // names the same kind, which is what loading a saved plan relies on.
    debug_assert!(
        plan.actions
            .iter()
            .all(|action| ObjectKind::of(&action.address) == Some(action.object)),
        "an action's kind of object differs from its address's"
    );
    plan
}

fn diff_databases(desired: &Deployment, live: &Deployment, options: &DiffOptions, plan: &mut Plan) {
    for (name, want) in &desired.databases {
        let have = live.databases.get(name);
        diff_database(&desired.name, want, have, live, plan);
        schemas::diff(&desired.name, want, have, plan);
        diff_extensions(
            &desired.name,
            want,
            have,
            live.server.as_ref(),
            options,
            plan,
        );
        indexes::diff(&desired.name, want, have, options, plan);
        grants::diff(want, have, live, plan);
    }
    for name in live.databases.keys() {
        if !desired.databases.contains_key(name) {
            plan.unmanaged.push(address::database(name));
        }
    }
}

/// `ALTER DATABASE … SET` for one per-database setting.
fn database_setting_statement(database: &str, setting: &str, value: &str) -> String {
    format!(
        "ALTER DATABASE {} SET {} = {}",
        quote_ident(database),
        quote_ident(setting),
        settings::value_sql(setting, value)
    )
}

fn diff_database(
    deployment: &str,
    want: &Database,
    have: Option<&Database>,
    live: &Deployment,
    plan: &mut Plan,
) {
    let address = address::database(&want.name);
    let name = quote_ident(&want.name);
    let Some(have) = have else {
        let mut statement = format!("CREATE DATABASE {name}");
        let mut changes = Vec::new();
        if let Some(owner) = &want.owner {
            statement.push_str(&format!(" OWNER {}", quote_ident(owner)));
            changes.push(Change::new("owner", None, Some(owner.clone())));
        }
        if let Some(template) = &want.template {
            statement.push_str(&format!(" TEMPLATE {}", quote_ident(template)));
            changes.push(Change::new("template", None, Some(template.clone())));
        }
        if let Some(encoding) = &want.encoding {
            statement.push_str(&format!(" ENCODING {}", quote_literal(encoding)));
            changes.push(Change::new("encoding", None, Some(encoding.clone())));
        }
        if let Some(locale) = &want.locale {
            statement.push_str(&format!(" LOCALE {}", quote_literal(locale)));
            changes.push(Change::new("locale", None, Some(locale.clone())));
        }
        if let Some(limit) = want.connection_limit {
            statement.push_str(&format!(" CONNECTION LIMIT {limit}"));
            changes.push(Change::new(
                "connection_limit",
                None,
                Some(limit.to_string()),
            ));
        }
        let mut statements = vec![
            statement,
            format!(
                "COMMENT ON DATABASE {name} IS {}",
                quote_literal(&managed_mark(deployment))
            ),
        ];
        for (setting, value) in &want.settings {
            statements.push(database_setting_statement(&want.name, setting, value));
            changes.push(Change::new(
                format!("settings.{setting}"),
                None,
                Some(value.clone()),
            ));
        }
        plan.actions.push(Action {
            address,
            object: ObjectKind::Database,
            kind: ActionKind::Create,
            reason: "declared in the spec, not on the server".to_owned(),
            risk: Risk::none(),
            changes,
            steps: vec![Step::Sql {
                database: None,
                statements,
                transaction: false,
            }],
        });
        return;
    };

    let mut changes = Vec::new();
    let mut statements = Vec::new();
    if let Some(owner) = &want.owner
        && have.owner.as_ref() != Some(owner)
    {
        changes.push(Change::new(
            "owner",
            have.owner.clone(),
            Some(owner.clone()),
        ));
        statements.push(format!(
            "ALTER DATABASE {name} OWNER TO {}",
            quote_ident(owner)
        ));
    }
    if let Some(limit) = want.connection_limit
        && have.connection_limit != Some(limit)
    {
        changes.push(Change::new(
            "connection_limit",
            have.connection_limit.map(|limit| limit.to_string()),
            Some(limit.to_string()),
        ));
        statements.push(format!("ALTER DATABASE {name} CONNECTION LIMIT {limit}"));
    }
    for (setting, value) in &want.settings {
        let same = have.settings.get(setting).is_some_and(|live_value| {
            settings::same_value(setting, value, live_value, live.settings.get(setting))
        });
        if !same {
            changes.push(Change::new(
                format!("settings.{setting}"),
                have.settings.get(setting).cloned(),
                Some(value.clone()),
            ));
            statements.push(database_setting_statement(&want.name, setting, value));
        }
    }
    for (field, wanted, live_value) in [
        ("encoding", &want.encoding, &have.encoding),
        ("locale", &want.locale, &have.locale),
    ] {
        if let Some(wanted) = wanted
            && live_value.as_ref().is_some_and(|value| value != wanted)
        {
            plan.notes.push(Note {
                address: address.clone(),
                message: format!(
                    "{field} is `{}` but the spec says `{wanted}`; it is fixed when a database \
                     is created and pgspec will not change it",
                    live_value.as_deref().unwrap_or_default()
                ),
            });
        }
    }
    if !statements.is_empty() {
        plan.actions.push(Action {
            address,
            object: ObjectKind::Database,
            kind: ActionKind::Update,
            reason: "differs from the spec".to_owned(),
            risk: Risk::none(),
            changes,
            steps: vec![Step::Sql {
                database: None,
                statements,
                transaction: true,
            }],
        });
    }
}

/// Extensions that are part of every database and never worth reporting.
const BUILTIN_EXTENSIONS: &[&str] = &["plpgsql"];

fn diff_extensions(
    deployment: &str,
    want: &Database,
    have: Option<&Database>,
    server: Option<&model::ServerInfo>,
    options: &DiffOptions,
    plan: &mut Plan,
) {
    let empty = std::collections::BTreeMap::new();
    let live_extensions = have.map_or(&empty, |database| &database.extensions);
    for (name, wanted) in &want.extensions {
        let address = address::extension(&want.name, name);
        if let Some(error) = unavailable_version(wanted, server) {
            plan.errors.push(PlanError {
                address,
                message: error,
            });
            continue;
        }
        match live_extensions.get(name) {
            None => {
                let mut action = create_extension(deployment, &want.name, wanted, server, address);
                requires::create_required_first(
                    deployment,
                    &mut action,
                    want,
                    name,
                    live_extensions,
                    server,
                );
                plan.actions.push(action);
            }
            Some(installed) => {
                if let Some(action) = update_extension(&want.name, wanted, installed, address) {
                    plan.actions.push(action);
                }
            }
        }
    }
    for (name, installed) in live_extensions {
        if want.extensions.contains_key(name)
            || BUILTIN_EXTENSIONS.contains(&name.as_str())
            || requires::is_required(want, name, server)
        {
            continue;
        }
        let address = address::extension(&want.name, name);
        if installed.managed && options.prune {
            plan.actions.push(Action {
                address,
                object: ObjectKind::Extension,
                kind: ActionKind::Delete,
                reason: "created by pgspec, no longer in the spec, and pruning is on".to_owned(),
                risk: Risk::none(),
                changes: vec![Change::new("version", installed.version.clone(), None)],
                // Never CASCADE: objects of other owners that depend on the
                // extension (columns of its types) would be dropped with it.
                steps: vec![Step::Sql {
                    database: Some(want.name.clone()),
                    statements: vec![format!("DROP EXTENSION {}", quote_ident(name))],
                    transaction: true,
                }],
            });
        } else {
            plan.unmanaged.push(address);
        }
    }
}

/// A plan error when the spec asks for a version the server cannot install.
fn unavailable_version(wanted: &Extension, server: Option<&model::ServerInfo>) -> Option<String> {
    let server = server?;
    let Some(available) = server.available_extensions.get(&wanted.name) else {
        return Some(format!(
            "extension `{}` is not available on this server (its files are not installed)",
            wanted.name
        ));
    };
    let version = wanted.version.as_ref()?;
    if available.versions.contains(version) {
        return None;
    }
    Some(format!(
        "extension `{}` version `{version}` is not available on this server; it has {}",
        wanted.name,
        available
            .versions
            .iter()
            .map(|version| format!("`{version}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// `CREATE EXTENSION` (never `IF NOT EXISTS`: the step that runs it checks
/// first, and an extension that appears in between makes it fail rather
/// than be claimed) with the schema and version the spec gives.
pub(super) fn create_extension_statement(name: &str, wanted: Option<&Extension>) -> String {
    let mut statement = format!("CREATE EXTENSION {}", quote_ident(name));
    if let Some(schema) = wanted.and_then(|wanted| wanted.schema.as_ref()) {
        statement.push_str(&format!(" SCHEMA {}", quote_ident(schema)));
    }
    if let Some(version) = wanted.and_then(|wanted| wanted.version.as_ref()) {
        statement.push_str(&format!(" VERSION {}", quote_literal(version)));
    }
    statement
}

fn create_extension(
    deployment: &str,
    database: &str,
    wanted: &Extension,
    server: Option<&model::ServerInfo>,
    address: String,
) -> Action {
    let default_version = server
        .and_then(|server| server.available_extensions.get(&wanted.name))
        .and_then(|available| available.default_version.clone());
    let version = wanted
        .version
        .clone()
        .or(default_version)
        .unwrap_or_else(|| "(server default)".to_owned());
    let mut changes = vec![Change::new("version", None, Some(version))];
    if let Some(schema) = &wanted.schema {
        changes.push(Change::new("schema", None, Some(schema.clone())));
    }
    Action {
        address,
        object: ObjectKind::Extension,
        kind: ActionKind::Create,
        reason: "declared in the spec, not installed".to_owned(),
        risk: Risk::none(),
        changes,
        steps: vec![Step::CreateExtension {
            database: database.to_owned(),
            name: wanted.name.clone(),
            statement: create_extension_statement(&wanted.name, Some(wanted)),
            mark: Some(managed_mark(deployment)),
        }],
    }
}

fn update_extension(
    database: &str,
    wanted: &Extension,
    installed: &Extension,
    address: String,
) -> Option<Action> {
    let name = quote_ident(&wanted.name);
    let mut changes = Vec::new();
    let mut statements = Vec::new();
    if let Some(version) = &wanted.version
        && installed.version.as_ref() != Some(version)
    {
        changes.push(Change::new(
            "version",
            installed.version.clone(),
            Some(version.clone()),
        ));
        statements.push(format!(
            "ALTER EXTENSION {name} UPDATE TO {}",
            quote_literal(version)
        ));
    }
    if let Some(schema) = &wanted.schema
        && installed.schema.as_ref() != Some(schema)
    {
        changes.push(Change::new(
            "schema",
            installed.schema.clone(),
            Some(schema.clone()),
        ));
        statements.push(format!(
            "ALTER EXTENSION {name} SET SCHEMA {}",
            quote_ident(schema)
        ));
    }
    if statements.is_empty() {
        return None;
    }
    Some(Action {
        address,
        object: ObjectKind::Extension,
        kind: ActionKind::Update,
        reason: "installed extension differs from the spec".to_owned(),
        risk: Risk::none(),
        changes,
        steps: vec![Step::Sql {
            database: Some(database.to_owned()),
            statements,
            transaction: true,
        }],
    })
}
