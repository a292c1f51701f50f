//! The server container and the images it runs: what pgspec creates the
//! container from, what it reads back, and the hash of what cannot change
//! without replacing it.

use serde::{Deserialize, Serialize};

use super::data;
use crate::secret::Secret;

/// The file in the data directory that records the adoption of a server
/// container pgspec did not create, when the deployment's network is one
/// the container may have joined without pgspec (an existing network the
/// spec names). The engine adds no label to an existing container, and a
/// data directory proven to be on the spec's volume outlives the container.
pub const ADOPTED_MARK: &str = "pgspec.adopted";

/// What the adoption mark of `deployment` says.
pub fn adopted_mark(deployment: &str) -> String {
    format!("managed by pgspec; deployment={deployment}\n")
}

/// How a major version upgrade moves the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeMethod {
    /// The new image's pg_dump and pg_restore, from the old server into a
    /// new one.
    DumpRestore,
}

/// The volume that keeps the data of major version `major` after an
/// upgrade moved the volume on.
pub fn upgrade_kept_volume(volume: &str, major: u32) -> String {
    format!("{volume}-pg{major}")
}

/// A local Docker image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    /// `PG_MAJOR` from the image's environment, as the official image sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_major: Option<u32>,
    /// `PGDATA` from the image's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgdata: Option<String>,
    /// The volumes the image declares (`VOLUME`), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
}

impl Image {
    /// Where a container of this image keeps its data directory.
    pub fn data_layout(&self) -> data::DataLayout {
        data::DataLayout::of_image(self.pgdata.as_deref(), &self.volumes)
    }
}

/// A network the server container joins besides the deployment's own:
/// one pgspec does not create, such as a Compose project's.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NetworkAttachment {
    pub name: String,
    /// The other names the container answers to on this network, sorted.
    /// Live: those the engine reports, less the short container id it adds
    /// itself and the container's name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

impl NetworkAttachment {
    /// The aliases as the plan shows them.
    pub fn describe(&self) -> String {
        if self.aliases.is_empty() {
            "attached".to_owned()
        } else {
            format!("aliases {}", self.aliases.join(", "))
        }
    }
}

/// The PostgreSQL server container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Container {
    /// Docker name of the container: `postgres.container_name`, by default
    /// `<deployment>-postgres`.
    pub name: String,
    pub image: String,
    /// Host port the server's 5432 is published on.
    pub port: u16,
    pub bind_address: String,
    /// Named volume holding the data directory. Live: the volume holding
    /// `pgdata`, named or anonymous; empty when no volume does.
    pub volume: String,
    /// Where the volume is mounted inside the container. Desired: derived
    /// from the image (`model::data`), empty until the image is known.
    pub data_mount: String,
    /// The data directory (`PGDATA`). Desired: derived from the image like
    /// `data_mount`; live: the container's `PGDATA`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pgdata: String,
    /// Live only: the kind of mount holding `pgdata` (`volume`, `bind`,
    /// `tmpfs`); empty when it is in the container's own file system.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data_kind: String,
    /// CPU limit in nano-CPUs (Docker's unit); `None` is no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<i64>,
    /// Memory limit in bytes; `None` is no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<i64>,
    /// CPU weight (`--cpu-shares`, 1024 for each CPU of
    /// `resources.reservations.cpus`): the engine has no CPU reservation
    /// outside swarm, so a reservation is a larger share when CPUs are
    /// contended. Desired: `None` leaves the container's as it is; live:
    /// `None` is the engine default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
    /// Memory reservation in bytes (`--memory-reservation`, a soft limit
    /// the kernel reclaims down to under memory pressure). Desired: `None`
    /// leaves the container's as it is; live: `None` is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation_bytes: Option<i64>,
    /// /dev/shm size in bytes; `None` is the engine default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_bytes: Option<i64>,
    pub superuser: String,
    /// The superuser password; only the desired side has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superuser_password: Option<Secret>,
    pub state: ContainerState,
    /// Docker id of the live container; empty on the desired side.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Id of the live container's image; empty on the desired side.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_id: String,
    /// `PG_VERSION` of the data directory on the volume, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_major: Option<u32>,
    /// Whether the data volume exists (live) — the desired side wants it to.
    pub volume_exists: bool,
    /// The deployment's Docker network the container is attached to
    /// (`<deployment>-net`, or the existing one `postgres.network` names);
    /// live: empty when it is not attached.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    /// Desired only: how a change of major version moves the data
    /// (`postgres.upgrade`); none refuses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeMethod>,
    /// Desired only: `network` is an existing network the spec names, which
    /// pgspec joins but never creates; its aliases, if any, are an entry of
    /// `networks` under the same name.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network_external: bool,
    /// Live only: the data directory holds the mark pgspec leaves when it
    /// adopts a container it did not create on a network it does not own
    /// (see [`ADOPTED_MARK`]), naming this deployment.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    /// Live only: the deployment network's subnet (`172.18.0.0/16`), as
    /// the server's attachment to it has it; empty when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network_subnet: String,
    /// Live only: whether the deployment's network exists.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network_exists: bool,
    /// Networks joined besides `network`, sorted by name. Desired:
    /// `postgres.networks` (and `postgres.network` when it has aliases);
    /// live: every other network the container is attached to (and the
    /// deployment's, when the spec gives it aliases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachment>,
    /// Live only: the networks of the spec that do not exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent_networks: Vec<String>,
    /// Live only: other containers, running or not, that mount the data
    /// volume (pgspec's own never-started check containers aside), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_users: Vec<String>,
    /// Live only: the container carries no `org.pgspec.deployment` label:
    /// something other than pgspec created it (a runbook's `docker run`,
    /// Compose). Such a container is adopted when it matches the spec and
    /// never replaced until it is (see `plan::diff::adoption`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub foreign: bool,
    /// Docker restart policy (`unless-stopped`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub restart_policy: String,
    /// Live only: CPUs and memory (bytes) the Docker engine has, the most a
    /// container can be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_cpus: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_memory_bytes: Option<i64>,
    /// The health check the engine runs in the container, in Docker's
    /// `Test` form (`["CMD", "pg_isready", …]`); empty when there is none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_check: Vec<String>,
    /// Live only: the engine's health verdict (`starting`, `healthy`,
    /// `unhealthy`), with the last check's output when unhealthy; `None`
    /// when the container has no health check or is not running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Live only: the `org.pgspec.config-hash` label, the hash of the
    /// configuration pgspec created the container from; empty when the
    /// container has none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config_hash: String,
}

impl Container {
    /// Where this (live) container's data directory is.
    pub fn data_home(&self) -> data::DataHome {
        data::DataHome {
            pgdata: self.pgdata.clone(),
            kind: self.data_kind.clone(),
            volume: self.volume.clone(),
            mount: self.data_mount.clone(),
        }
    }

    /// This desired container with the data layout of its image.
    pub fn with_layout(&self, layout: &data::DataLayout) -> Container {
        Container {
            pgdata: layout.pgdata.clone(),
            data_mount: layout.mount.clone(),
            ..self.clone()
        }
    }

    /// The health check pgspec gives a server container: the server accepts
    /// TCP connections. It checks 127.0.0.1, not the socket, so the
    /// temporary socket-only server of a first initialisation is not taken
    /// for the real one.
    pub fn server_health_check(superuser: &str) -> Vec<String> {
        [
            "CMD",
            "pg_isready",
            "--quiet",
            "--host",
            "127.0.0.1",
            "--port",
            "5432",
            "--dbname",
            "postgres",
            "--username",
            superuser,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Hash of everything pgspec sets when it creates the container and the
    /// engine cannot change afterwards: image, published port, data mount,
    /// network, /dev/shm, health check and the initialisation environment.
    /// Resources, reservations and the restart policy are left out: `docker
    /// update` changes them in place; so are the other networks it joins,
    /// which are connected in place. The superuser's name and password matter only
    /// when the data directory is first created, so only whether a password
    /// file is used counts.
    pub fn creation_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut fields = serde_json::json!({
            // What `apply::docker` sets that no field here says (the
            // environment, initdb's arguments, the health check's timing):
            // raise it when that changes, and existing containers are
            // replaced once to match.
            "template": 1,
            "image": self.image,
            "port": [self.bind_address, self.port],
            "mount": [self.volume, self.data_mount],
            "network": self.network,
            "shm": self.shm_bytes,
            "health_check": self.health_check,
            "password_file": self.superuser_password.is_some(),
        });
        // PGDATA is the mount itself in the images of PostgreSQL 17 and
        // before; it is hashed only when it differs, so that their
        // containers keep the hash they were created with.
        if !self.pgdata.is_empty() && self.pgdata != self.data_mount {
            fields["pgdata"] = serde_json::Value::String(self.pgdata.clone());
        }
        let digest = Sha256::digest(fields.to_string().as_bytes());
        hex::encode(&digest[..8])
    }
}

/// Run state of a container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    #[default]
    Running,
    Stopped,
    /// The engine keeps restarting it: the server exits soon after it
    /// starts.
    Restarting,
    /// The container does not exist.
    Missing,
}

impl ContainerState {
    /// Whether the container runs (for `skip_serializing_if`).
    pub fn is_running(&self) -> bool {
        *self == ContainerState::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_creation_hash_ignores_what_docker_update_changes() {
        let container = Container {
            image: "postgres:17".to_owned(),
            port: 5432,
            health_check: Container::server_health_check("postgres"),
            ..Container::default()
        };
        let resized = Container {
            nano_cpus: Some(2_000_000_000),
            memory_bytes: Some(1 << 30),
            cpu_shares: Some(2048),
            memory_reservation_bytes: Some(1 << 29),
            restart_policy: "always".to_owned(),
            networks: vec![NetworkAttachment {
                name: "app-net".to_owned(),
                aliases: vec!["postgres".to_owned()],
            }],
            ..container.clone()
        };
        assert_eq!(container.creation_hash(), resized.creation_hash());
        let moved = Container {
            port: 5433,
            ..container.clone()
        };
        assert_ne!(container.creation_hash(), moved.creation_hash());
    }
}
