//! Diff of the metrics exporters (`monitoring.exporter`): each a container
//! reconciled like the pooler. A new image, a moved port or anything else
//! pgspec sets at creation (its environment and network, through the
//! `org.pgspec.config-hash` label) replaces it; a stopped one is started; a
//! password file that no longer holds the spec's password is written again
//! and the exporter restarted to read it. Exporters hold no data: they are
//! replaced freely, and removed when pruning.

use crate::model::address::{self, ObjectKind};
use crate::model::monitoring::exporter::{Exporter, ExporterKind};
use crate::model::{ContainerState, Deployment, DiffOptions};
use crate::plan::{Action, ActionKind, Change, DockerStep, Plan, Risk, Step};

pub(super) fn diff(
    desired: &Deployment,
    live: &Deployment,
    options: &DiffOptions,
    plan: &mut Plan,
) {
    let Some(server) = &desired.container else {
        return;
    };
    for kind in ExporterKind::ALL {
        let name = kind.container(&desired.name);
        let address = address::exporter(&desired.name, kind);
        let have = live
            .exporters
            .get(&kind)
            .filter(|exporter| exporter.state != ContainerState::Missing);
        let Some(want) = desired.exporters.get(&kind) else {
            if let Some(have) = have {
                left_behind(have, name, address, options, plan);
            }
            continue;
        };
        let config_hash = want.config_hash(desired);
        let create = Step::Docker(DockerStep::CreateExporter {
            name: name.clone(),
            exporter: Box::new(Exporter {
                password: None,
                ..want.clone()
            }),
            network: server.network.clone(),
            environment: want.environment(desired),
            config_hash: config_hash.clone(),
        });
        let write = want.password.as_ref().map(|secret| {
            Step::Docker(DockerStep::WriteExporterPassword {
                name: name.clone(),
                secret: secret.clone(),
            })
        });
        let start = Step::Docker(DockerStep::RestartExporter { name: name.clone() });
        let Some(have) = have else {
            plan.actions.push(Action {
                address,
                object: ObjectKind::Exporter,
                kind: ActionKind::Create,
                reason: "declared in the spec (monitoring.exporter), no exporter container exists"
                    .to_owned(),
                risk: Risk::none(),
                changes: vec![
                    Change::new("image", None, Some(want.image.clone())),
                    Change::new("port", None, Some(want.published())),
                    Change::new("role", None, Some(want.role.clone())),
                ],
                steps: [Some(create), write, Some(start)]
                    .into_iter()
                    .flatten()
                    .collect(),
            });
            continue;
        };
        let mut replace: Vec<Change> =
            super::container::image_change(live, (&have.image, &have.image_id), &want.image)
                .into_iter()
                .collect();
        if have.published() != want.published() {
            replace.push(Change::new(
                "port",
                Some(have.published()),
                Some(want.published()),
            ));
        }
        if have.config_hash != config_hash {
            replace.push(Change::new(
                "config_hash",
                Some(have.config_hash.clone()).filter(|hash| !hash.is_empty()),
                Some(config_hash.clone()),
            ));
        }
        if !replace.is_empty() {
            plan.actions.push(Action {
                address,
                object: ObjectKind::Exporter,
                kind: ActionKind::Replace,
                reason: "the engine cannot change a container's image, published port or \
                         environment in place; the exporter holds no data, the server is not \
                         touched"
                    .to_owned(),
                risk: Risk::none(),
                changes: replace,
                steps: [
                    Some(Step::Docker(DockerStep::RemoveExporter { name })),
                    Some(create),
                    write,
                    Some(start),
                ]
                .into_iter()
                .flatten()
                .collect(),
            });
            continue;
        }
        let mut changes = Vec::new();
        let stale = have.password_matches == Some(false) || sets_password(plan, &want.role);
        if stale {
            changes.push(Change::new(
                "password_file",
                Some("stale".to_owned()),
                Some("current".to_owned()),
            ));
        }
        if have.state == ContainerState::Stopped {
            changes.push(Change::new(
                "state",
                Some("stopped".to_owned()),
                Some("running".to_owned()),
            ));
        }
        if changes.is_empty() {
            continue;
        }
        plan.actions.push(Action {
            address,
            object: ObjectKind::Exporter,
            kind: ActionKind::Update,
            reason: if stale {
                "the exporter's password file is written again and the exporter restarted to \
                 read it"
                    .to_owned()
            } else {
                "the exporter container is stopped; it is started".to_owned()
            },
            risk: Risk::none(),
            changes,
            steps: [write.filter(|_| stale), Some(start)]
                .into_iter()
                .flatten()
                .collect(),
        });
    }
}

/// An exporter pgspec made and the spec no longer declares: removed when
/// pruning, reported otherwise.
fn left_behind(
    have: &Exporter,
    name: String,
    address: String,
    options: &DiffOptions,
    plan: &mut Plan,
) {
    if !options.prune {
        plan.unmanaged.push(address);
        return;
    }
    plan.actions.push(Action {
        address,
        object: ObjectKind::Exporter,
        kind: ActionKind::Delete,
        reason: "created by pgspec and no longer in the spec; pruning is on".to_owned(),
        risk: Risk::none(),
        changes: vec![Change::new("image", Some(have.image.clone()), None)],
        steps: vec![Step::Docker(DockerStep::RemoveExporter { name })],
    });
}

/// Whether an action of the plan creates the role or sets its password: the
/// file must then follow.
fn sets_password(plan: &Plan, role: &str) -> bool {
    let role = address::role(role);
    plan.actions.iter().any(|action| {
        action.address == role
            && (action.kind == ActionKind::Create
                || action
                    .steps
                    .iter()
                    .any(|step| matches!(step, Step::SetPassword { .. })))
    })
}

/// What the exporters would look like after `action` ran, for the in-memory
/// model of apply.
pub fn simulate(next: &mut Deployment, action: &Action) {
    for step in &action.steps {
        let Step::Docker(call) = step else { continue };
        match call {
            DockerStep::RemoveExporter { name } => next
                .exporters
                .retain(|kind, _| kind.container(&next.name) != *name),
            DockerStep::CreateExporter {
                exporter,
                config_hash,
                ..
            } => {
                let image_id = next
                    .images
                    .get(&exporter.image)
                    .map(|image| image.id.clone())
                    .unwrap_or_default();
                next.exporters.insert(
                    exporter.kind,
                    Exporter {
                        state: ContainerState::Stopped,
                        config_hash: config_hash.clone(),
                        password_matches: None,
                        image_id,
                        ..(**exporter).clone()
                    },
                );
            }
            DockerStep::WriteExporterPassword { name, .. }
            | DockerStep::RestartExporter { name } => {
                let deployment = next.name.clone();
                for (kind, exporter) in &mut next.exporters {
                    if kind.container(&deployment) == *name {
                        if matches!(call, DockerStep::RestartExporter { .. }) {
                            exporter.state = ContainerState::Running;
                        } else {
                            exporter.password_matches = Some(true);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}
