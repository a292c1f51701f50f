//! Docker Engine calls of an apply: volumes and the server container.
//!
//! Invariant: no call here removes a volume. A container is removed only
//! after a fast shutdown of its server, and its data volume stays.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerUpdateBody, HealthConfig, HostConfig, Mount, MountType,
    NetworkConnectRequest, NetworkCreateRequest, PortBinding, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, LogsOptions, RemoveContainerOptions,
    StopContainerOptions, UploadToContainerOptions,
};

use crate::live::Target;
use crate::live::docker::{
    PULL_STALL, SERVER_PORT, STREAM_STALL, is_not_found, labels, next_within,
};
use crate::model::Container;
use crate::plan::DockerStep;

/// Where the superuser password file lives inside the container. The image
/// reads it through POSTGRES_PASSWORD_FILE, so the password never shows in
/// `docker inspect`.
pub const PASSWORD_DIR: &str = "/etc/pgspec";
pub const PASSWORD_FILE: &str = "/etc/pgspec/superuser-password";

/// Seconds the server gets for a fast shutdown before it is killed.
const STOP_TIMEOUT_SECONDS: i32 = 60;

/// How long a started server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Labels every object pgspec creates carries.
pub fn object_labels(deployment: &str) -> HashMap<String, String> {
    HashMap::from([
        (labels::DEPLOYMENT.to_owned(), deployment.to_owned()),
        (labels::MANAGED.to_owned(), "true".to_owned()),
        (
            labels::VERSION.to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
    ])
}

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
        DockerStep::PrepareContainer { container } => {
            *expected = super::data::prepare(docker, deployment, container, target).await?;
        }
        DockerStep::VerifyData { name, databases } => {
            super::data::verify(docker, name, expected, databases, target).await?;
        }
        DockerStep::CreateVolume { name } => {
            docker
                .create_volume(VolumeCreateRequest {
                    name: Some(name.clone()),
                    labels: Some(object_labels(deployment)),
                    ..VolumeCreateRequest::default()
                })
                .await
                .with_context(|| format!("cannot create volume `{name}`"))?;
        }
        DockerStep::CreateContainer { container } => {
            create_container(docker, deployment, container).await?;
        }
        DockerStep::StartContainer { name } => {
            docker
                .start_container(name, None)
                .await
                .with_context(|| format!("cannot start container `{name}`"))?;
        }
        DockerStep::RemoveContainer { name } => remove_container(docker, name).await?,
        DockerStep::CreateNetwork { name } => {
            docker
                .create_network(NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("bridge".to_owned()),
                    labels: Some(object_labels(deployment)),
                    ..NetworkCreateRequest::default()
                })
                .await
                .with_context(|| format!("cannot create network `{name}`"))?;
        }
        DockerStep::ConnectNetwork { network, container } => {
            docker
                .connect_network(
                    network,
                    NetworkConnectRequest {
                        container: container.clone(),
                        endpoint_config: None,
                    },
                )
                .await
                .with_context(|| {
                    format!("cannot connect container `{container}` to network `{network}`")
                })?;
        }
        DockerStep::UpdateResources {
            name,
            nano_cpus,
            memory_bytes,
            restart_policy,
        } => {
            docker
                .update_container(
                    name,
                    ContainerUpdateBody {
                        nano_cpus: *nano_cpus,
                        memory: *memory_bytes,
                        // No swap beyond the memory limit: a database that
                        // swaps is slower than one that is told no.
                        memory_swap: *memory_bytes,
                        restart_policy: restart_policy.as_deref().map(restart_policy_of),
                        ..ContainerUpdateBody::default()
                    },
                )
                .await
                .with_context(|| format!("cannot update container `{name}`"))?;
        }
        DockerStep::RestartContainer { name } => {
            docker
                .restart_container(
                    name,
                    Some(bollard::query_parameters::RestartContainerOptions {
                        t: Some(STOP_TIMEOUT_SECONDS),
                        signal: None,
                    }),
                )
                .await
                .with_context(|| format!("cannot restart container `{name}`"))?;
        }
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
        DockerStep::RemovePooler { name } => remove_container(docker, name).await?,
        DockerStep::CheckBackupAgent { image } => {
            crate::backup::docker::check_agent_starts(docker, deployment, image).await?;
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
    ensure_image(docker, &container.image).await?;
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
            shm_size: container.shm_bytes,
            restart_policy: Some(restart_policy_of(&container.restart_policy)),
            network_mode: Some(container.network.clone()).filter(|network| !network.is_empty()),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(container.name.clone()),
                ..CreateContainerOptions::default()
            }),
            body,
        )
        .await
        .with_context(|| format!("cannot create container `{}`", container.name))?;
    if let Some(password) = password {
        let archive = password_archive(password.expose())?;
        docker
            .upload_to_container(
                &container.name,
                Some(UploadToContainerOptions {
                    path: "/".to_owned(),
                    ..UploadToContainerOptions::default()
                }),
                bollard::body_full(archive.into()),
            )
            .await
            .with_context(|| {
                format!(
                    "cannot copy the superuser password file into container `{}`",
                    container.name
                )
            })?;
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

/// A tar archive holding the password file, readable by root only.
fn password_archive(password: &str) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut directory = tar::Header::new_gnu();
    directory.set_entry_type(tar::EntryType::Directory);
    directory.set_mode(0o700);
    directory.set_size(0);
    directory.set_cksum();
    builder
        .append_data(
            &mut directory,
            PASSWORD_DIR.trim_start_matches('/'),
            std::io::empty(),
        )
        .context("cannot build the password archive")?;
    let mut file = tar::Header::new_gnu();
    file.set_mode(0o600);
    file.set_size(password.len() as u64);
    file.set_cksum();
    builder
        .append_data(
            &mut file,
            PASSWORD_FILE.trim_start_matches('/'),
            password.as_bytes(),
        )
        .context("cannot build the password archive")?;
    builder
        .into_inner()
        .context("cannot build the password archive")
}

/// Makes sure the image is local: pulls it when it is not, and says plainly
/// when it can be neither found nor pulled.
pub async fn ensure_image(docker: &Docker, image: &str) -> anyhow::Result<()> {
    match docker.inspect_image(image).await {
        Ok(_) => return Ok(()),
        Err(error) if is_not_found(&error) => {}
        Err(error) => return Err(error).with_context(|| format!("cannot inspect image `{image}`")),
    }
    crate::output::status(&format!("pulling image `{image}`…"));
    let mut pull = docker.create_image(
        Some(CreateImageOptions {
            from_image: Some(image.to_owned()),
            ..CreateImageOptions::default()
        }),
        None,
        None,
    );
    let mut last_status = String::new();
    while let Some(progress) = next_within(&mut pull, PULL_STALL)
        .await
        .with_context(|| format!("pulling image `{image}` made no progress"))?
    {
        match progress {
            Ok(info) => {
                if let Some(status) = info.status
                    && status != last_status
                {
                    crate::output::status(&format!("  {image}: {status}"));
                    last_status = status;
                }
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!(
                        "image `{image}` is neither local nor pullable; build or load it \
                         (scripts/images.sh builds the test images) or fix the name"
                    )
                });
            }
        }
    }
    Ok(())
}

/// Stops a container (fast shutdown, with a timeout) and removes it with
/// its anonymous volumes; named volumes stay, and a missing container is
/// already gone.
async fn remove_container(docker: &Docker, name: &str) -> anyhow::Result<()> {
    match docker
        .stop_container(
            name,
            Some(StopContainerOptions {
                t: Some(STOP_TIMEOUT_SECONDS),
                signal: None,
            }),
        )
        .await
    {
        Ok(()) => {}
        Err(error) if is_not_found(&error) => return Ok(()),
        // 304: already stopped.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => {}
        Err(error) => return Err(error).with_context(|| format!("cannot stop container `{name}`")),
    }
    docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                // `v` removes only the container's anonymous volumes (an
                // image's VOLUME nothing was mounted on); named volumes —
                // data, backups — are never removed by it, and leaking one
                // anonymous volume per replaced container fills the disk.
                v: true,
                force: false,
                link: false,
            }),
        )
        .await
        .with_context(|| format!("cannot remove container `{name}`"))
}

/// Creates a container that holds no data and is removed again with
/// [`remove_throwaway`] (a check container): a leftover of the same name
/// goes first, it carries the deployment's labels and `org.pgspec.role`
/// `role`, and it has no network.
pub async fn create_throwaway(
    docker: &Docker,
    deployment: &str,
    name: &str,
    role: &str,
    body: ContainerCreateBody,
) -> anyhow::Result<()> {
    remove_throwaway(docker, name).await?;
    let mut labels = object_labels(deployment);
    labels.insert(crate::backup::labels::ROLE.to_owned(), role.to_owned());
    let host_config = body.host_config.clone().unwrap_or_default();
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.to_owned()),
                ..CreateContainerOptions::default()
            }),
            ContainerCreateBody {
                labels: Some(labels),
                host_config: Some(HostConfig {
                    network_mode: Some("none".to_owned()),
                    ..host_config
                }),
                ..body
            },
        )
        .await
        .with_context(|| format!("cannot create container `{name}`"))?;
    Ok(())
}

/// Removes a container that holds no data (a never-started check
/// container, a scratch server), running or not, with its anonymous
/// volumes; named volumes stay, and a missing container is already gone.
pub async fn remove_throwaway(docker: &Docker, name: &str) -> anyhow::Result<()> {
    match docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                v: true,
                force: true,
                link: false,
            }),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(error) => Err(error).with_context(|| format!("cannot remove container `{name}`")),
    }
}

/// Waits until the server accepts connections; on timeout the error carries
/// the container's last log lines.
pub async fn wait_ready(docker: &Docker, name: &str, target: &Target) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let last_error = match target.connect().await {
            Ok(client) => match client.simple_query("SELECT 1").await {
                Ok(_) => return Ok(()),
                Err(error) => error.to_string(),
            },
            Err(error) => format!("{error}: {}", error_chain(&error)),
        };
        let running = docker
            .inspect_container(name, None)
            .await
            .ok()
            .and_then(|inspect| inspect.state)
            .and_then(|state| state.running)
            .unwrap_or(false);
        if !running && started.elapsed() > Duration::from_secs(5) {
            bail!(
                "container `{name}` stopped before the server accepted connections\n{}",
                last_logs(docker, name).await
            );
        }
        if started.elapsed() > READY_TIMEOUT {
            bail!(
                "the server in `{name}` did not accept connections within {}s (last error: {last_error})\n{}",
                READY_TIMEOUT.as_secs(),
                last_logs(docker, name).await
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
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

/// The container's last 20 log lines, indented, for error messages.
pub async fn last_logs(docker: &Docker, name: &str) -> String {
    let mut logs = docker.logs(
        name,
        Some(LogsOptions {
            stdout: true,
            stderr: true,
            tail: "20".to_owned(),
            ..LogsOptions::default()
        }),
    );
    let mut text = format!("last log lines of `{name}`:\n");
    while let Ok(Some(Ok(line))) = next_within(&mut logs, STREAM_STALL).await {
        for line in line.to_string().lines() {
            text.push_str("  | ");
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}
