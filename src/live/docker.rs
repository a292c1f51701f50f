//! Observing Docker: the server container, its data volume and the images
//! the spec names.
//!
//! Invariant: only reads. The client negotiates the API version, so an
//! engine speaking 1.41 works as well as a current one; DOCKER_HOST is
//! honoured.

use std::collections::BTreeMap;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::ContainerInspectResponse;

use crate::live::ObserveError;
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
    let (container, volume, image) = tokio::join!(
        docker.inspect_container(&want.name, None),
        docker.inspect_volume(&want.volume),
        docker.inspect_image(&want.image),
    );
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
            let env = image
                .config
                .and_then(|config| config.env)
                .unwrap_or_default();
            images.insert(
                want.image.clone(),
                Image {
                    id: image.id.unwrap_or_default(),
                    pg_major: env_value(&env, "PG_MAJOR").and_then(|major| major.parse().ok()),
                },
            );
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
        Ok(inspect) => container_from_inspect(inspect, want, volume_exists),
        Err(error) if is_not_found(&error) => Container {
            name: want.name.clone(),
            state: ContainerState::Missing,
            volume_exists,
            ..Container::default()
        },
        Err(source) => {
            return Err(ObserveError::Docker {
                what: format!("inspect container `{}`", want.name),
                source,
            });
        }
    };
    Ok(Observed {
        container: Some(container),
        images,
    })
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
    // The data mount is the named volume mounted where the data lives; any
    // other mount is not pgspec's concern.
    let data_mount = inspect
        .mounts
        .unwrap_or_default()
        .into_iter()
        .find(|mount| mount.destination.as_deref() == Some(want.data_mount.as_str()))
        .or(None);
    let running = inspect
        .state
        .as_ref()
        .and_then(|state| state.running)
        .unwrap_or(false);
    let positive = |value: Option<i64>| value.filter(|value| *value > 0);
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
        volume: data_mount
            .as_ref()
            .and_then(|mount| mount.name.clone())
            .unwrap_or_default(),
        data_mount: data_mount
            .as_ref()
            .and_then(|mount| mount.destination.clone())
            .unwrap_or_default(),
        nano_cpus: positive(host_config.nano_cpus),
        memory_bytes: positive(host_config.memory),
        shm_bytes: positive(host_config.shm_size),
        superuser: env_value(&env, "POSTGRES_USER")
            .unwrap_or("postgres")
            .to_owned(),
        superuser_password: None,
        state: if running {
            ContainerState::Running
        } else {
            ContainerState::Stopped
        },
        id: inspect.id.unwrap_or_default(),
        image_id: inspect.image.unwrap_or_default(),
        data_major: None,
        volume_exists,
    }
}
