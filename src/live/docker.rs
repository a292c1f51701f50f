//! Observing Docker: the server container, its data volume and the images
//! the spec names.
//!
//! Invariant: only reads. The client negotiates the API version, so an
//! engine speaking 1.41 works as well as a current one; DOCKER_HOST is
//! honoured.

use std::collections::BTreeMap;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerInspectResponse, Health, HealthStatusEnum, ImageInspect, MountPoint,
};
use bollard::query_parameters::DownloadFromContainerOptions;
use futures_util::{Stream, StreamExt};

use crate::live::ObserveError;
use crate::model::data::{DEFAULT_PGDATA, DataHome, MountInfo};
use crate::model::{Container, ContainerState, Image};

/// Labels pgspec puts on every Docker object it creates.
pub mod labels {
    pub const DEPLOYMENT: &str = "org.pgspec.deployment";
    pub const MANAGED: &str = "org.pgspec.managed";
    pub const VERSION: &str = "org.pgspec.version";
    pub const CONFIG_HASH: &str = "org.pgspec.config-hash";
}

/// The port PostgreSQL listens on inside the container.
pub const SERVER_PORT: &str = "5432/tcp";

/// How long a stream from the Docker Engine (a file read out of a
/// container, a log tail) may go without a chunk before pgspec gives up on
/// it. bollard bounds only the wait for a response's headers.
pub const STREAM_STALL: Duration = Duration::from_secs(60);

/// How long an image pull may go without a progress message: the engine
/// reports every layer's download many times a second, so this is long
/// only for a registry that stopped answering.
pub const PULL_STALL: Duration = Duration::from_secs(120);

/// A stream from the Docker Engine sent nothing for the whole bound.
#[derive(Debug, thiserror::Error)]
#[error("the Docker Engine sent nothing for {} s", .0.as_secs())]
pub struct Stalled(pub Duration);

/// The next item of a Docker stream, or [`Stalled`] when none came within
/// `limit`.
pub async fn next_within<S: Stream + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Result<Option<S::Item>, Stalled> {
    tokio::time::timeout(limit, stream.next())
        .await
        .map_err(|_| Stalled(limit))
}

/// Connects to the engine (DOCKER_HOST or the local socket) and agrees on an
/// API version.
pub async fn connect() -> Result<Docker, ObserveError> {
    let docker = Docker::connect_with_local_defaults().map_err(ObserveError::DockerUnreachable)?;
    docker
        .negotiate_version()
        .await
        .map_err(ObserveError::DockerUnreachable)
}

/// Whether an engine error means the object does not exist.
pub fn is_not_found(error: &DockerError) -> bool {
    matches!(
        error,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// What Docker holds for the desired container.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Always `Some`: a container in state `Missing` records whether its
    /// volume exists.
    pub container: Option<Container>,
    pub images: BTreeMap<String, Image>,
}

/// Reads the container named like the desired one, its volume, and the
/// desired image.
pub async fn observe(docker: &Docker, want: &Container) -> Result<Observed, ObserveError> {
    let (container, volume, image, network, engine) = tokio::join!(
        docker.inspect_container(&want.name, None),
        docker.inspect_volume(&want.volume),
        docker.inspect_image(&want.image),
        docker.inspect_network(&want.network, None),
        docker.info(),
    );
    let engine = engine.map_err(|source| ObserveError::Docker {
        what: "read the engine's resources".to_owned(),
        source,
    })?;
    let network_exists = match network {
        Ok(_) => true,
        Err(error) if is_not_found(&error) => false,
        Err(source) => {
            return Err(ObserveError::Docker {
                what: format!("inspect network `{}`", want.network),
                source,
            });
        }
    };
    let volume_exists = match volume {
        Ok(_) => true,
        Err(error) if is_not_found(&error) => false,
        Err(source) => {
            return Err(ObserveError::Docker {
                what: format!("inspect volume `{}`", want.volume),
                source,
            });
        }
    };
    let mut images = BTreeMap::new();
    match image {
        Ok(image) => {
            images.insert(want.image.clone(), image_from_inspect(image));
        }
        Err(error) if is_not_found(&error) => {}
        Err(source) => {
            return Err(ObserveError::Docker {
                what: format!("inspect image `{}`", want.image),
                source,
            });
        }
    }
    let container = match container {
        Ok(inspect) => {
            let mut container = container_from_inspect(inspect, want, volume_exists);
            if container.state != ContainerState::Running {
                // A running server reports its version; a stopped one is
                // read from the data directory, so a major version change
                // is refused before anything starts.
                container.data_major =
                    data_directory_major(docker, &want.name, &container.pgdata).await;
            }
            container.network_exists = network_exists;
            container
        }
        Err(error) if is_not_found(&error) => Container {
            name: want.name.clone(),
            state: ContainerState::Missing,
            volume_exists,
            network_exists,
            ..Container::default()
        },
        Err(source) => {
            return Err(ObserveError::Docker {
                what: format!("inspect container `{}`", want.name),
                source,
            });
        }
    };
    let container = Container {
        engine_cpus: engine.ncpu,
        engine_memory_bytes: engine.mem_total,
        ..container
    };
    Ok(Observed {
        container: Some(container),
        images,
    })
}

/// `PG_VERSION` of the data directory `pgdata` in a container, read
/// through the engine's archive endpoint; `None` when it cannot be read.
pub async fn data_directory_major(docker: &Docker, container: &str, pgdata: &str) -> Option<u32> {
    if pgdata.is_empty() {
        return None;
    }
    let text = read_file(docker, container, &format!("{pgdata}/PG_VERSION"))
        .await
        .ok()??;
    String::from_utf8_lossy(&text).trim().parse().ok()
}

/// The most of a file `read_file` reads: the control files it is for are
/// a few kilobytes.
const READ_FILE_LIMIT: usize = 64 * 1024;

/// One regular file from a container (running, stopped or only created),
/// through the engine's archive endpoint; `None` when it does not exist.
pub async fn read_file(
    docker: &Docker,
    container: &str,
    path: &str,
) -> Result<Option<Vec<u8>>, ObserveError> {
    let mut archive = Vec::new();
    let mut stream = docker.download_from_container(
        container,
        Some(DownloadFromContainerOptions {
            path: path.to_owned(),
        }),
    );
    loop {
        let chunk = match next_within(&mut stream, STREAM_STALL).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(source) => {
                return Err(ObserveError::DockerStalled {
                    what: format!("read `{path}` in container `{container}`"),
                    source,
                });
            }
        };
        match chunk {
            Ok(bytes) => {
                archive.extend_from_slice(&bytes);
                if archive.len() > READ_FILE_LIMIT + 4096 {
                    break;
                }
            }
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(source) => {
                return Err(ObserveError::Docker {
                    what: format!("read `{path}` in container `{container}`"),
                    source,
                });
            }
        }
    }
    let mut reader = tar::Archive::new(archive.as_slice());
    let Ok(mut entries) = reader.entries() else {
        return Ok(None);
    };
    let Some(Ok(entry)) = entries.next() else {
        return Ok(None);
    };
    if entry.header().entry_type() != tar::EntryType::Regular {
        return Ok(None);
    }
    let mut content = Vec::new();
    match std::io::Read::read_to_end(
        &mut std::io::Read::take(entry, READ_FILE_LIMIT as u64),
        &mut content,
    ) {
        Ok(_) => Ok(Some(content)),
        Err(_) => Ok(None),
    }
}

/// The facts pgspec needs of an image: its id, major version, `PGDATA` and
/// declared volumes.
pub fn image_from_inspect(image: ImageInspect) -> Image {
    let config = image.config.unwrap_or_default();
    let env = config.env.unwrap_or_default();
    let mut volumes: Vec<String> = config.volumes.unwrap_or_default().into_iter().collect();
    volumes.sort();
    Image {
        id: image.id.unwrap_or_default(),
        pg_major: env_value(&env, "PG_MAJOR").and_then(|major| major.parse().ok()),
        pgdata: env_value(&env, "PGDATA").map(str::to_owned),
        volumes,
    }
}

fn env_value<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter()
        .find_map(|entry| entry.strip_prefix(name)?.strip_prefix('='))
}

fn container_from_inspect(
    inspect: ContainerInspectResponse,
    want: &Container,
    volume_exists: bool,
) -> Container {
    let config = inspect.config.unwrap_or_default();
    let host_config = inspect.host_config.unwrap_or_default();
    let env = config.env.unwrap_or_default();
    let binding = host_config
        .port_bindings
        .as_ref()
        .and_then(|bindings| bindings.get(SERVER_PORT))
        .and_then(|bindings| bindings.as_ref())
        .and_then(|bindings| bindings.first());
    // The data directory is where the container's PGDATA says; the mount
    // holding it — named volume, anonymous volume, bind mount or none — is
    // what a replacement keeps or loses.
    let pgdata = env_value(&env, "PGDATA")
        .filter(|pgdata| pgdata.starts_with('/'))
        .unwrap_or(DEFAULT_PGDATA)
        .to_owned();
    let mounts = mounts_of(inspect.mounts.unwrap_or_default());
    let home = DataHome::locate(&pgdata, &mounts);
    let engine_state = inspect.state.unwrap_or_default();
    let state = if engine_state.restarting == Some(true) {
        ContainerState::Restarting
    } else if engine_state.running == Some(true) {
        ContainerState::Running
    } else {
        ContainerState::Stopped
    };
    let health = engine_state
        .health
        .filter(|_| state == ContainerState::Running)
        .and_then(health_verdict);
    let labels = config.labels.clone().unwrap_or_default();
    let positive = |value: Option<i64>| value.filter(|value| *value > 0);
    let attached = inspect
        .network_settings
        .as_ref()
        .and_then(|settings| settings.networks.as_ref())
        .is_some_and(|networks| networks.contains_key(&want.network));
    let restart_policy = host_config
        .restart_policy
        .as_ref()
        .and_then(|policy| policy.name)
        .map(|name| name.to_string())
        .unwrap_or_default();
    Container {
        name: want.name.clone(),
        image: config.image.unwrap_or_default(),
        port: binding
            .and_then(|binding| binding.host_port.as_deref())
            .and_then(|port| port.parse().ok())
            .unwrap_or_default(),
        bind_address: binding
            .and_then(|binding| binding.host_ip.clone())
            .unwrap_or_default(),
        volume: home.volume,
        data_mount: home.mount,
        pgdata: home.pgdata,
        data_kind: home.kind,
        nano_cpus: positive(host_config.nano_cpus),
        memory_bytes: positive(host_config.memory),
        shm_bytes: positive(host_config.shm_size),
        superuser: env_value(&env, "POSTGRES_USER")
            .unwrap_or("postgres")
            .to_owned(),
        superuser_password: None,
        state,
        id: inspect.id.unwrap_or_default(),
        image_id: inspect.image.unwrap_or_default(),
        data_major: None,
        volume_exists,
        network: if attached {
            want.network.clone()
        } else {
            String::new()
        },
        network_exists: false,
        restart_policy,
        engine_cpus: None,
        engine_memory_bytes: None,
        health_check: config
            .healthcheck
            .and_then(|check| check.test)
            .unwrap_or_default(),
        health,
        config_hash: labels.get(labels::CONFIG_HASH).cloned().unwrap_or_default(),
    }
}

/// A container's mounts as the engine reports them.
pub fn mounts_of(mounts: Vec<MountPoint>) -> Vec<MountInfo> {
    mounts
        .into_iter()
        .map(|mount| MountInfo {
            kind: mount.typ.map(|kind| kind.to_string()).unwrap_or_default(),
            name: mount.name.unwrap_or_default(),
            destination: mount.destination.unwrap_or_default(),
        })
        .collect()
}

/// The engine's health verdict, with the last check's output when the
/// container is unhealthy; `None` without a health check.
fn health_verdict(health: Health) -> Option<String> {
    let status = match health.status? {
        HealthStatusEnum::STARTING => "starting",
        HealthStatusEnum::HEALTHY => "healthy",
        HealthStatusEnum::UNHEALTHY => "unhealthy",
        HealthStatusEnum::EMPTY | HealthStatusEnum::NONE => return None,
    };
    let output = health
        .log
        .and_then(|log| log.into_iter().last())
        .and_then(|last| last.output)
        .map(|output| output.trim().to_owned())
        .filter(|output| !output.is_empty());
    Some(match (status, output) {
        ("unhealthy", Some(output)) => format!("unhealthy ({output})"),
        (status, _) => status.to_owned(),
    })
}
