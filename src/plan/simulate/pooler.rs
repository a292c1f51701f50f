//! The pooler in the in-memory model of apply: what PgBouncer would report
//! after a pooler action ran.

use std::collections::BTreeMap;

use crate::model::{ContainerState, Deployment, Pooler, PoolerUser};
use crate::plan::{Action, DockerStep, Step};

pub(super) fn simulate(next: &mut Deployment, action: &Action) {
    for step in &action.steps {
        let Step::Docker(call) = step else { continue };
        match call {
            DockerStep::RemovePooler { .. } => next.pooler = None,
            DockerStep::CreatePooler {
                pooler, network, ..
            } => {
                next.pooler = Some(Pooler {
                    state: ContainerState::Stopped,
                    network: network.clone(),
                    settings: BTreeMap::new(),
                    databases: BTreeMap::new(),
                    users: BTreeMap::new(),
                    ..(**pooler).clone()
                });
            }
            DockerStep::WritePoolerConfig { config, .. } => {
                let server_certificate = next.tls.as_ref().and_then(|tls| {
                    tls.wanted
                        .as_ref()
                        .or(tls.installed.as_ref())
                        .map(|files| files.certificate.fingerprint.clone())
                });
                if let Some(pooler) = &mut next.pooler {
                    if config.tls.is_some() {
                        pooler.tls_fingerprint = server_certificate;
                    }
                    pooler.settings.extend(config.settings.clone());
                    pooler.databases = config.databases.clone();
                    pooler.served = config.routes.clone();
                    pooler.users = config
                        .users
                        .iter()
                        .map(|user| (user.clone(), PoolerUser::Current))
                        .collect();
                }
            }
            DockerStep::StartPooler { .. } => {
                if let Some(pooler) = &mut next.pooler {
                    pooler.state = ContainerState::Running;
                    pooler.console_error = None;
                }
            }
            DockerStep::ResumePooler { .. } => {
                if let Some(pooler) = &mut next.pooler {
                    pooler.paused = false;
                }
            }
            DockerStep::ConnectNetwork { network, .. } => {
                if let Some(pooler) = &mut next.pooler {
                    pooler.network = network.clone();
                }
            }
            _ => {}
        }
    }
}
