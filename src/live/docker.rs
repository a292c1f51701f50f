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
use crate::model::{
    ADOPTED_MARK, Container, ContainerState, Image, NetworkAttachment, adopted_mark,
};

/// What Docker holds for the desired container.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Always `Some`: a container in state `Missing` records whether its
    /// volume exists.
    pub container: Option<Container>,
    pub images: BTreeMap<String, Image>,
}

/// Reads the container named like the desired one, its volume (and who
/// else mounts it), its networks, whether `deployment` adopted it, and the
/// desired image.
pub async fn observe(
    docker: &Docker,
    deployment: &str,
    want: &Container,
) -> Result<Observed, ObserveError> {
    let (container, volume, image, network, engine, absent_networks, volume_users) = tokio::join!(
        docker.inspect_container(&want.name, None),
        docker.inspect_volume(&want.volume),
        docker.inspect_image(&want.image),
        network_exists(docker, &want.network),
        docker.info(),
        absent_networks(docker, want),
        volume_users(docker, want),
    );
    let engine = engine.map_err(EngineError::call("read the engine's resources"))?;
    let network_exists = network?;
    let absent_networks = absent_networks?;
    let volume_users = volume_users?;
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
            if container.foreign && want.network_external {
                container.adopted = adopted(docker, deployment, &container).await;
            }
            container.network_exists = network_exists;
            container.absent_networks = absent_networks;
            container.volume_users = volume_users;
            container
        }
        None => Container {
            name: want.name.clone(),
            state: ContainerState::Missing,
            volume_exists,
            network_exists,
            absent_networks,
            volume_users,
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

/// Whether the data directory of a container pgspec did not create holds
/// the adoption mark of `deployment`.
async fn adopted(docker: &Docker, deployment: &str, container: &Container) -> bool {
    if container.pgdata.is_empty() {
        return false;
    }
    let path = format!("{}/{ADOPTED_MARK}", container.pgdata);
    crate::engine::files::read_text(docker, &container.name, &path)
        .await
        .is_some_and(|text| text == adopted_mark(deployment))
}

/// Whether a network exists; the empty name (no network wanted) does not.
async fn network_exists(docker: &Docker, name: &str) -> Result<bool, EngineError> {
    if name.is_empty() {
        return Ok(false);
    }
    crate::engine::objects::network_exists(docker, name).await
}

/// The networks the spec joins that do not exist, in the spec's order.
async fn absent_networks(docker: &Docker, want: &Container) -> Result<Vec<String>, EngineError> {
    let checks = want.networks.iter().map(|network| async move {
        crate::engine::objects::network_exists(docker, &network.name)
            .await
            .map(|exists| (!exists).then(|| network.name.clone()))
    });
    let found = futures_util::future::try_join_all(checks).await?;
    Ok(found.into_iter().flatten().collect())
}

/// The other containers that mount the data volume: a second server on
/// the same data directory would corrupt it. pgspec's own check and
/// scratch containers (labelled with a role) never run a server on it.
async fn volume_users(docker: &Docker, want: &Container) -> Result<Vec<String>, EngineError> {
    if want.volume.is_empty() {
        return Ok(Vec::new());
    }
    let users = crate::engine::container::using_volume(docker, &want.volume).await?;
    Ok(users
        .into_iter()
        .filter(|(name, labels)| *name != want.name && !labels.contains_key(labels::ROLE))
        .map(|(name, _)| name)
        .collect())
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
    let (mut bind_address, port) = crate::engine::container::configured(&inspect, SERVER_PORT);
    // `-p 5432:5432` names no address: the engine binds every one, which
    // a spec says as `0.0.0.0`.
    if bind_address.is_empty() && port != 0 {
        bind_address = "0.0.0.0".to_owned();
    }
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
    let id = inspect.id.clone().unwrap_or_default();
    let endpoints = inspect
        .network_settings
        .as_ref()
        .and_then(|settings| settings.networks.clone())
        .unwrap_or_default();
    let attached = endpoints.contains_key(&want.network);
    let network_subnet = endpoints
        .get(&want.network)
        .and_then(|endpoint| subnet(endpoint.ip_address.as_deref()?, endpoint.ip_prefix_len?))
        .unwrap_or_default();
    // The deployment's network is compared as one of `networks` too when
    // the spec gives the container aliases there.
    let own = if want
        .networks
        .iter()
        .any(|network| network.name == want.network)
    {
        ""
    } else {
        want.network.as_str()
    };
    let networks = attachments(endpoints, own, &want.name, &id);
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
        cpu_shares: positive(host_config.cpu_shares),
        memory_reservation_bytes: positive(host_config.memory_reservation),
        shm_bytes: positive(host_config.shm_size),
        superuser: env_value(&env, "POSTGRES_USER")
            .unwrap_or("postgres")
            .to_owned(),
        superuser_password: None,
        state,
        id,
        image_id: inspect.image.unwrap_or_default(),
        data_major: None,
        volume_exists,
        network: if attached {
            want.network.clone()
        } else {
            String::new()
        },
        network_external: false,
        adopted: false,
        upgrade: None,
        network_exists: false,
        network_subnet,
        networks,
        absent_networks: Vec::new(),
        volume_users: Vec::new(),
        foreign: !labels.contains_key(labels::DEPLOYMENT),
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

/// The network of an endpoint's address and prefix length:
/// `172.18.0.2` and 16 give `172.18.0.0/16`.
fn subnet(address: &str, prefix: i64) -> Option<String> {
    let address: std::net::IpAddr = address.parse().ok()?;
    let prefix = u8::try_from(prefix).ok()?;
    let network = match address {
        std::net::IpAddr::V4(ip) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            std::net::IpAddr::V4((u32::from(ip) & mask).into())
        }
        std::net::IpAddr::V6(ip) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            std::net::IpAddr::V6((u128::from(ip) & mask).into())
        }
    };
    Some(format!("{network}/{prefix}"))
}

/// The networks a container is attached to besides `own`, with the
/// aliases it was given there: the engine adds the short container id
/// (API 1.43 and before), and the container's name resolves anyway.
fn attachments(
    endpoints: std::collections::HashMap<String, bollard::models::EndpointSettings>,
    own: &str,
    name: &str,
    id: &str,
) -> Vec<NetworkAttachment> {
    let short_id = id.get(..12).unwrap_or(id);
    let mut networks: Vec<NetworkAttachment> = endpoints
        .into_iter()
        .filter(|(network, _)| network != own)
        .map(|(network, endpoint)| {
            let mut aliases: Vec<String> = endpoint
                .aliases
                .unwrap_or_default()
                .into_iter()
                .filter(|alias| alias != short_id && alias != name)
                .collect();
            aliases.sort();
            aliases.dedup();
            NetworkAttachment {
                name: network,
                aliases,
            }
        })
        .collect();
    networks.sort();
    networks
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
