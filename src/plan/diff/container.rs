//! Diff of the server container: field by field, so the plan says exactly
//! what changed and what it needs — `docker update` in place, a start, or a
//! replacement on the same volume — and refuses a major version change on
//! existing data.

use crate::model::address::ObjectKind;
use crate::model::{Container, ContainerState, Deployment, address};
use crate::plan::{Action, ActionKind, Change, DockerStep, Note, Plan, PlanError, Risk, Step};

pub use crate::model::notation::format_bytes;

use super::{adoption, networks};

/// Diffs the server container. Returns whether the state inside PostgreSQL
/// is known: observed, or known to be empty because the data directory will
/// be initialised from scratch.
pub(super) fn diff_container(desired: &Deployment, live: &Deployment, plan: &mut Plan) -> bool {
    let Some(want) = &desired.container else {
        return live.server.is_some();
    };
    super::upgrade::image_not_local(want, live, plan);
    // Where the data lives comes from the image; until the image is local
    // (apply pulls it) the layout is read at apply time.
    let resolved;
    let want = match live.images.get(&want.image) {
        Some(image) => {
            resolved = want.with_layout(&image.data_layout());
            &resolved
        }
        None => want,
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

    if let Some(error) = resources_beyond_engine(want, live) {
        plan.errors.push(PlanError {
            address: address.clone(),
            message: error,
        });
        return false;
    }
    if let Some(error) = major_version_error(want, live) {
        let have = live
            .container
            .as_ref()
            .filter(|container| container.state != ContainerState::Missing);
        if let (Some(method), Some(have), Some(majors)) = (want.upgrade, have, majors(want, live)) {
            return super::upgrade::plan_upgrade(desired, have, want, method, majors, live, plan);
        }
        plan.errors.push(PlanError {
            address: address.clone(),
            message: error,
        });
        return false;
    }
    // A server started beside another one on the same data directory
    // corrupts it: creating or replacing the container waits until no
    // other container mounts the volume.
    let shared_volume = adoption::shared_volume_error(want, live);
    let starts_server = match have {
        None => true,
        Some(have) => {
            let replaced = !replace_changes(have, want).is_empty()
                || !lifted_limits(have, want).is_empty()
                || (!have.foreign
                    && have.image == want.image
                    && image_id_change(live, &want.image, &have.image_id).is_some());
            have.state != ContainerState::Running || (adoption::belongs(have, want) && replaced)
        }
    };
    if let Some(error) = shared_volume.filter(|_| starts_server) {
        plan.errors.push(PlanError {
            address: address.clone(),
            message: error,
        });
        return false;
    }
    if let Some(message) = adoption::shared_volume_note(want, live) {
        plan.notes.push(Note {
            address: address.clone(),
            message,
        });
    }
    if networks::absent_errors(want, live, plan) {
        return false;
    }

    match have {
        None => {
            let mut steps: Vec<Step> = create_network_step(have_network_exists(live), want)
                .into_iter()
                .collect();
            if fresh_volume {
                steps.push(Step::Docker(DockerStep::CreateVolume {
                    name: want.volume.clone(),
                }));
            }
            if !fresh_volume {
                // The volume may hold a data directory the image would not
                // find (another layout): checked before the server starts.
                steps.push(prepare_step(want));
            }
            steps.extend(start_steps(want));
            if !fresh_volume {
                steps.push(verify_step(want, live));
            }
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
                object: ObjectKind::Container,
                kind: ActionKind::Create,
                reason,
                risk: Risk::none(),
                changes: container_fields(None, want),
                steps,
            });
        }
        Some(have) if !adoption::belongs(have, want) => {
            if !adoption::diff(have, want, &desired.name, live, plan) {
                return false;
            }
        }
        Some(have) => {
            let mut replace_changes = replace_changes(have, want);
            if have.image == want.image
                && !have.foreign
                && let Some(change) = image_id_change(live, &want.image, &have.image_id)
            {
                replace_changes.push(change);
            }
            if let Some(message) = adoption::older_image_note(have, want, live) {
                plan.notes.push(Note {
                    address: address.clone(),
                    message,
                });
            }
            // The engine takes no limit back in place (`docker update`
            // ignores a zero and refuses less than 6 MB): lifting one takes
            // a new container.
            let lifted = lifted_limits(have, want);
            // Fields only a new container changes, beside any lifted limit.
            let forced = !replace_changes.is_empty();
            if forced || !lifted.is_empty() {
                let server_data_directory = live
                    .server
                    .as_ref()
                    .and_then(|server| server.data_directory.as_deref());
                if let Some(reason) = have
                    .data_home()
                    .unproven(&want.volume, server_data_directory)
                {
                    plan.errors.push(PlanError {
                        address,
                        message: unproven_message(have, want, &reason),
                    });
                    return false;
                }
                // The new container gets every desired field, so show the
                // in-place ones that change with it too: a limit the spec
                // does not set is gone from it, whoever made the old one.
                replace_changes.extend(resource_changes(have, want, false));
                replace_changes.extend(networks::joins(have, want).changes);
                let mut steps: Vec<Step> = create_network_step(have.network_exists, want)
                    .into_iter()
                    .collect();
                steps.push(prepare_step(want));
                steps.push(Step::Docker(DockerStep::RemoveContainer {
                    name: want.name.clone(),
                }));
                steps.extend(start_steps(want));
                steps.push(verify_step(want, live));
                plan.actions.push(Action {
                    address,
                    object: ObjectKind::Container,
                    kind: ActionKind::Replace,
                    reason: if lifted.is_empty() {
                        "the engine cannot change these fields of a container in place; \
                         the data volume is kept"
                            .to_owned()
                    } else if !forced {
                        format!(
                            "the engine cannot lift a container's {} in place; the data volume \
                             is kept",
                            limits(&lifted)
                        )
                    } else {
                        format!(
                            "the engine cannot change these fields of a container in place, nor \
                             lift its {}; the data volume is kept",
                            limits(&lifted)
                        )
                    },
                    risk: Risk {
                        locks: Vec::new(),
                        restart: true,
                        reconnects: true,
                    },
                    changes: replace_changes,
                    steps,
                });
            } else {
                let (changes, steps, risk) = in_place(have, want);
                if let Some(message) = kept_limits_note(have, want) {
                    plan.notes.push(Note {
                        address: address.clone(),
                        message,
                    });
                }
                if let Some(message) = health_note(have) {
                    plan.notes.push(Note {
                        address: address.clone(),
                        message,
                    });
                }
                if !changes.is_empty() {
                    plan.actions.push(Action {
                        address,
                        object: ObjectKind::Container,
                        kind: ActionKind::Update,
                        reason: "changed in place (docker update / start)".to_owned(),
                        risk,
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

/// What changes in the live container without a new one: resources and
/// the restart policy (`docker update`), the deployment's network, the
/// networks the spec joins, and a start when it is stopped.
pub(super) fn in_place(have: &Container, want: &Container) -> (Vec<Change>, Vec<Step>, Risk) {
    let mut changes = resource_changes(have, want, have.foreign);
    let mut steps = Vec::new();
    if !changes.is_empty() {
        steps.push(Step::Docker(DockerStep::UpdateResources {
            name: want.name.clone(),
            nano_cpus: want.nano_cpus,
            memory_bytes: want.memory_bytes,
            restart_policy: Some(want.restart_policy.clone()).filter(|policy| !policy.is_empty()),
            cpu_shares: want.cpu_shares,
            memory_reservation_bytes: want.memory_reservation_bytes,
        }));
    }
    if have.network != want.network {
        changes.push(Change::new(
            "network",
            Some(have.network.clone()).filter(|network| !network.is_empty()),
            Some(want.network.clone()),
        ));
        steps.extend(network_steps(have.network_exists, want));
    }
    let joins = networks::joins(have, want);
    changes.extend(joins.changes);
    steps.extend(joins.steps);
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
    let risk = Risk {
        reconnects: joins.reconnects,
        ..Risk::none()
    };
    (changes, steps, risk)
}

fn have_network_exists(live: &Deployment) -> bool {
    live.container
        .as_ref()
        .is_some_and(|container| container.network_exists)
}

/// One restart at the end of apply for every setting that needs one, when
/// pgspec runs the server's container. An external server is restarted by
/// whoever runs it; its plan says so and drift keeps showing it until then.
pub(super) fn restart_for_settings(desired: &Deployment, plan: &mut Plan) {
    let Some(want) = &desired.container else {
        return;
    };
    let settings: Vec<String> = plan
        .actions
        .iter()
        .filter(|action| action.risk.restart && action.object == ObjectKind::Setting)
        .map(|action| action.address.trim_start_matches("setting.").to_owned())
        .collect();
    if settings.is_empty() {
        return;
    }
    plan.actions.push(Action {
        address: address::container(&want.name),
        object: ObjectKind::Container,
        kind: ActionKind::Restart,
        reason: format!(
            "{} take(s) effect only after a server restart; the server restarts once, after \
             every other change",
            settings
                .iter()
                .map(|setting| format!("`{setting}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        risk: Risk {
            locks: Vec::new(),
            restart: true,
            reconnects: true,
        },
        changes: Vec::new(),
        steps: vec![
            Step::Docker(DockerStep::RestartContainer {
                name: want.name.clone(),
            }),
            Step::Docker(DockerStep::WaitReady {
                name: want.name.clone(),
            }),
        ],
    });
}

/// Creates the deployment's network when it is missing and pgspec owns
/// it; an existing network the spec names that is missing is a plan error
/// (`networks::absent_errors`).
fn create_network_step(network_exists: bool, want: &Container) -> Option<Step> {
    (!network_exists && !want.network.is_empty() && !want.network_external).then(|| {
        Step::Docker(DockerStep::CreateNetwork {
            name: want.network.clone(),
        })
    })
}

/// Creates the deployment's network when missing and attaches a running
/// container to it (a new container is attached by its create step).
fn network_steps(network_exists: bool, want: &Container) -> Vec<Step> {
    let mut steps: Vec<Step> = create_network_step(network_exists, want)
        .into_iter()
        .collect();
    steps.push(Step::Docker(DockerStep::ConnectNetwork {
        network: want.network.clone(),
        container: want.name.clone(),
        aliases: networks::deployment_aliases(want).to_vec(),
    }));
    steps
}

/// Why a helper container (pooler, exporter) must be replaced for its
/// image: another tag, or the same tag now naming another image than the
/// one it runs (`running_id`).
pub(super) fn image_change(
    live: &Deployment,
    (have, running_id): (&str, &str),
    want: &str,
) -> Option<Change> {
    if have != want {
        return Some(Change::new(
            "image",
            Some(have.to_owned()),
            Some(want.to_owned()),
        ));
    }
    // The tag now names another image (pulled or rebuilt since).
    image_id_change(live, want, running_id)
}

/// A container still running an older image of its tag: the tag `image`
/// was pulled or rebuilt since and names another image than the one the
/// container runs (`running_id`). No change when either id is unknown.
/// The server, pooler and backup containers are all replaced on it, so the
/// new image is what runs.
pub(super) fn image_id_change(live: &Deployment, image: &str, running_id: &str) -> Option<Change> {
    if running_id.is_empty() {
        return None;
    }
    let local = live.images.get(image)?;
    (!local.id.is_empty() && local.id != running_id).then(|| {
        Change::new(
            "image_id",
            Some(short_id(running_id)),
            Some(short_id(&local.id)),
        )
    })
}

fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// Checks, before the live container is touched, that the new one will find
/// the data directory (see `DockerStep::PrepareContainer`).
fn prepare_step(want: &Container) -> Step {
    Step::Docker(DockerStep::PrepareContainer {
        container: Box::new(want.clone()),
    })
}

/// Checks, once the new server runs, that it runs on the data it had.
fn verify_step(want: &Container, live: &Deployment) -> Step {
    Step::Docker(DockerStep::VerifyData {
        name: want.name.clone(),
        databases: live.databases.keys().cloned().collect(),
    })
}

/// The plan error for a container whose data directory is not proven to be
/// on the spec's volume: replacing it could lose every database.
pub fn unproven_message(have: &Container, want: &Container, reason: &str) -> String {
    let target = if want.pgdata.is_empty() {
        "where the image keeps PGDATA".to_owned()
    } else {
        format!(
            "so that it ends up at `{}` with the volume mounted at `{}`",
            want.pgdata, want.data_mount
        )
    };
    format!(
        "pgspec will not replace container `{name}`: {reason}. A new container would not \
         have this data directory, and every database in it would be lost. Nothing was \
         changed. To keep the data, stop the server and move its data directory onto volume \
         `{volume}` {target} (for example with `cp -a` between the two mounts in a throwaway \
         container), or dump it with `pg_dumpall`; then plan again",
        name = have.name,
        volume = want.volume,
    )
}

/// The steps that create and start a container and wait for the server.
pub(super) fn start_steps(want: &Container) -> Vec<Step> {
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

/// A plan error when the spec asks for more CPUs or memory than the engine
/// has: the engine would refuse the container, so say it before anything
/// starts.
fn resources_beyond_engine(want: &Container, live: &Deployment) -> Option<String> {
    let have = live.container.as_ref()?;
    if let (Some(wanted), Some(cpus)) = (want.nano_cpus, have.engine_cpus)
        && wanted > cpus * 1_000_000_000
    {
        return Some(format!(
            "the spec asks for {} CPUs but the Docker engine has {cpus}; lower \
             `postgres.resources.cpus` or run on a larger host",
            format_cpus(wanted)
        ));
    }
    if let (Some(wanted), Some(memory)) = (want.memory_bytes, have.engine_memory_bytes)
        && wanted > memory
    {
        return Some(format!(
            "the spec asks for {} of memory but the Docker engine has {}; lower \
             `postgres.resources.memory` or run on a larger host",
            format_bytes(wanted),
            format_bytes(memory)
        ));
    }
    None
}

/// The data directory's major version and the image's, when both are
/// known.
fn majors(want: &Container, live: &Deployment) -> Option<(u32, u32)> {
    let data_major = live.container.as_ref()?.data_major?;
    let image_major = live.images.get(&want.image)?.pg_major?;
    Some((data_major, image_major))
}

/// Refuses a change of PostgreSQL major version on an existing data
/// directory.
fn major_version_error(want: &Container, live: &Deployment) -> Option<String> {
    let (data_major, image_major) = majors(want, live)?;
    (data_major != image_major).then(|| {
        format!(
            "image `{}` runs PostgreSQL {image_major} but the data directory on volume `{}` \
             was created by PostgreSQL {data_major}; a major version change needs an upgrade \
             and pgspec will not start a different major version on existing data. Declare \
             one (`postgres.upgrade: {{ method: dump-restore }}`) for pgspec to copy the data \
             into a server of the new version, keeping the old data for rollback",
            want.image, want.volume
        )
    })
}

fn container_fields(have: Option<&Container>, want: &Container) -> Vec<Change> {
    let mut changes = Vec::new();
    type Field = fn(&Container) -> Option<String>;
    let fields: [(&str, Field); 7] = [
        ("image", |container| Some(container.image.clone())),
        ("port", |container| {
            Some(format!("{}:{}", container.bind_address, container.port))
        }),
        ("volume", |container| {
            Some(format!(
                "{}:{}",
                container.volume,
                if container.data_mount.is_empty() {
                    "(read from the image)"
                } else {
                    &container.data_mount
                }
            ))
        }),
        ("cpus", |container| container.nano_cpus.map(format_cpus)),
        ("memory", |container| {
            container.memory_bytes.map(format_bytes)
        }),
        ("reservations.cpus", |container| {
            container.cpu_shares.map(format_shares)
        }),
        ("reservations.memory", |container| {
            container.memory_reservation_bytes.map(format_bytes)
        }),
    ];
    for (field, get) in fields {
        let old = have.and_then(get);
        let new = get(want);
        if new.is_some() && old != new {
            changes.push(Change::new(field, old, new));
        }
    }
    let unattached = Container::default();
    changes.extend(networks::joins(have.unwrap_or(&unattached), want).changes);
    changes
}

/// Fields that only a new container can change. The health check of a
/// container pgspec did not create is not among them: it is what that
/// container was created with, and pgspec gives its own only to a
/// container it creates.
pub(super) fn replace_changes(have: &Container, want: &Container) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut compare = |field: &'static str, old: String, new: String| {
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
    if want.data_mount.is_empty() {
        // The image is not local yet: its layout is read at apply time.
        compare("volume", have.volume.clone(), want.volume.clone());
    } else {
        compare(
            "volume",
            format!("{}:{}", have.volume, have.data_mount),
            format!("{}:{}", want.volume, want.data_mount),
        );
        compare("pgdata", have.pgdata.clone(), want.pgdata.clone());
    }
    if let Some(shm) = want.shm_bytes {
        compare(
            "shm_size",
            have.shm_bytes.map(format_bytes).unwrap_or_default(),
            format_bytes(shm),
        );
    }
    if !have.foreign {
        compare(
            "health_check",
            describe_health_check(&have.health_check),
            describe_health_check(&want.health_check),
        );
    }
    // Whatever else pgspec sets at creation (the initialisation
    // environment, say) is covered by the hash in the container's label;
    // a container without the label is judged by its fields alone.
    let want_hash = want.creation_hash();
    if changes.is_empty()
        && !want.data_mount.is_empty()
        && !have.config_hash.is_empty()
        && have.config_hash != want_hash
    {
        changes.push(Change::new(
            "config_hash",
            Some(have.config_hash.clone()),
            Some(want_hash),
        ));
    }
    changes
}

/// A health check as the command it runs.
fn describe_health_check(test: &[String]) -> String {
    match test.split_first() {
        None => "none".to_owned(),
        Some((kind, _)) if kind == "NONE" => "none".to_owned(),
        Some((_, command)) => command.join(" "),
    }
}

/// What the plan says about a container that exists but does not serve:
/// one the engine keeps restarting, or one its health check fails.
pub(super) fn health_note(have: &Container) -> Option<String> {
    if have.state == ContainerState::Restarting {
        return Some(format!(
            "the engine keeps restarting `{name}`: the server exits soon after it starts; \
             `docker logs {name}` says why",
            name = have.name
        ));
    }
    let health = have.health.as_deref()?;
    health.starts_with("unhealthy").then(|| {
        format!(
            "the container's health check fails: {health}; `docker logs {}` says why",
            have.name
        )
    })
}

/// The limits the live container has and the spec does not set.
fn unset_limits(have: &Container, want: &Container) -> Vec<&'static str> {
    [
        ("CPU", have.nano_cpus.is_some() && want.nano_cpus.is_none()),
        (
            "memory",
            have.memory_bytes.is_some() && want.memory_bytes.is_none(),
        ),
    ]
    .into_iter()
    .filter_map(|(limit, unset)| unset.then_some(limit))
    .collect()
}

/// The limits a container pgspec created has and the spec no longer sets,
/// which a new container lifts. One pgspec did not create keeps its limits
/// (`kept_limits_note`): it is never recreated for them.
pub(super) fn lifted_limits(have: &Container, want: &Container) -> Vec<&'static str> {
    if have.foreign {
        Vec::new()
    } else {
        unset_limits(have, want)
    }
}

/// Why a container pgspec did not create keeps limits the spec does not
/// set: the engine cannot lift one in place.
pub(super) fn kept_limits_note(have: &Container, want: &Container) -> Option<String> {
    let kept = unset_limits(have, want);
    (have.foreign && !kept.is_empty()).then(|| {
        format!(
            "the container keeps its {}: pgspec did not create it and does not recreate it to \
             lift a limit, which the engine cannot do in place; declare the limits in \
             `postgres.resources`, or recreate the container by hand without them",
            limits(&kept)
        )
    })
}

/// `CPU limit`, `CPU and memory limits`.
fn limits(kinds: &[&str]) -> String {
    format!(
        "{} limit{}",
        kinds.join(" and "),
        if kinds.len() > 1 { "s" } else { "" }
    )
}

/// Fields `docker update` changes in place.
///
/// With `keeps_unset`, a limit the spec does not set stays as it is (a
/// container pgspec did not create, updated in place: `kept_limits_note`).
fn resource_changes(have: &Container, want: &Container, keeps_unset: bool) -> Vec<Change> {
    let mut changes = Vec::new();
    let kept = |wanted: Option<i64>| keeps_unset && wanted.is_none();
    if want.nano_cpus != have.nano_cpus && !kept(want.nano_cpus) {
        changes.push(Change::new(
            "cpus",
            have.nano_cpus.map(format_cpus),
            Some(want.nano_cpus.map(format_cpus).unwrap_or_else(unlimited)),
        ));
    }
    if want.memory_bytes != have.memory_bytes && !kept(want.memory_bytes) {
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
    // A reservation the spec leaves out is left as it is: the engine takes
    // none back in place (`docker update` ignores a zero).
    if want.cpu_shares.is_some() && want.cpu_shares != have.cpu_shares {
        changes.push(Change::new(
            "reservations.cpus",
            have.cpu_shares.map(format_shares),
            want.cpu_shares.map(format_shares),
        ));
    }
    if want.memory_reservation_bytes.is_some()
        && want.memory_reservation_bytes != have.memory_reservation_bytes
    {
        changes.push(Change::new(
            "reservations.memory",
            have.memory_reservation_bytes.map(format_bytes),
            want.memory_reservation_bytes.map(format_bytes),
        ));
    }
    if !want.restart_policy.is_empty() && want.restart_policy != have.restart_policy {
        changes.push(Change::new(
            "restart_policy",
            Some(have.restart_policy.clone()).filter(|policy| !policy.is_empty()),
            Some(want.restart_policy.clone()),
        ));
    }
    changes
}

/// A CPU weight as the CPUs of the reservation it stands for.
fn format_shares(shares: i64) -> String {
    format!("{} (cpu shares {shares})", shares as f64 / 1024.0)
}

fn unlimited() -> String {
    "unlimited".to_owned()
}

fn format_cpus(nano_cpus: i64) -> String {
    let cpus = nano_cpus as f64 / 1e9;
    format!("{cpus}")
}
