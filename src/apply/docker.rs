//! Docker Engine calls of an apply: volumes and the server container.
//!
//! Invariant: no call here removes a volume. A container is removed only
//! after a fast shutdown of its server, and its data volume stays.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use bollard::models::{
    ContainerCreateBody, ContainerUpdateBody, EndpointSettings, HealthConfig, HostConfig, Mount,
    MountType, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};

use crate::engine::archive::{self, Entry};
use crate::engine::container::{self as containers, NotReady, Patience, SERVER_PORT};
use crate::engine::{Docker, files, image, labels, object_labels, objects};
use crate::live::Target;
use crate::model::Container;
use crate::model::data::PASSWORD_FILE;
use crate::plan::DockerStep;

/// How long a started server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs one Docker step. `target` is how the server in the container is
/// reached, for `WaitReady`.
/// `expected` carries what `PrepareContainer` proved to `VerifyData`.
pub async fn run(
    docker: &Docker,
    deployment: &str,
    step: &DockerStep,
    target: &Target,
    expected: &mut super::data::Expected,
) -> anyhow::Result<()> {
    match step {
        DockerStep::CloneReplica { .. }
        | DockerStep::CreateReplica { .. }
        | DockerStep::RestartReplica { .. }
        | DockerStep::WaitStreaming { .. }
        | DockerStep::RemoveReplica { .. }
        | DockerStep::DropReplicaSlot { .. }
        | DockerStep::RemoveReplicaVolume { .. } => {
            super::replica::run(docker, deployment, step, target).await?;
        }
        DockerStep::PrepareContainer { container } => {
            *expected = super::data::prepare(docker, deployment, container, target).await?;
        }
        DockerStep::VerifyData { name, databases } => {
            super::data::verify(docker, name, expected, databases, target).await?;
        }
        DockerStep::CreateVolume { name } => {
            objects::create_volume(docker, deployment, name, &[]).await?;
        }
        DockerStep::CreateContainer { container } => {
            create_container(docker, deployment, container).await?;
        }
        DockerStep::StartContainer { name } => containers::start(docker, name).await?,
        DockerStep::RemoveContainer { name } | DockerStep::RemovePooler { name } => {
            containers::stop_and_remove(docker, name).await?;
        }
        DockerStep::CreateNetwork { name } => {
            objects::create_network(docker, deployment, name).await?;
        }
        DockerStep::ConnectNetwork {
            network,
            container,
            aliases,
        } => {
            objects::connect_network(docker, network, container, aliases).await?;
        }
        DockerStep::UpgradeData {
            container,
            from_major,
            kept,
            pooler,
            ..
        } => {
            let upgrade = super::upgrade::Upgrade {
                deployment,
                want: container,
                from_major: *from_major,
                kept,
                pooler: pooler.as_deref(),
            };
            super::upgrade::upgrade_data(docker, &upgrade, target).await?
        }
        DockerStep::MarkAdopted {
            container,
            deployment,
        } => super::data::mark_adopted(docker, container, deployment).await?,
        DockerStep::JoinNetwork {
            network,
            container,
            aliases,
            reconnect,
        } => {
            if *reconnect {
                objects::disconnect_network(docker, network, container).await?;
            }
            objects::connect_network(docker, network, container, aliases).await?;
        }
        DockerStep::UpdateResources {
            name,
            nano_cpus,
            memory_bytes,
            restart_policy,
            cpu_shares,
            memory_reservation_bytes,
        } => {
            let body = ContainerUpdateBody {
                nano_cpus: *nano_cpus,
                memory: *memory_bytes,
                // No swap beyond the memory limit: a database that
                // swaps is slower than one that is told no.
                memory_swap: *memory_bytes,
                cpu_shares: *cpu_shares,
                memory_reservation: *memory_reservation_bytes,
                restart_policy: restart_policy.as_deref().map(restart_policy_of),
                ..ContainerUpdateBody::default()
            };
            containers::update(docker, name, body).await?;
        }
        DockerStep::RestartContainer { name } => containers::restart(docker, name).await?,
        DockerStep::WaitReady { name } => wait_ready(docker, name, target).await?,
        DockerStep::CreatePooler {
            name,
            pooler,
            network,
        } => super::pooler::create(docker, deployment, name, pooler, network).await?,
        DockerStep::WritePoolerConfig { name, config } => {
            super::pooler::write_config(docker, deployment, name, config, target).await?;
        }
        DockerStep::StartPooler { name } => super::pooler::start(docker, name, target).await?,
        DockerStep::ReloadPooler { name } => super::pooler::reload(docker, name, target).await?,
        DockerStep::ResumePooler { name } => super::pooler::resume(docker, name, target).await?,
        DockerStep::CreateExporter {
            name,
            exporter,
            network,
            environment,
            config_hash,
        } => {
            super::exporter::create(
                docker,
                deployment,
                name,
                exporter,
                network,
                environment,
                config_hash,
            )
            .await?;
        }
        DockerStep::WriteExporterPassword { name, secret } => {
            super::exporter::write_password(docker, name, secret).await?;
        }
        DockerStep::RestartExporter { name } => containers::restart(docker, name).await?,
        DockerStep::RemoveExporter { name } => containers::stop_and_remove(docker, name).await?,
        DockerStep::CheckBackupAgent { image } => {
            crate::backup::docker::check_agent_starts(docker, deployment, image).await?;
        }
        DockerStep::WriteTls { name, source } => {
            super::tls::write(docker, name, source, target).await?;
        }
        DockerStep::CreateBackupContainer { backup } => {
            crate::backup::docker::create_container(docker, deployment, backup).await?;
        }
    }
    Ok(())
}

async fn create_container(
    docker: &Docker,
    deployment: &str,
    container: &Container,
) -> anyhow::Result<()> {
    image::ensure(docker, &container.image).await?;
    // The layout is read from the image as it is now, whatever the plan
    // saw: the data directory is where this image keeps it, on the volume.
    let container = &super::data::with_image_layout(docker, container).await?;
    let password = match &container.superuser_password {
        Some(secret) => Some(
            secret
                .resolve()
                .context("cannot read the superuser password")?,
        ),
        None => None,
    };
    let mut env = vec![
        format!("POSTGRES_USER={}", container.superuser),
        format!("PGDATA={}", container.pgdata),
    ];
    if password.is_some() {
        env.push(format!("POSTGRES_PASSWORD_FILE={PASSWORD_FILE}"));
    }
    env.push("POSTGRES_INITDB_ARGS=--auth-host=scram-sha-256 --auth-local=trust".to_owned());
    let port_bindings = HashMap::from([(
        SERVER_PORT.to_owned(),
        Some(vec![PortBinding {
            host_ip: Some(container.bind_address.clone()),
            host_port: Some(container.port.to_string()),
        }]),
    )]);
    let body = ContainerCreateBody {
        image: Some(container.image.clone()),
        env: Some(env),
        labels: Some(container_labels(deployment, container)),
        exposed_ports: Some(vec![SERVER_PORT.to_owned()]),
        healthcheck: Some(health_config(&container.health_check)),
        host_config: Some(HostConfig {
            port_bindings: Some(port_bindings),
            mounts: Some(vec![Mount {
                target: Some(container.data_mount.clone()),
                source: Some(container.volume.clone()),
                typ: Some(MountType::VOLUME),
                ..Mount::default()
            }]),
            nano_cpus: container.nano_cpus,
            memory: container.memory_bytes,
            memory_swap: container.memory_bytes,
            cpu_shares: container.cpu_shares,
            memory_reservation: container.memory_reservation_bytes,
            shm_size: container.shm_bytes,
            restart_policy: Some(restart_policy_of(&container.restart_policy)),
            network_mode: Some(container.network.clone()).filter(|network| !network.is_empty()),
            ..HostConfig::default()
        }),
        networking_config: deployment_endpoint(container),
        ..ContainerCreateBody::default()
    };
    containers::create(docker, &container.name, body).await?;
    // The engine of API 1.43 and before takes one network at creation; the
    // others are joined before the server starts.
    for network in container
        .networks
        .iter()
        .filter(|network| network.name != container.network)
    {
        objects::connect_network(docker, &network.name, &container.name, &network.aliases).await?;
    }
    if let Some(password) = password {
        let archive = archive::build_with_parents(&[Entry::file(
            PASSWORD_FILE,
            0o600,
            password.expose().as_bytes(),
        )])
        .context("cannot build the password archive")?;
        files::upload(
            docker,
            &container.name,
            archive,
            "the superuser password file",
        )
        .await?;
    }
    Ok(())
}

/// Labels of the server container: those of every object, and the hash of
/// the configuration it is created from, so a later plan sees when pgspec
/// would create it differently.
fn container_labels(deployment: &str, container: &Container) -> HashMap<String, String> {
    let mut labels = object_labels(deployment);
    labels.insert(labels::CONFIG_HASH.to_owned(), container.creation_hash());
    labels
}

/// How often the engine runs the health check: every 10 s, failing after
/// three misses, with a minute's grace while a new data directory is made.
fn health_config(test: &[String]) -> HealthConfig {
    const SECOND: i64 = 1_000_000_000;
    if test.is_empty() {
        return HealthConfig {
            test: Some(vec!["NONE".to_owned()]),
            ..HealthConfig::default()
        };
    }
    HealthConfig {
        test: Some(test.to_vec()),
        interval: Some(10 * SECOND),
        timeout: Some(5 * SECOND),
        retries: Some(3),
        start_period: Some(60 * SECOND),
        ..HealthConfig::default()
    }
}

/// Docker's restart policy for a name; unknown or empty names mean
/// `unless-stopped`, the policy a database server wants.
fn restart_policy_of(name: &str) -> RestartPolicy {
    let name = match name {
        "no" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => RestartPolicyNameEnum::UNLESS_STOPPED,
    };
    RestartPolicy {
        name: Some(name),
        maximum_retry_count: None,
    }
}

/// Waits until the server accepts connections; on timeout the error carries
/// the container's last log lines.
pub async fn wait_ready(docker: &Docker, name: &str, target: &Target) -> anyhow::Result<()> {
    let patience = Patience {
        limit: READY_TIMEOUT,
        grace: Duration::from_secs(5),
        interval: Duration::from_millis(300),
    };
    let probe = || async {
        match target.connect().await {
            Ok(client) => client
                .simple_query("SELECT 1")
                .await
                .map(|_| ())
                .map_err(|error| error.to_string()),
            Err(error) => Err(format!("{error}: {}", error_chain(&error))),
        }
    };
    match containers::wait_ready(docker, name, patience, probe).await {
        Ok(()) => Ok(()),
        Err(NotReady::Stopped { logs, .. }) => {
            bail!("container `{name}` stopped before the server accepted connections\n{logs}")
        }
        Err(NotReady::TimedOut { last_error, logs }) => bail!(
            "the server in `{name}` did not accept connections within {}s (last error: {last_error})\n{logs}",
            READY_TIMEOUT.as_secs()
        ),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.join(": ")
}

/// The aliases the server answers to on the deployment's network, given
/// as it is created there (an existing network the spec names with
/// aliases); `None` when there are none.
fn deployment_endpoint(container: &Container) -> Option<NetworkingConfig> {
    let network = container
        .networks
        .iter()
        .find(|network| network.name == container.network && !network.aliases.is_empty())?;
    Some(NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            network.name.clone(),
            EndpointSettings {
                aliases: Some(network.aliases.clone()),
                ..EndpointSettings::default()
            },
        )])),
    })
}
