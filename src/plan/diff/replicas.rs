//! Diff of the streaming replicas (`replicas`): each a container of the
//! server's image on a volume of its own, streaming on a slot of its own.
//!
//! A replica without a container, volume or slot is cloned again (its
//! volume holds nothing the server lacks); one whose image or creation
//! settings changed is replaced on its volume; a stopped one is started and
//! one that runs but does not stream is restarted, each waited for until it
//! streams. A replica the spec no longer declares loses its container and
//! slot; its volume stays unless `prune: true`. Nothing here sends SQL to a
//! replica: roles, databases and the rest reach them through replication.

use crate::model::address::{self, ObjectKind};
use crate::model::replicas::{AT_LEAST_PRIMARY, Replica, Replication};
use crate::model::{ContainerState, Deployment, DiffOptions};
use crate::plan::{Action, ActionKind, Change, DockerStep, Note, Plan, Risk, Step};
use crate::sql::quote_literal;

pub(super) fn diff(
    desired: &Deployment,
    live: &Deployment,
    options: &DiffOptions,
    plan: &mut Plan,
) {
    let Some(server) = &desired.container else {
        return;
    };
    let empty = Replication::default();
    let have_all = live.replication.as_ref().unwrap_or(&empty);
    if let Some(want_all) = &desired.replication {
        for want in want_all.replicas.values() {
            // Nothing of it at all is a new replica, not a lost one.
            let have = have_all.replicas.get(&want.name).filter(|have| {
                have.state != ContainerState::Missing || have.volume_exists || have.slot_exists
            });
            diff_replica(desired, want_all, want, have, &server.name, live, plan);
        }
    }
    for have in have_all.replicas.values() {
        if have.state == ContainerState::Missing && !have.slot_exists && !have.volume_exists {
            continue;
        }
        let declared = desired
            .replication
            .as_ref()
            .is_some_and(|replication| replication.replicas.contains_key(&have.name));
        // Without a `replicas` section the replicas are left alone unless
        // pruning, like the pooler; with one, those it no longer lists go.
        if desired.replication.is_none() && !options.prune {
            plan.unmanaged.push(address::replica(&have.name));
        } else if !declared {
            left_behind(have, options, plan);
        }
    }
}

/// `SELECT pg_create_physical_replication_slot(…)` unless it exists.
pub fn create_slot_statement(slot: &str) -> String {
    format!(
        "SELECT pg_create_physical_replication_slot({slot}) WHERE NOT EXISTS \
         (SELECT FROM pg_replication_slots WHERE slot_name = {slot})",
        slot = quote_literal(slot)
    )
}

fn diff_replica(
    desired_deployment: &Deployment,
    replication: &Replication,
    want: &Replica,
    have: Option<&Replica>,
    server: &str,
    live: &Deployment,
    plan: &mut Plan,
) {
    let address = address::replica(&want.name);
    let config_hash = want.config_hash();
    let desired = Replica {
        config_hash: config_hash.clone(),
        ..want.clone()
    };
    let wait = Step::Docker(DockerStep::WaitStreaming {
        name: want.container.clone(),
        slot: want.slot.clone(),
    });
    let create = Step::Docker(DockerStep::CreateReplica {
        replica: Box::new(desired.clone()),
    });
    let container_exists = have.is_some_and(|have| have.state != ContainerState::Missing);
    let clone_reasons: Vec<&str> = match have {
        None => Vec::new(),
        Some(have) => [
            (!have.volume_exists, "its volume is gone"),
            (!have.slot_exists, "its replication slot is gone"),
            (
                have.state == ContainerState::Missing && have.volume_exists,
                "its container is gone",
            ),
        ]
        .into_iter()
        .filter_map(|(applies, reason)| applies.then_some(reason))
        .collect(),
    };
    let fresh = have.is_none_or(|have| !have.volume_exists && !container_exists);
    if fresh || !clone_reasons.is_empty() {
        let mut steps = Vec::new();
        if container_exists {
            steps.push(Step::Docker(DockerStep::RemoveReplica {
                name: want.container.clone(),
            }));
        }
        steps.push(Step::Sql {
            database: None,
            statements: vec![create_slot_statement(&want.slot)],
            transaction: false,
        });
        steps.push(Step::Docker(DockerStep::CloneReplica {
            replica: Box::new(desired.clone()),
            server: server.to_owned(),
            role: replication.role.clone(),
            secret: replication.password.clone(),
        }));
        steps.push(create);
        steps.push(wait);
        if have.is_some() {
            move_pools(replication, want, live, desired_deployment, &mut steps);
        }
        let (kind, reason) = if have.is_none() {
            (
                ActionKind::Create,
                "declared in the spec (replicas), no replica exists: cloned from the server \
                 with pg_basebackup on its own slot, started as a standby and waited for until \
                 it streams"
                    .to_owned(),
            )
        } else {
            (
                ActionKind::Replace,
                format!(
                    "{}: the replica is cloned from the server again (its volume holds nothing \
                     the server lacks) and waited for until it streams",
                    clone_reasons.join(", ")
                ),
            )
        };
        plan.actions.push(Action {
            address,
            object: ObjectKind::Replica,
            kind,
            reason,
            risk: Risk::none(),
            changes: vec![
                Change::new("image", None, Some(want.image.clone())),
                Change::new("volume", None, Some(want.volume.clone())),
                Change::new("slot", None, Some(want.slot.clone())),
                Change::new("port", None, Some(want.published())),
            ],
            steps,
        });
        return;
    }
    let Some(have) = have else { return };
    let mut replace: Vec<Change> =
        super::container::image_change(live, (&have.image, &have.image_id), &want.image)
            .into_iter()
            .collect();
    if have.config_hash != config_hash {
        replace.push(Change::new(
            "config_hash",
            Some(have.config_hash.clone()).filter(|hash| !hash.is_empty()),
            Some(config_hash),
        ));
    }
    if !replace.is_empty() {
        let lowered = lowered_settings(want, live);
        let (kind, reason) = if lowered.is_empty() {
            (
                ActionKind::Replace,
                "the engine cannot change a container's image, port, resources or command in \
                 place: the replica is replaced on its volume and waited for until it streams \
                 again"
                    .to_owned(),
            )
        } else {
            (
                ActionKind::Restart,
                format!(
                    "{} must not be lower on a standby than on the server: the replica is \
                     replaced on its volume with the lower value after the server restarts",
                    lowered.join(", ")
                ),
            )
        };
        let mut steps = vec![
            Step::Docker(DockerStep::RemoveReplica {
                name: want.container.clone(),
            }),
            create,
            wait,
        ];
        move_pools(replication, want, live, desired_deployment, &mut steps);
        plan.actions.push(Action {
            address,
            object: ObjectKind::Replica,
            kind,
            reason,
            risk: Risk {
                locks: Vec::new(),
                restart: false,
                reconnects: true,
            },
            changes: replace,
            steps,
        });
        return;
    }
    let restart = Step::Docker(DockerStep::RestartReplica {
        name: want.container.clone(),
    });
    if have.state != ContainerState::Running {
        plan.actions.push(Action {
            address,
            object: ObjectKind::Replica,
            kind: ActionKind::Update,
            reason: "the replica's container is not running: it is started and waited for \
                     until it streams"
                .to_owned(),
            risk: Risk::none(),
            changes: vec![Change::new(
                "state",
                Some(state_text(have.state).to_owned()),
                Some("running".to_owned()),
            )],
            steps: vec![restart, wait],
        });
        return;
    }
    if !have.streaming {
        plan.actions.push(Action {
            address,
            object: ObjectKind::Replica,
            kind: ActionKind::Restart,
            reason: format!(
                "the replica runs but the server streams no WAL to it on its slot{}: it is \
                 restarted and waited for until it streams",
                have.last_error
                    .as_ref()
                    .map(|error| format!(" (its log: {error})"))
                    .unwrap_or_default()
            ),
            risk: Risk {
                locks: Vec::new(),
                restart: false,
                reconnects: true,
            },
            changes: vec![Change::new(
                "streaming",
                Some("no".to_owned()),
                Some("yes".to_owned()),
            )],
            steps: vec![restart, wait],
        });
        return;
    }
    if let (Some(limit), Some(lag)) = (replication.max_lag_bytes, have.lag_bytes)
        && lag > limit
    {
        plan.notes.push(Note {
            address,
            message: format!(
                "replays {} behind the server, beyond `replicas.max_lag` ({})",
                super::format_bytes(lag as i64),
                super::format_bytes(limit as i64)
            ),
        });
    }
}

/// The settings a standby needs at least as high as the server's that the
/// spec lowers below what the server runs with now: the replica then goes
/// after the server's restart, not before.
fn lowered_settings(want: &Replica, live: &Deployment) -> Vec<String> {
    AT_LEAST_PRIMARY
        .iter()
        .filter(|name| {
            let wanted = want
                .settings
                .get(**name)
                .and_then(|value| value.parse::<i64>().ok());
            let running = live
                .settings
                .get(**name)
                .and_then(|setting| setting.value.parse::<i64>().ok());
            matches!((wanted, running), (Some(wanted), Some(running)) if wanted < running)
        })
        .map(|name| format!("`{name}`"))
        .collect()
}

/// While the replica the read-only pools go to is replaced, they go to
/// another replica that streams: the pooler's configuration is written with
/// that one before the replica is removed, and again with it once it
/// streams, each reloaded online.
fn move_pools(
    replication: &Replication,
    want: &Replica,
    live: &Deployment,
    desired: &Deployment,
    steps: &mut Vec<Step>,
) {
    let (Some(pooler), Some(have_pooler)) = (&desired.pooler, &live.pooler) else {
        return;
    };
    let routed = pooler.routes.values().any(|route| route.replica);
    if !routed
        || have_pooler.state != ContainerState::Running
        || route_replica(desired).map(|replica| &replica.name) != Some(&want.name)
    {
        return;
    }
    let streaming = live
        .replication
        .iter()
        .flat_map(|live| live.replicas.values())
        .find(|other| {
            other.name != want.name
                && other.streaming
                && other.state == ContainerState::Running
                && replication.replicas.contains_key(&other.name)
        });
    let Some(other) = streaming else {
        return;
    };
    let normal = super::pooler::config(desired, pooler);
    let mut moved = normal.clone();
    for route in moved.routes.values_mut() {
        if route.host == want.container {
            route.host = other.container.clone();
        }
    }
    let name = desired.pooler_container();
    let write = |config: crate::plan::PoolerConfig| {
        [
            Step::Docker(DockerStep::WritePoolerConfig {
                name: name.clone(),
                config: Box::new(config),
            }),
            Step::Docker(DockerStep::ReloadPooler { name: name.clone() }),
        ]
    };
    let mut around: Vec<Step> = write(moved).into();
    around.append(steps);
    around.extend(write(normal));
    *steps = around;
}

fn state_text(state: ContainerState) -> &'static str {
    match state {
        ContainerState::Running => "running",
        ContainerState::Stopped => "stopped",
        ContainerState::Restarting => "restarting",
        ContainerState::Missing => "missing",
    }
}

/// A replica the spec no longer declares: its container and slot go; its
/// volume only when pruning.
fn left_behind(have: &Replica, options: &DiffOptions, plan: &mut Plan) {
    let address = address::replica(&have.name);
    let mut steps = Vec::new();
    let mut changes = Vec::new();
    if have.state != ContainerState::Missing {
        changes.push(Change::new("container", Some(have.container.clone()), None));
        steps.push(Step::Docker(DockerStep::RemoveReplica {
            name: have.container.clone(),
        }));
    }
    if have.slot_exists {
        changes.push(Change::new("slot", Some(have.slot.clone()), None));
        steps.push(Step::Docker(DockerStep::DropReplicaSlot {
            slot: have.slot.clone(),
        }));
    }
    let reason = if options.prune && have.volume_exists {
        changes.push(Change::new("volume", Some(have.volume.clone()), None));
        steps.push(Step::Docker(DockerStep::RemoveReplicaVolume {
            name: have.volume.clone(),
        }));
        "no longer in the spec: its container, slot and volume (`prune: true`; it holds a copy \
         of the server's data, nothing else) are removed"
    } else {
        "no longer in the spec: its container and slot are removed (a slot nobody streams on \
         keeps all WAL on the server); its volume is kept (`prune: true` removes it)"
    };
    if steps.is_empty() {
        return;
    }
    plan.actions.push(Action {
        address,
        object: ObjectKind::Replica,
        kind: ActionKind::Delete,
        reason: reason.to_owned(),
        risk: Risk::none(),
        changes,
        steps,
    });
}

/// The replica a read-only pool goes to: the first the spec declares, by
/// name. Apply keeps every declared replica streaming.
pub fn route_replica(desired: &Deployment) -> Option<&Replica> {
    desired
        .replication
        .as_ref()
        .and_then(|replication| replication.replicas.values().next())
}

/// How the plan shows a replica's Docker call; `None` for other calls.
pub fn step_text(call: &DockerStep) -> Option<String> {
    Some(match call {
        DockerStep::CloneReplica {
            replica,
            server,
            role,
            ..
        } => format!(
            "clone `{server}` into volume `{}` with pg_basebackup as `{role}` on slot `{}` \
             (the password in a file in the data directory), as a standby",
            replica.volume, replica.slot
        ),
        DockerStep::CreateReplica { replica } => format!(
            "create and start container `{}` ({}, {}) on volume `{}`",
            replica.container,
            replica.image,
            replica.published(),
            replica.volume
        ),
        DockerStep::RestartReplica { name } => format!("start (or restart) container `{name}`"),
        DockerStep::WaitStreaming { name, slot } => {
            format!("wait until `{name}` streams on slot `{slot}`")
        }
        DockerStep::RemoveReplica { name } => {
            format!("stop and remove container `{name}` (its volume stays)")
        }
        DockerStep::DropReplicaSlot { slot } => {
            format!("drop replication slot `{slot}` on the server")
        }
        DockerStep::RemoveReplicaVolume { name } => format!("remove volume `{name}`"),
        _ => return None,
    })
}

/// What the replicas would look like after `action` ran, for the in-memory
/// model of apply.
pub fn simulate(next: &mut Deployment, action: &Action) {
    let replication = next.replication.get_or_insert_with(Replication::default);
    for step in &action.steps {
        match step {
            Step::Docker(DockerStep::CreateReplica { replica }) => {
                let image_id = next
                    .images
                    .get(&replica.image)
                    .map(|image| image.id.clone())
                    .unwrap_or_default();
                replication.replicas.insert(
                    replica.name.clone(),
                    Replica {
                        state: ContainerState::Running,
                        volume_exists: true,
                        slot_exists: true,
                        streaming: true,
                        image_id,
                        ..(**replica).clone()
                    },
                );
            }
            Step::Docker(DockerStep::RestartReplica { name }) => {
                for replica in replication.replicas.values_mut() {
                    if replica.container == *name {
                        replica.state = ContainerState::Running;
                        replica.streaming = true;
                    }
                }
            }
            Step::Docker(DockerStep::RemoveReplica { name }) => {
                for replica in replication.replicas.values_mut() {
                    if replica.container == *name {
                        replica.state = ContainerState::Missing;
                    }
                }
            }
            Step::Docker(DockerStep::DropReplicaSlot { slot }) => {
                for replica in replication.replicas.values_mut() {
                    if replica.slot == *slot {
                        replica.slot_exists = false;
                    }
                }
            }
            Step::Docker(DockerStep::RemoveReplicaVolume { name }) => {
                for replica in replication.replicas.values_mut() {
                    if replica.volume == *name {
                        replica.volume_exists = false;
                    }
                }
            }
            _ => {}
        }
    }
    replication
        .replicas
        .retain(|_, replica| replica.state != ContainerState::Missing || replica.slot_exists);
}
