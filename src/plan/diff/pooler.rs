//! Diff of the PgBouncer pooler: its container (image, published port,
//! network, run state) and its configuration (pool sizes and timeouts, the
//! databases it serves, the roles it authenticates).
//!
//! Everything PgBouncer can take online is changed by rewriting its
//! configuration and `RELOAD`: connected clients stay connected. Only what
//! the engine cannot change in place — the image and the published port —
//! replaces the container, and only that action carries `reconnects`.

use crate::model::DiffOptions;
use crate::model::address::ObjectKind;
use std::collections::BTreeMap;

use crate::model::{ContainerState, Deployment, PoolRoute, Pooler, PoolerUser, address};
use crate::plan::{Action, ActionKind, Change, DockerStep, Note, Plan, PoolerConfig, Risk, Step};

/// The port PgBouncer listens on inside its container, and the server's.
pub const LISTEN_PORT: u16 = 6432;
const SERVER_PORT: u16 = 5432;

/// The database name of PgBouncer's admin console; never a served database.
const ADMIN_DATABASE: &str = "pgbouncer";

/// Diffs the pooler. Runs after the roles, so that a role created or given a
/// new password in the same plan refreshes the auth file too.
pub(super) fn diff(
    desired: &Deployment,
    live: &Deployment,
    options: &DiffOptions,
    plan: &mut Plan,
) {
    let Some(server) = &desired.container else {
        return;
    };
    let Some(want) = &desired.pooler else {
        left_behind(desired, live, options, plan);
        return;
    };
    let name = desired.pooler_container();
    let address = address::pooler(&desired.name);
    let config = config(desired, want);
    let have = live
        .pooler
        .as_ref()
        .filter(|pooler| pooler.state != ContainerState::Missing);
    let write = Step::Docker(DockerStep::WritePoolerConfig {
        name: name.clone(),
        config: Box::new(config.clone()),
    });
    let create = Step::Docker(DockerStep::CreatePooler {
        name: name.clone(),
        pooler: Box::new(want.clone()),
        network: server.network.clone(),
    });
    let start = Step::Docker(DockerStep::StartPooler { name: name.clone() });

    let Some(have) = have else {
        plan.actions.push(Action {
            address,
            object: ObjectKind::Pooler,
            kind: ActionKind::Create,
            reason: "declared in the spec, no pooler container exists".to_owned(),
            risk: Risk::none(),
            changes: created_fields(want, &config),
            steps: vec![create, write, start],
        });
        return;
    };

    let mut replace = replace_changes(have, want, live);
    let mut reason = "the engine cannot change the image or the published port of a container \
                      in place; the server is not touched"
        .to_owned();
    if let (Some(error), ContainerState::Running) = (&have.console_error, have.state) {
        reason = "PgBouncer's admin console does not answer, so its configuration cannot be \
                  read or reloaded; a new container starts from the spec and the server is \
                  not touched"
            .to_owned();
        replace.push(Change::new(
            "admin_console",
            Some(format!("no answer: {error}")),
            Some("answers".to_owned()),
        ));
    }
    if !replace.is_empty() {
        plan.actions.push(Action {
            address,
            object: ObjectKind::Pooler,
            kind: ActionKind::Replace,
            reason,
            risk: Risk {
                locks: Vec::new(),
                restart: false,
                reconnects: true,
            },
            changes: replace,
            steps: vec![
                Step::Docker(DockerStep::RemovePooler { name: name.clone() }),
                create,
                write,
                start,
            ],
        });
        return;
    }

    let mut changes = Vec::new();
    let mut steps = Vec::new();
    if have.network != server.network && !server.network.is_empty() {
        changes.push(Change::new(
            "network",
            Some(have.network.clone()).filter(|network| !network.is_empty()),
            Some(server.network.clone()),
        ));
        steps.push(Step::Docker(DockerStep::ConnectNetwork {
            network: server.network.clone(),
            container: name.clone(),
            aliases: Vec::new(),
        }));
    }
    let mut config_changes = setting_changes(have, want, &config);
    config_changes.extend(database_changes(desired, have, want));
    config_changes.extend(user_changes(desired, have, &config, plan));
    config_changes.extend(tls_change(desired, live, have, plan));
    let stopped = have.state == ContainerState::Stopped;
    let resume = have.paused && !stopped;
    if resume {
        changes.push(Change::new(
            "paused",
            Some("yes".to_owned()),
            Some("no".to_owned()),
        ));
    }
    if stopped {
        changes.push(Change::new(
            "state",
            Some("stopped".to_owned()),
            Some("running".to_owned()),
        ));
        // What a stopped PgBouncer would run with is unknown: write the
        // configuration before it starts.
        steps.push(write);
        steps.push(start);
    } else if !config_changes.is_empty() {
        steps.push(write);
        steps.push(Step::Docker(DockerStep::ReloadPooler {
            name: name.clone(),
        }));
    }
    if resume {
        steps.push(Step::Docker(DockerStep::ResumePooler { name }));
    }
    changes.extend(config_changes);
    if changes.is_empty() {
        return;
    }
    plan.actions.push(Action {
        address,
        object: ObjectKind::Pooler,
        kind: ActionKind::Update,
        reason: if stopped {
            "the pooler container is stopped; its configuration is rewritten and it is started"
                .to_owned()
        } else if resume && steps.len() == 1 {
            "pgspec paused PgBouncer for an upgrade that stopped before its end, and it holds \
             its clients: `RESUME` lets them on to the server"
                .to_owned()
        } else {
            "PgBouncer takes these online: the configuration is rewritten and reloaded, \
             connected clients stay connected"
                .to_owned()
        },
        risk: Risk::none(),
        changes,
        steps,
    });
}

/// The server's certificate, when the pooler serves another one (or none),
/// or when this plan writes the server's anew.
fn tls_change(
    desired: &Deployment,
    live: &Deployment,
    have: &Pooler,
    plan: &Plan,
) -> Option<Change> {
    let container = desired.container.as_ref()?;
    desired.tls.as_ref()?;
    if have.state != ContainerState::Running {
        return None;
    }
    let server = live.tls.as_ref().and_then(|tls| {
        tls.wanted
            .as_ref()
            .or(tls.installed.as_ref())
            .map(|files| files.certificate.fingerprint.clone())
    });
    let rewritten = plan
        .actions
        .iter()
        .any(|action| action.address == address::tls(&container.name));
    if !rewritten && server.is_some() && have.tls_fingerprint == server {
        return None;
    }
    let short =
        |fingerprint: &String| format!("SHA256:{}", &fingerprint[..fingerprint.len().min(16)]);
    Some(Change::new(
        "tls_certificate",
        have.tls_fingerprint.as_ref().map(short),
        Some("the server's".to_owned()),
    ))
}

/// A pooler container pgspec made and the spec no longer declares: removed
/// when pruning (it holds no data), reported otherwise.
fn left_behind(desired: &Deployment, live: &Deployment, options: &DiffOptions, plan: &mut Plan) {
    let Some(have) = live
        .pooler
        .as_ref()
        .filter(|pooler| pooler.state != ContainerState::Missing)
    else {
        return;
    };
    let address = address::pooler(&desired.name);
    if !options.prune {
        plan.unmanaged.push(address);
        return;
    }
    plan.actions.push(Action {
        address,
        object: ObjectKind::Pooler,
        kind: ActionKind::Delete,
        reason: "created by pgspec and no longer in the spec; pruning is on".to_owned(),
        risk: Risk {
            locks: Vec::new(),
            restart: false,
            reconnects: have.state == ContainerState::Running,
        },
        changes: vec![Change::new("image", Some(have.image.clone()), None)],
        steps: vec![Step::Docker(DockerStep::RemovePooler {
            name: desired.pooler_container(),
        })],
    });
}

/// The configuration the desired pooler runs with.
pub(super) fn config(desired: &Deployment, want: &Pooler) -> PoolerConfig {
    let server = desired.container.as_ref();
    PoolerConfig {
        server_host: server.map(|server| server.name.clone()).unwrap_or_default(),
        server_port: SERVER_PORT,
        databases: desired
            .databases
            .keys()
            .chain(want.routes.keys())
            .map(|name| {
                (
                    name.clone(),
                    want.databases.get(name).cloned().unwrap_or_default(),
                )
            })
            .collect(),
        routes: routes(desired, want),
        settings: want.settings.clone(),
        admin_user: server
            .map(|server| server.superuser.clone())
            .unwrap_or_default(),
        users: desired.pooler_users(),
        tls: desired
            .tls
            .as_ref()
            .and_then(|tls| tls.source.clone())
            .map(Box::new),
    }
}

/// Where each pool of `want.routes` goes: a read-only pool to the replica
/// `super::replicas::route_replica` names, any other to the server.
pub(super) fn routes(desired: &Deployment, want: &Pooler) -> BTreeMap<String, PoolRoute> {
    let server = desired
        .container
        .as_ref()
        .map(|server| server.name.clone())
        .unwrap_or_default();
    let replica = super::replicas::route_replica(desired).map(|replica| replica.container.clone());
    want.routes
        .iter()
        .map(|(name, route)| {
            let host = match (&replica, route.replica) {
                (Some(replica), true) => replica.clone(),
                _ => server.clone(),
            };
            (
                name.clone(),
                PoolRoute {
                    database: route.database.clone(),
                    replica: false,
                    host,
                },
            )
        })
        .collect()
}

fn port_text(pooler: &Pooler) -> String {
    format!("{}:{}", pooler.bind_address, pooler.port)
}

/// What a new pooler shows in the plan.
fn created_fields(want: &Pooler, config: &PoolerConfig) -> Vec<Change> {
    let mut changes = vec![
        Change::new("image", None, Some(want.image.clone())),
        Change::new("port", None, Some(port_text(want))),
    ];
    for (setting, value) in &want.settings {
        changes.push(Change::new(setting.clone(), None, Some(value.clone())));
    }
    let databases = if config.databases.is_empty() {
        "* (every database)".to_owned()
    } else {
        config
            .databases
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    changes.push(Change::new("databases", None, Some(databases)));
    for (database, overrides) in &config.databases {
        for (setting, value) in overrides {
            changes.push(Change::new(
                format!("databases.{database}.{setting}"),
                None,
                Some(value.clone()),
            ));
        }
    }
    changes.push(Change::new("users", None, Some(config.users.join(", "))));
    changes
}

/// Fields only a new container can change.
fn replace_changes(have: &Pooler, want: &Pooler, live: &Deployment) -> Vec<Change> {
    let mut changes: Vec<Change> =
        super::container::image_change(live, (&have.image, &have.image_id), &want.image)
            .into_iter()
            .collect();
    if port_text(have) != port_text(want) {
        changes.push(Change::new(
            "port",
            Some(port_text(have)),
            Some(port_text(want)),
        ));
    }
    changes
}

/// Settings the spec states, and those pgspec always writes, that PgBouncer
/// reports otherwise. A stopped pooler reports none, and a running one whose
/// console did not answer is replaced, so only a running, answering pooler
/// is compared.
fn setting_changes(have: &Pooler, want: &Pooler, config: &PoolerConfig) -> Vec<Change> {
    if have.state != ContainerState::Running {
        return Vec::new();
    }
    Pooler::base_settings(&config.admin_user)
        .iter()
        .chain(&want.settings)
        .filter(|(setting, value)| have.settings.get(*setting) != Some(*value))
        .map(|(setting, value)| {
            Change::new(
                setting.clone(),
                have.settings.get(setting).cloned(),
                Some(value.clone()),
            )
        })
        .collect()
}

/// The served databases and their overrides. With no database in the spec
/// PgBouncer serves every one through a fallback entry, and what it has
/// created on demand is not compared.
fn database_changes(desired: &Deployment, have: &Pooler, want: &Pooler) -> Vec<Change> {
    let mut changes = Vec::new();
    if have.state != ContainerState::Running || desired.databases.is_empty() {
        return changes;
    }
    for name in desired.databases.keys() {
        let Some(live) = have.databases.get(name) else {
            changes.push(Change::new(
                format!("databases.{name}"),
                None,
                Some("served".to_owned()),
            ));
            continue;
        };
        for (setting, value) in want.databases.get(name).into_iter().flatten() {
            if live.get(setting) != Some(value) {
                changes.push(Change::new(
                    format!("databases.{name}.{setting}"),
                    live.get(setting).cloned(),
                    Some(value.clone()),
                ));
            }
        }
    }
    for (name, route) in routes(desired, want) {
        if let Some(served) = have.served.get(&name)
            && (served.host != route.host || served.database != route.database)
        {
            changes.push(Change::new(
                format!("databases.{name}"),
                Some(format!("{}/{}", served.host, served.database)),
                Some(format!("{}/{}", route.host, route.database)),
            ));
        }
        if let Some(live) = have.databases.get(&name) {
            for (setting, value) in want.databases.get(&name).into_iter().flatten() {
                if live.get(setting) != Some(value) {
                    changes.push(Change::new(
                        format!("databases.{name}.{setting}"),
                        live.get(setting).cloned(),
                        Some(value.clone()),
                    ));
                }
            }
        } else {
            changes.push(Change::new(
                format!("databases.{name}"),
                None,
                Some(format!("{}/{}", route.host, route.database)),
            ));
        }
    }
    for name in have.databases.keys() {
        if name != ADMIN_DATABASE
            && !desired.databases.contains_key(name)
            && !want.routes.contains_key(name)
        {
            changes.push(Change::new(
                format!("databases.{name}"),
                Some("served".to_owned()),
                None,
            ));
        }
    }
    changes
}

/// The auth file: every served role with the server's current verifier, and
/// no other. A role this plan creates or gives a new password has a new
/// verifier by the time the pooler's turn comes.
fn user_changes(
    desired: &Deployment,
    have: &Pooler,
    config: &PoolerConfig,
    plan: &mut Plan,
) -> Vec<Change> {
    let mut changes = Vec::new();
    for user in &config.users {
        let state = have.users.get(user).copied();
        let label = |state: PoolerUser| match state {
            PoolerUser::Current => "current",
            PoolerUser::Stale => "stale",
            PoolerUser::NoVerifier => "no verifier",
        };
        let new = if role_verifier_changes(plan, user) {
            "new verifier"
        } else {
            match state {
                Some(PoolerUser::Current) | Some(PoolerUser::NoVerifier) => continue,
                // Stale, or not seen because the server could not be read.
                Some(PoolerUser::Stale) | None => "current",
            }
        };
        changes.push(Change::new(
            format!("users.{user}"),
            state.map(|state| label(state).to_owned()),
            Some(new.to_owned()),
        ));
    }
    for (user, state) in &have.users {
        if !config.users.contains(user) && *state != PoolerUser::NoVerifier {
            changes.push(Change::new(
                format!("users.{user}"),
                Some("in the auth file".to_owned()),
                None,
            ));
        }
    }
    for (user, state) in &have.users {
        if *state == PoolerUser::NoVerifier
            && config.users.contains(user)
            && !role_verifier_changes(plan, user)
            && desired
                .roles
                .get(user)
                .is_none_or(|role| role.password.is_none())
        {
            plan.notes.push(Note {
                address: address::pooler(&desired.name),
                message: format!(
                    "role `{user}` has no SCRAM verifier on the server, so it cannot log in \
                     through the pooler until it has a password"
                ),
            });
        }
    }
    changes
}

/// Whether an action of the plan creates the role or sets its password.
fn role_verifier_changes(plan: &Plan, user: &str) -> bool {
    let role = address::role(user);
    plan.actions.iter().any(|action| {
        action.address == role
            && (action.kind == ActionKind::Create
                || action
                    .steps
                    .iter()
                    .any(|step| matches!(step, Step::SetPassword { .. })))
    })
}
