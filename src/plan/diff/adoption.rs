//! Containers pgspec did not create: a server a runbook's `docker run` or
//! Compose started, under the name the spec gives the server container.
//!
//! Such a container carries none of pgspec's labels, and the engine adds
//! no label to an existing container, so adoption is recorded by what
//! pgspec can change in place: the container joins the deployment's own
//! network (`<name>-net`, which pgspec creates). When the spec names an
//! existing network as the deployment's instead (`postgres.network`, a
//! Compose project's, which the container may be on already), joining it
//! records nothing, and adoption writes a mark file into the data
//! directory (`model::ADOPTED_MARK`) naming the deployment. A container
//! without pgspec's labels is the deployment's once it has that record;
//! before, it is adopted when its image, published port, data volume
//! (proven to hold its data directory), `PGDATA`, /dev/shm and superuser
//! are the spec's — by a distinct plan action that records it and updates
//! it in place, never restarting or recreating it. One that differs is a
//! plan error saying how, and is never replaced.
//!
//! What pgspec sets only when it creates a container (the health check,
//! the initialisation environment and the hash of both in the
//! `org.pgspec.config-hash` label) is not compared for a container it did
//! not create, before or after adoption; everything else is reconciled
//! like any container's, a replace included when the spec changes the
//! image, port or volume.
//!
//! Whatever the container, another one mounting the data volume stops a
//! plan that would start a server on it: two servers on one data directory
//! corrupt it.

use crate::model::address::ObjectKind;
use crate::model::{Container, Deployment, address};
use crate::plan::{Action, ActionKind, Change, DockerStep, Note, Plan, PlanError, Step};

use super::container::{image_id_change, in_place, replace_changes};

/// Whether the live container is the deployment's: created by pgspec, or
/// adopted (joined to the deployment's own network, or marked when that
/// network is not pgspec's).
pub(super) fn belongs(have: &Container, want: &Container) -> bool {
    if !have.foreign || want.network.is_empty() {
        return true;
    }
    if want.network_external {
        have.adopted
    } else {
        have.network == want.network
    }
}

/// Plans the adoption of a container pgspec did not create: an `Adopt`
/// action when it matches the spec, else a plan error. Returns whether the
/// plan can go on into the server.
pub(super) fn diff(
    have: &Container,
    want: &Container,
    deployment: &str,
    live: &Deployment,
    plan: &mut Plan,
) -> bool {
    let address = address::container(&want.name);
    let mut differences = replace_changes(have, want);
    if have.superuser != want.superuser {
        differences.push(Change::new(
            "superuser",
            Some(have.superuser.clone()),
            Some(want.superuser.clone()),
        ));
    }
    let server_data_directory = live
        .server
        .as_ref()
        .and_then(|server| server.data_directory.as_deref());
    let unproven = have
        .data_home()
        .unproven(&want.volume, server_data_directory);
    if !differences.is_empty() || unproven.is_some() {
        plan.errors.push(PlanError {
            address,
            message: mismatch_message(have, want, &differences, unproven.as_deref()),
        });
        return false;
    }
    if let Some(message) = older_image_note(have, want, live) {
        plan.notes.push(Note {
            address: address.clone(),
            message,
        });
    }
    if let Some(message) = super::container::kept_limits_note(have, want) {
        plan.notes.push(Note {
            address: address.clone(),
            message,
        });
    }
    let (changes, mut steps, risk) = in_place(have, want);
    let recorded = if want.network_external {
        steps.insert(
            0,
            Step::Docker(DockerStep::MarkAdopted {
                container: want.name.clone(),
                deployment: deployment.to_owned(),
            }),
        );
        "marked as adopted in its data directory"
    } else {
        "joined to the deployment's network"
    };
    plan.actions.push(Action {
        address,
        object: ObjectKind::Container,
        kind: ActionKind::Adopt,
        reason: format!(
            "pgspec did not create this container, and its image, port and data volume are \
             the spec's: it becomes the deployment's as it runs, {recorded} and updated in \
             place, never restarted or recreated; it keeps the health check and environment \
             it was created with"
        ),
        risk,
        changes,
        steps,
    });
    true
}

/// A note for a container pgspec did not create that runs an older image
/// of its tag: pgspec pulled neither, so it does not replace the container
/// for that; a new tag in the spec does.
pub(super) fn older_image_note(
    have: &Container,
    want: &Container,
    live: &Deployment,
) -> Option<String> {
    if !have.foreign || have.image != want.image {
        return None;
    }
    let change = image_id_change(live, &want.image, &have.image_id)?;
    Some(format!(
        "`{name}` runs image {old}, and the local tag `{image}` now names {new}; pgspec did \
         not create this container, so it does not replace it to run the newer image. A new \
         tag in `postgres.image` replaces it (the data volume is kept), as does removing it \
         yourself (`docker stop {name} && docker rm {name}`) and applying",
        name = have.name,
        old = change.old.unwrap_or_default(),
        new = change.new.unwrap_or_default(),
        image = want.image,
    ))
}

/// Why a container pgspec did not create is not adopted, and what to do.
fn mismatch_message(
    have: &Container,
    want: &Container,
    differences: &[Change],
    unproven: Option<&str>,
) -> String {
    let mut text = format!(
        "container `{name}` was not created by pgspec and does not match the spec, so pgspec \
         will not adopt it, and it never replaces a container it did not create. Nothing was \
         changed",
        name = have.name
    );
    // Where the data directory is, when it is not on the spec's volume,
    // says more than the two volumes' names.
    let listed: Vec<&Change> = differences
        .iter()
        .filter(|change| unproven.is_none() || change.field != "volume")
        .collect();
    if !listed.is_empty() {
        let listed: Vec<String> = listed
            .into_iter()
            .map(|change| {
                let old = match change.old.as_deref() {
                    _ if change.field == "port" && have.port == 0 => "not published".to_owned(),
                    Some(old) => format!("`{old}`"),
                    None => "none".to_owned(),
                };
                format!(
                    "{} is {old} where the spec says `{}`",
                    change.field,
                    change.new.as_deref().unwrap_or("none")
                )
            })
            .collect();
        text.push_str(&format!(". Its {}", listed.join("; its ")));
    }
    if let Some(reason) = unproven {
        let mut characters = reason.chars();
        let capital: String = characters
            .next()
            .into_iter()
            .flat_map(char::to_uppercase)
            .collect();
        text.push_str(&format!(
            ". {capital}{}, so a container pgspec created would not have this data directory",
            characters.as_str()
        ));
    }
    text.push_str(&format!(
        ". Make the spec say what the container has (`postgres.image`, `port`, \
         `bind_address`, `volume`, `resources.shm_size`, `superuser`), or, for pgspec to \
         create its own container on volume `{volume}` instead, stop and remove this one \
         yourself once its data directory is on that volume (`docker stop {name} && docker \
         rm {name}`), and plan again",
        name = have.name,
        volume = want.volume,
    ));
    text
}

/// The plan error when other containers mount the data volume and the plan
/// would start a server on it (create or replace the container).
pub(super) fn shared_volume_error(want: &Container, live: &Deployment) -> Option<String> {
    let users = volume_users(live);
    if users.is_empty() {
        return None;
    }
    Some(format!(
        "volume `{volume}` is mounted by {listed}: pgspec will not start a server on it \
         beside another, since two servers on one data directory corrupt it. Nothing was \
         changed. If {that} is this deployment's server, name it in the spec \
         (`postgres.container_name: {first}`) and pgspec adopts it as it runs; if pgspec \
         created it under an earlier name, `docker rename {first} {name}` keeps it running \
         under the spec's; otherwise stop and remove it, and plan again",
        volume = want.volume,
        listed = describe(users),
        that = if users.len() == 1 { "it" } else { "one" },
        first = users[0],
        name = want.name,
    ))
}

/// The note when other containers mount the data volume of a container
/// that stays: nothing in the plan starts a second server, but they may.
pub(super) fn shared_volume_note(want: &Container, live: &Deployment) -> Option<String> {
    let users = volume_users(live);
    (!users.is_empty()).then(|| {
        format!(
            "volume `{}` is also mounted by {}; two servers on one data directory corrupt it, \
             so never start a server in {} while `{}` runs",
            want.volume,
            describe(users),
            if users.len() == 1 { "it" } else { "them" },
            want.name
        )
    })
}

fn volume_users(live: &Deployment) -> &[String] {
    live.container
        .as_ref()
        .map(|container| container.volume_users.as_slice())
        .unwrap_or_default()
}

fn describe(users: &[String]) -> String {
    let names: Vec<String> = users.iter().map(|name| format!("`{name}`")).collect();
    if names.len() == 1 {
        format!("container {}", names[0])
    } else {
        format!("containers {}", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerState, DiffOptions, Image, NetworkAttachment};

    const DATA: &str = "/var/lib/postgresql/data";

    fn desired() -> Deployment {
        Deployment {
            name: "ledger".to_owned(),
            container: Some(Container {
                name: "somali-nlp-postgres".to_owned(),
                image: "postgres:16".to_owned(),
                port: 5432,
                bind_address: "0.0.0.0".to_owned(),
                volume: "ledger-pgdata".to_owned(),
                superuser: "postgres".to_owned(),
                network: "ledger-net".to_owned(),
                networks: vec![NetworkAttachment {
                    name: "app-net".to_owned(),
                    aliases: vec!["postgres".to_owned()],
                }],
                restart_policy: "unless-stopped".to_owned(),
                health_check: Container::server_health_check("postgres"),
                cpu_shares: Some(2048),
                ..Container::default()
            }),
            ..Deployment::default()
        }
    }

    /// What `docker run` of the runbook leaves: no labels, no health
    /// check, no restart policy, on the default bridge only.
    fn runbook() -> Deployment {
        Deployment {
            name: "ledger".to_owned(),
            container: Some(Container {
                name: "somali-nlp-postgres".to_owned(),
                image: "postgres:16".to_owned(),
                port: 5432,
                bind_address: "0.0.0.0".to_owned(),
                volume: "ledger-pgdata".to_owned(),
                data_mount: DATA.to_owned(),
                pgdata: DATA.to_owned(),
                data_kind: "volume".to_owned(),
                superuser: "postgres".to_owned(),
                state: ContainerState::Running,
                image_id: "sha256:1".to_owned(),
                volume_exists: true,
                networks: vec![NetworkAttachment {
                    name: "bridge".to_owned(),
                    aliases: Vec::new(),
                }],
                restart_policy: "no".to_owned(),
                foreign: true,
                ..Container::default()
            }),
            images: [(
                "postgres:16".to_owned(),
                Image {
                    id: "sha256:1".to_owned(),
                    pg_major: Some(16),
                    pgdata: Some(DATA.to_owned()),
                    volumes: vec![DATA.to_owned()],
                },
            )]
            .into(),
            server: Some(crate::model::ServerInfo {
                version_num: 160004,
                data_directory: Some(DATA.to_owned()),
                ..crate::model::ServerInfo::default()
            }),
            ..Deployment::default()
        }
    }

    fn plan(live: &Deployment) -> Plan {
        crate::plan::diff(&desired(), live, &DiffOptions::default())
    }

    #[test]
    fn a_matching_container_is_adopted_once_and_then_in_sync() {
        let live = runbook();
        let first = plan(&live);
        assert!(first.errors.is_empty(), "{:?}", first.errors);
        let [action] = first.actions.as_slice() else {
            panic!("one action: {:?}", first.actions);
        };
        assert_eq!(action.kind, ActionKind::Adopt);
        assert!(!action.risk.restart);
        let after = crate::plan::simulate(&live, &first);
        let second = plan(&after);
        assert!(second.actions.is_empty(), "{:?}", second.actions);
        assert!(second.errors.is_empty(), "{:?}", second.errors);
    }

    /// The spec's deployment network is the Compose project's, and the
    /// runbook's container is on it already, answering as `postgres`.
    fn on_compose_network() -> (Deployment, Deployment) {
        let mut desired = desired();
        let mut live = runbook();
        if let Some(container) = &mut desired.container {
            container.network = "app-net".to_owned();
            container.network_external = true;
        }
        if let Some(container) = &mut live.container {
            container.network = "app-net".to_owned();
            container.network_exists = true;
            container.networks = vec![NetworkAttachment {
                name: "app-net".to_owned(),
                aliases: vec!["postgres".to_owned()],
            }];
        }
        (desired, live)
    }

    #[test]
    fn on_a_network_pgspec_does_not_own_adoption_is_marked_in_the_data_directory() {
        let (desired, live) = on_compose_network();
        let first = crate::plan::diff(&desired, &live, &DiffOptions::default());
        assert!(first.errors.is_empty(), "{:?}", first.errors);
        let [action] = first.actions.as_slice() else {
            panic!("one action: {:?}", first.actions);
        };
        assert_eq!(action.kind, ActionKind::Adopt);
        assert_eq!(
            action.steps[0],
            Step::Docker(DockerStep::MarkAdopted {
                container: "somali-nlp-postgres".to_owned(),
                deployment: "ledger".to_owned(),
            })
        );
        assert!(
            !action.steps.iter().any(|step| matches!(
                step,
                Step::Docker(DockerStep::ConnectNetwork { .. } | DockerStep::JoinNetwork { .. })
            )),
            "already on the network with its alias: {:?}",
            action.steps
        );
        let after = crate::plan::simulate(&live, &first);
        let second = crate::plan::diff(&desired, &after, &DiffOptions::default());
        assert!(second.actions.is_empty(), "{:?}", second.actions);
        assert!(second.errors.is_empty(), "{:?}", second.errors);

        // Being on the network is no record: one that differs is still
        // refused, never replaced.
        let (desired, mut live) = on_compose_network();
        if let Some(container) = &mut live.container {
            container.image = "postgres:15".to_owned();
        }
        let plan = crate::plan::diff(&desired, &live, &DiffOptions::default());
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert!(plan.errors[0].message.contains("will not adopt it"));
    }

    #[test]
    fn a_container_off_the_named_network_joins_it_with_its_aliases_as_it_is_adopted() {
        let (mut desired, mut live) = on_compose_network();
        if let Some(container) = &mut desired.container {
            container.networks = vec![NetworkAttachment {
                name: "app-net".to_owned(),
                aliases: vec!["postgres".to_owned()],
            }];
        }
        if let Some(container) = &mut live.container {
            container.network = String::new();
            container.networks = Vec::new();
        }
        let first = crate::plan::diff(&desired, &live, &DiffOptions::default());
        assert!(first.errors.is_empty(), "{:?}", first.errors);
        assert!(
            first.actions[0]
                .steps
                .contains(&Step::Docker(DockerStep::ConnectNetwork {
                    network: "app-net".to_owned(),
                    container: "somali-nlp-postgres".to_owned(),
                    aliases: vec!["postgres".to_owned()],
                }))
        );
        let after = crate::plan::simulate(&live, &first);
        let second = crate::plan::diff(&desired, &after, &DiffOptions::default());
        assert!(second.actions.is_empty(), "{:?}", second.actions);

        // A named network that does not exist is a plan error: pgspec
        // creates only its own.
        if let Some(container) = &mut live.container {
            container.network_exists = false;
        }
        let plan = crate::plan::diff(&desired, &live, &DiffOptions::default());
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert!(
            plan.errors[0]
                .message
                .contains("network `app-net` does not exist: pgspec joins the networks in `postgres.network` and never creates it"),
            "{}",
            plan.errors[0].message
        );
    }

    #[test]
    fn an_adopted_container_is_replaced_like_any_when_the_spec_changes_its_image() {
        let mut live = runbook();
        let after = crate::plan::simulate(&live, &plan(&live));
        live = after;
        let mut desired = desired();
        if let Some(container) = &mut desired.container {
            container.image = "postgres:16.5".to_owned();
        }
        let plan = crate::plan::diff(&desired, &live, &DiffOptions::default());
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        assert_eq!(plan.actions[0].kind, ActionKind::Replace);
    }

    #[test]
    fn a_container_that_differs_is_a_plan_error_naming_the_difference() {
        let mut live = runbook();
        if let Some(container) = &mut live.container {
            container.image = "postgres:15".to_owned();
            container.port = 0;
        }
        let plan = plan(&live);
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        let [error] = plan.errors.as_slice() else {
            panic!("one error: {:?}", plan.errors);
        };
        assert!(
            error
                .message
                .contains("image is `postgres:15` where the spec says `postgres:16`"),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("port is not published"),
            "{}",
            error.message
        );
    }

    #[test]
    fn data_outside_the_named_volume_is_never_adopted() {
        let mut live = runbook();
        if let Some(container) = &mut live.container {
            container.data_kind = "bind".to_owned();
            container.volume = String::new();
        }
        let plan = plan(&live);
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        assert!(
            plan.errors[0].message.contains("on a bind mount"),
            "{}",
            plan.errors[0].message
        );
    }

    #[test]
    fn an_older_image_of_the_tag_is_a_note_not_a_replace() {
        let mut live = runbook();
        if let Some(image) = live.images.get_mut("postgres:16") {
            image.id = "sha256:2".to_owned();
        }
        let plan = plan(&live);
        assert_eq!(plan.actions[0].kind, ActionKind::Adopt);
        assert!(
            plan.notes
                .iter()
                .any(|note| note.message.contains("does not replace it")),
            "{:?}",
            plan.notes
        );
    }

    #[test]
    fn another_container_on_the_volume_stops_a_start_and_is_noted_otherwise() {
        let mut live = runbook();
        if let Some(container) = &mut live.container {
            container.volume_users = vec!["old-postgres".to_owned()];
        }
        let running = plan(&live);
        assert!(running.errors.is_empty(), "{:?}", running.errors);
        assert!(
            running
                .notes
                .iter()
                .any(|note| note.message.contains("`old-postgres`")),
            "{:?}",
            running.notes
        );
        if let Some(container) = &mut live.container {
            container.state = ContainerState::Stopped;
        }
        let stopped = plan(&live);
        assert!(stopped.actions.is_empty(), "{:?}", stopped.actions);
        assert!(
            stopped.errors[0]
                .message
                .contains("postgres.container_name: old-postgres"),
            "{}",
            stopped.errors[0].message
        );
    }
}
