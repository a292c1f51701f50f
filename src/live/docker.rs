//! Observing Docker: the server container, its data volume and the images
//! the spec names.
//!
//! Invariant: only reads. The client negotiates the API version, so an
//! engine speaking 1.41 works as well as a current one; DOCKER_HOST is
//! honoured.

use std::collections::BTreeMap;

use bollard::models::{ContainerInspectResponse, Health, HealthStatusEnum, MountPoint};

use crate::engine::container::SERVER_PORT;
use crate::engine::image::env_value;
use crate::engine::{Docker, EngineError, found, labels};
use crate::live::ObserveError;
use crate::model::data::{DEFAULT_PGDATA, DataHome, MountInfo};
use crate::model::{Container, ContainerState, Image};

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
    let engine = engine.map_err(EngineError::call("read the engine's resources"))?;
    let network_exists = found(network, &format!("inspect network `{}`", want.network))?.is_some();
    let volume_exists = found(volume, &format!("inspect volume `{}`", want.volume))?.is_some();
    let mut images = BTreeMap::new();
    if let Some(image) = found(image, &format!("inspect image `{}`", want.image))? {
        images.insert(want.image.clone(), crate::engine::image::facts(image));
    }
    let container = match found(container, &format!("inspect container `{}`", want.name))? {
        Some(inspect) => {
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
        None => Container {
            name: want.name.clone(),
            state: ContainerState::Missing,
            volume_exists,
            network_exists,
            ..Container::default()
        },
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
    let text = crate::engine::files::read_file(docker, container, &format!("{pgdata}/PG_VERSION"))
        .await
        .ok()??;
    String::from_utf8_lossy(&text).trim().parse().ok()
}

fn container_from_inspect(
    inspect: ContainerInspectResponse,
    want: &Container,
    volume_exists: bool,
) -> Container {
    let (bind_address, port) = crate::engine::container::configured(&inspect, SERVER_PORT);
    let config = inspect.config.unwrap_or_default();
    let host_config = inspect.host_config.unwrap_or_default();
    let env = config.env.unwrap_or_default();
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
        port,
        bind_address,
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
