//! An in-memory model of apply: what live would look like after a plan ran.
//! The property tests use it to check convergence (simulate, then diff, gives
//! an empty plan) without a server.

use crate::model::address::{self, ObjectKind};
use crate::model::{Container, ContainerState, Database, Deployment, Extension, NetworkAttachment};
use crate::plan::{Action, ActionKind, DockerStep, Plan, Step};

mod inside;
mod pooler;

/// Returns `live` as it would be after every action of `plan` succeeded.
pub fn simulate(live: &Deployment, plan: &Plan) -> Deployment {
    let mut next = live.clone();
    for action in &plan.actions {
        // The kind says what the action is about; the address only names it:
        // `first` is the database (or the member role) an object is in,
        // `last` the object itself.
        let path = address::parse(&action.address);
        let (Some((_, first)), Some((_, last))) = (path.first(), path.last()) else {
            continue;
        };
        match action.object {
            ObjectKind::Container => simulate_container(&mut next, action),
            ObjectKind::Backup => super::diff::backup::simulate(&mut next, action),
            ObjectKind::Tls => super::diff::tls::simulate(&mut next, action),
            ObjectKind::Pooler => pooler::simulate(&mut next, action),
            ObjectKind::Exporter => super::diff::exporter::simulate(&mut next, action),
            ObjectKind::Replica => super::diff::replicas::simulate(&mut next, action),
            ObjectKind::Setting => inside::setting(&mut next, last, action),
            ObjectKind::Role => inside::role(&mut next, last, action),
            ObjectKind::Membership => inside::membership(&mut next, first, last),
            ObjectKind::Database => {
                simulate_database(&mut next, last, action);
                inside::database(&mut next, last, action);
            }
            ObjectKind::Schema => inside::schema(&mut next, first, last, action),
            ObjectKind::Extension => simulate_extension(&mut next, first, last, action),
            ObjectKind::Index => super::diff::indexes::simulate(&mut next, first, last, action),
            ObjectKind::Grant => inside::grant(&mut next, &path, action),
            ObjectKind::DefaultPrivilege => inside::default_privilege(&mut next, &path, action),
            ObjectKind::Access => super::diff::access::simulate(&mut next, action),
        }
    }
    next
}

fn new_value<'a>(action: &'a Action, field: &str) -> Option<&'a String> {
    action
        .changes
        .iter()
        .find(|change| change.field == field)
        .and_then(|change| change.new.as_ref())
}

fn simulate_container(next: &mut Deployment, action: &Action) {
    for step in &action.steps {
        let Step::Docker(call) = step else { continue };
        match call {
            DockerStep::CreateContainer { container } => {
                next.container = Some(Container {
                    superuser_password: None,
                    state: ContainerState::Running,
                    volume_exists: true,
                    network_exists: true,
                    data_major: next.container.as_ref().and_then(|live| live.data_major),
                    data_kind: "volume".to_owned(),
                    config_hash: container.creation_hash(),
                    ..(**container).clone()
                });
            }
            DockerStep::RemoveContainer { .. } => {
                if let Some(container) = &mut next.container {
                    container.state = ContainerState::Missing;
                }
            }
            DockerStep::StartContainer { .. } => {
                if let Some(container) = &mut next.container {
                    container.state = ContainerState::Running;
                }
            }
            DockerStep::UpdateResources {
                nano_cpus,
                memory_bytes,
                restart_policy,
                cpu_shares,
                memory_reservation_bytes,
                ..
            } => {
                if let Some(container) = &mut next.container {
                    container.nano_cpus = *nano_cpus;
                    container.memory_bytes = *memory_bytes;
                    if cpu_shares.is_some() {
                        container.cpu_shares = *cpu_shares;
                    }
                    if memory_reservation_bytes.is_some() {
                        container.memory_reservation_bytes = *memory_reservation_bytes;
                    }
                    if let Some(policy) = restart_policy {
                        container.restart_policy = policy.clone();
                    }
                }
            }
            DockerStep::CreateNetwork { .. } => {
                if let Some(container) = &mut next.container {
                    container.network_exists = true;
                }
            }
            DockerStep::ConnectNetwork {
                network, aliases, ..
            } => {
                if let Some(container) = &mut next.container {
                    container.network = network.clone();
                    if !aliases.is_empty() {
                        container.networks.push(NetworkAttachment {
                            name: network.clone(),
                            aliases: aliases.clone(),
                        });
                        container.networks.sort();
                    }
                }
            }
            DockerStep::MarkAdopted { .. } => {
                if let Some(container) = &mut next.container {
                    container.adopted = true;
                }
            }
            DockerStep::JoinNetwork {
                network, aliases, ..
            } => {
                if let Some(container) = &mut next.container {
                    container
                        .networks
                        .retain(|attached| attached.name != *network);
                    container.networks.push(NetworkAttachment {
                        name: network.clone(),
                        aliases: aliases.clone(),
                    });
                    container.networks.sort();
                }
            }
            DockerStep::UpgradeData { to_major, .. } => {
                if let Some(container) = &mut next.container {
                    container.data_major = Some(*to_major);
                    container.state = ContainerState::Stopped;
                }
            }
            DockerStep::CreateVolume { .. }
            | DockerStep::PrepareContainer { .. }
            | DockerStep::VerifyData { .. }
            | DockerStep::RestartContainer { .. }
            | DockerStep::WaitReady { .. }
            | DockerStep::CheckBackupAgent { .. }
            | DockerStep::CreateBackupContainer { .. } => {}
            // The pooler's own steps, simulated with its address.
            DockerStep::CreatePooler { .. }
            | DockerStep::WritePoolerConfig { .. }
            | DockerStep::StartPooler { .. }
            | DockerStep::ReloadPooler { .. }
            | DockerStep::ResumePooler { .. }
            | DockerStep::RemovePooler { .. }
            | DockerStep::CreateExporter { .. }
            | DockerStep::WriteExporterPassword { .. }
            | DockerStep::RestartExporter { .. }
            | DockerStep::RemoveExporter { .. } => {}
            // Simulated with the certificate's address.
            DockerStep::WriteTls { .. } => {}
            // Simulated with the replica's address.
            DockerStep::CloneReplica { .. }
            | DockerStep::CreateReplica { .. }
            | DockerStep::RestartReplica { .. }
            | DockerStep::WaitStreaming { .. }
            | DockerStep::RemoveReplica { .. }
            | DockerStep::DropReplicaSlot { .. }
            | DockerStep::RemoveReplicaVolume { .. } => {}
        }
    }
}

fn simulate_database(next: &mut Deployment, name: &str, action: &Action) {
    let database = next
        .databases
        .entry(name.to_owned())
        .or_insert_with(|| Database {
            name: name.to_owned(),
            owner: Some("postgres".to_owned()),
            ..Database::default()
        });
    if let Some(owner) = new_value(action, "owner") {
        database.owner = Some(owner.clone());
    }
    if let Some(limit) = new_value(action, "connection_limit") {
        database.connection_limit = limit.parse().ok();
    }
}

fn simulate_extension(next: &mut Deployment, database: &str, name: &str, action: &Action) {
    let database = next
        .databases
        .entry(database.to_owned())
        .or_insert_with(|| Database {
            name: database.to_owned(),
            ..Database::default()
        });
    if action.kind == ActionKind::Delete {
        database.extensions.remove(name);
        return;
    }
    let extension = database
        .extensions
        .entry(name.to_owned())
        .or_insert_with(|| Extension {
            name: name.to_owned(),
            version: None,
            schema: Some("public".to_owned()),
            managed: true,
        });
    if let Some(version) = new_value(action, "version") {
        extension.version = Some(version.clone());
    }
    if let Some(schema) = new_value(action, "schema") {
        extension.schema = Some(schema.clone());
    }
}
