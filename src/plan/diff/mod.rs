//! `diff(&desired, &live, &options) -> Plan`: pure, synchronous and
//! deterministic. It never fails; what cannot be done is a `PlanError` in
//! the plan.
//!
//! Only what the desired side states is compared: a field the spec leaves
//! unset accepts whatever is live.

use crate::model::{
    self, Container, ContainerState, Database, Deployment, Extension, MANAGED_MARK, address,
};
use crate::plan::{Action, ActionKind, Change, DockerStep, Note, Plan, PlanError, Risk, Step};
use crate::spec::DiffOptions;
use crate::sql::{quote_ident, quote_literal};

/// Compares a desired and a live deployment and returns the ordered plan
/// that makes live match desired.
pub fn diff(desired: &Deployment, live: &Deployment, options: &DiffOptions) -> Plan {
    let mut plan = Plan {
        deployment: desired.name.clone(),
        ..Plan::default()
    };
    let server_known = diff_container(desired, live, &mut plan);
    if server_known {
        diff_databases(desired, live, options, &mut plan);
    }
    super::order::sort(&mut plan);
    plan
}

/// Diffs the server container. Returns whether the state inside PostgreSQL
/// is known: observed, or known to be empty because the data directory will
/// be initialised from scratch.
fn diff_container(desired: &Deployment, live: &Deployment, plan: &mut Plan) -> bool {
    let Some(want) = &desired.container else {
        return live.server.is_some();
    };
    let address = address::container(&want.name);
    let have = live
        .container
        .as_ref()
        .filter(|container| container.state != ContainerState::Missing);
    let fresh_volume = !live
        .container
        .as_ref()
        .is_some_and(|container| container.volume_exists);

    if let Some(error) = major_version_error(want, live) {
        plan.errors.push(PlanError {
            address: address.clone(),
            message: error,
        });
        return false;
    }

    match have {
        None => {
            let mut steps = Vec::new();
            if fresh_volume {
                steps.push(Step::Docker(DockerStep::CreateVolume {
                    name: want.volume.clone(),
                }));
            }
            steps.extend(start_steps(want));
            let reason = if fresh_volume {
                "declared in the spec, no container or data volume exists".to_owned()
            } else {
                format!(
                    "declared in the spec, no container exists; the existing volume `{}` is reused",
                    want.volume
                )
            };
            plan.actions.push(Action {
                address,
                kind: ActionKind::Create,
                reason,
                risk: Risk::none(),
                changes: container_fields(None, want),
                steps,
            });
        }
        Some(have) => {
            let replace_changes = replace_changes(have, want);
            if !replace_changes.is_empty() {
                let mut steps = vec![Step::Docker(DockerStep::RemoveContainer {
                    name: want.name.clone(),
                })];
                steps.extend(start_steps(want));
                plan.actions.push(Action {
                    address,
                    kind: ActionKind::Replace,
                    reason: "the engine cannot change these fields of a container in place; \
                             the data volume is kept"
                        .to_owned(),
                    risk: Risk {
                        locks: Vec::new(),
                        restart: true,
                        reconnects: true,
                    },
                    changes: replace_changes,
                    steps,
                });
            } else {
                let mut changes = resource_changes(have, want);
                let mut steps = Vec::new();
                if !changes.is_empty() {
                    steps.push(Step::Docker(DockerStep::UpdateResources {
                        name: want.name.clone(),
                        nano_cpus: want.nano_cpus,
                        memory_bytes: want.memory_bytes,
                    }));
                }
                if have.state == ContainerState::Stopped {
                    changes.push(Change::new(
                        "state",
                        Some("stopped".into()),
                        Some("running".into()),
                    ));
                    steps.push(Step::Docker(DockerStep::StartContainer {
                        name: want.name.clone(),
                    }));
                    steps.push(Step::Docker(DockerStep::WaitReady {
                        name: want.name.clone(),
                    }));
                }
                if !changes.is_empty() {
                    plan.actions.push(Action {
                        address,
                        kind: ActionKind::Update,
                        reason: "changed in place (docker update / start)".to_owned(),
                        risk: Risk::none(),
                        changes,
                        steps,
                    });
                }
            }
        }
    }

    if live.server.is_some() {
        true
    } else if fresh_volume {
        // A new data directory holds nothing yet, so everything inside
        // PostgreSQL is planned as a create.
        true
    } else {
        plan.notes.push(Note {
            address: address::container(&want.name),
            message: "the server is not running: objects inside PostgreSQL are planned \
                      once apply has started it"
                .to_owned(),
        });
        false
    }
}

/// The steps that create and start a container and wait for the server.
fn start_steps(want: &Container) -> Vec<Step> {
    vec![
        Step::Docker(DockerStep::CreateContainer {
            container: Box::new(want.clone()),
        }),
        Step::Docker(DockerStep::StartContainer {
            name: want.name.clone(),
        }),
        Step::Docker(DockerStep::WaitReady {
            name: want.name.clone(),
        }),
    ]
}

/// Refuses a change of PostgreSQL major version on an existing data
/// directory.
fn major_version_error(want: &Container, live: &Deployment) -> Option<String> {
    let data_major = live.container.as_ref()?.data_major?;
    let image_major = live.images.get(&want.image)?.pg_major?;
    (data_major != image_major).then(|| {
        format!(
            "image `{}` runs PostgreSQL {image_major} but the data directory on volume `{}` \
             was created by PostgreSQL {data_major}; a major version change needs an upgrade \
             (pg_dump/pg_restore into a new volume, or pg_upgrade) and pgspec will not start \
             a different major version on existing data",
            want.image, want.volume
        )
    })
}

fn container_fields(have: Option<&Container>, want: &Container) -> Vec<Change> {
    let mut changes = Vec::new();
    type Field = fn(&Container) -> Option<String>;
    let fields: [(&str, Field); 5] = [
        ("image", |container| Some(container.image.clone())),
        ("port", |container| {
            Some(format!("{}:{}", container.bind_address, container.port))
        }),
        ("volume", |container| {
            Some(format!("{}:{}", container.volume, container.data_mount))
        }),
        ("cpus", |container| container.nano_cpus.map(format_cpus)),
        ("memory", |container| {
            container.memory_bytes.map(format_bytes)
        }),
    ];
    for (field, get) in fields {
        let old = have.and_then(get);
        let new = get(want);
        if new.is_some() && old != new {
            changes.push(Change::new(field, old, new));
        }
    }
    changes
}

/// Fields that only a new container can change.
fn replace_changes(have: &Container, want: &Container) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut compare = |field: &str, old: String, new: String| {
        if old != new {
            changes.push(Change::new(field, Some(old), Some(new)));
        }
    };
    compare("image", have.image.clone(), want.image.clone());
    compare(
        "port",
        format!("{}:{}", have.bind_address, have.port),
        format!("{}:{}", want.bind_address, want.port),
    );
    compare(
        "volume",
        format!("{}:{}", have.volume, have.data_mount),
        format!("{}:{}", want.volume, want.data_mount),
    );
    if let Some(shm) = want.shm_bytes {
        compare(
            "shm_size",
            have.shm_bytes.map(format_bytes).unwrap_or_default(),
            format_bytes(shm),
        );
    }
    changes
}

/// Fields `docker update` changes in place.
fn resource_changes(have: &Container, want: &Container) -> Vec<Change> {
    let mut changes = Vec::new();
    if want.nano_cpus != have.nano_cpus {
        changes.push(Change::new(
            "cpus",
            have.nano_cpus.map(format_cpus),
            Some(want.nano_cpus.map(format_cpus).unwrap_or_else(unlimited)),
        ));
    }
    if want.memory_bytes != have.memory_bytes {
        changes.push(Change::new(
            "memory",
            have.memory_bytes.map(format_bytes),
            Some(
                want.memory_bytes
                    .map(format_bytes)
                    .unwrap_or_else(unlimited),
            ),
        ));
    }
    changes
}

fn unlimited() -> String {
    "unlimited".to_owned()
}

fn format_cpus(nano_cpus: i64) -> String {
    let cpus = nano_cpus as f64 / 1e9;
    format!("{cpus}")
}

/// Bytes in the largest binary unit that divides them.
pub fn format_bytes(bytes: i64) -> String {
    const UNITS: [(&str, i64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if bytes != 0 && bytes % size == 0 {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

fn diff_databases(desired: &Deployment, live: &Deployment, options: &DiffOptions, plan: &mut Plan) {
    for (name, want) in &desired.databases {
        let have = live.databases.get(name);
        diff_database(want, have, plan);
        diff_extensions(want, have, live.server.as_ref(), options, plan);
    }
    for name in live.databases.keys() {
        if !desired.databases.contains_key(name) {
            plan.unmanaged.push(address::database(name));
        }
    }
}

fn diff_database(want: &Database, have: Option<&Database>, plan: &mut Plan) {
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
        plan.actions.push(Action {
            address,
            kind: ActionKind::Create,
            reason: "declared in the spec, not on the server".to_owned(),
            risk: Risk::none(),
            changes,
            steps: vec![Step::Sql {
                database: None,
                statements: vec![
                    statement,
                    format!(
                        "COMMENT ON DATABASE {name} IS {}",
                        quote_literal(MANAGED_MARK)
                    ),
                ],
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
            None => plan
                .actions
                .push(create_extension(&want.name, wanted, server, address)),
            Some(installed) => {
                if let Some(action) = update_extension(&want.name, wanted, installed, address) {
                    plan.actions.push(action);
                }
            }
        }
    }
    for (name, installed) in live_extensions {
        if want.extensions.contains_key(name) || BUILTIN_EXTENSIONS.contains(&name.as_str()) {
            continue;
        }
        let address = address::extension(&want.name, name);
        if installed.managed && options.prune {
            plan.actions.push(Action {
                address,
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

fn create_extension(
    database: &str,
    wanted: &Extension,
    server: Option<&model::ServerInfo>,
    address: String,
) -> Action {
    let name = quote_ident(&wanted.name);
    let mut statement = format!("CREATE EXTENSION IF NOT EXISTS {name}");
    if let Some(schema) = &wanted.schema {
        statement.push_str(&format!(" SCHEMA {}", quote_ident(schema)));
    }
    if let Some(version) = &wanted.version {
        statement.push_str(&format!(" VERSION {}", quote_literal(version)));
    }
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
        kind: ActionKind::Create,
        reason: "declared in the spec, not installed".to_owned(),
        risk: Risk::none(),
        changes,
        steps: vec![Step::Sql {
            database: Some(database.to_owned()),
            statements: vec![
                statement,
                format!(
                    "COMMENT ON EXTENSION {name} IS {}",
                    quote_literal(MANAGED_MARK)
                ),
            ],
            transaction: true,
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
