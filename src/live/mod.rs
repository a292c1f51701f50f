//! Reading what is live: Docker through the Engine API, PostgreSQL through
//! its catalogs, both at once.
//!
//! Invariant: nothing here writes. Every kind of object is read with one
//! query per database, never one per object, and results are sorted before
//! they reach `plan`.

pub mod all;
pub mod backup;
pub mod docker;
pub mod pooler;
pub mod postgres;

use crate::model::Desired;
use crate::model::{ContainerState, Deployment};
use crate::secret::SecretError;

pub use postgres::Target;

/// Why live state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The Docker Engine did not answer.
    #[error("Docker Engine did not answer")]
    DockerUnreachable(#[source] bollard::errors::Error),
    /// A Docker API call failed.
    #[error("cannot {what}")]
    Docker {
        what: String,
        #[source]
        source: bollard::errors::Error,
    },
    /// No connection to PostgreSQL could be made.
    #[error("cannot connect to PostgreSQL at {target}")]
    PostgresUnreachable {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// Something accepted the TCP connection but did not complete
    /// PostgreSQL's startup within `postgres::CONNECT_TIMEOUT`.
    #[error(
        "cannot connect to PostgreSQL at {target}: no answer within {} s",
        postgres::CONNECT_TIMEOUT.as_secs()
    )]
    PostgresSilent { target: String },
    /// Reading the server's catalogs took longer than
    /// `postgres::OBSERVE_TIMEOUT`.
    #[error(
        "reading PostgreSQL at {target} took longer than {} s",
        postgres::OBSERVE_TIMEOUT.as_secs()
    )]
    PostgresSlow { target: String },
    /// A file read out of a container stopped arriving.
    #[error("cannot {what}")]
    DockerStalled {
        what: String,
        #[source]
        source: docker::Stalled,
    },
    /// A catalog query failed.
    #[error("cannot read {what} in database `{database}`")]
    Query {
        database: String,
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    /// A secret needed to connect could not be read.
    #[error("cannot read the {purpose}")]
    Secret {
        purpose: &'static str,
        #[source]
        source: SecretError,
    },
    /// The connection settings are unusable.
    #[error("invalid connection settings: {0}")]
    Connection(String),
}

impl ObserveError {
    /// What the user can do about it, when there is something.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            ObserveError::DockerUnreachable(_) => {
                Some("start dockerd (scripts/docker-engine.sh does), or set DOCKER_HOST")
            }
            ObserveError::PostgresSilent { .. } => Some(
                "something accepts connections at that address but does not answer as \
                 PostgreSQL does: check host and port (spec `postgres.connection`, or \
                 PGHOST/PGPORT), and whether the server is overloaded",
            ),
            ObserveError::PostgresSlow { .. } => Some(
                "a catalog read may be waiting for a lock another session holds (pg_locks \
                 names it), or the server is overloaded",
            ),
            ObserveError::PostgresUnreachable { .. } => Some(
                "check that the server runs and that host, port, user and password are right \
                 (spec `postgres.connection`, or PGHOST/PGPORT/PGUSER/PGPASSWORD)",
            ),
            _ => None,
        }
    }
}

/// Reads the live deployment the spec describes: the container (when the
/// spec has one) and, concurrently, PostgreSQL's catalogs.
pub async fn observe(spec: &Desired) -> Result<Deployment, ObserveError> {
    let desired = &spec.deployment;
    let target = Target::resolve(spec)?;
    let docker_side = async {
        match &desired.container {
            Some(container) => {
                let docker = docker::connect().await?;
                docker::observe(&docker, container).await.map(Some)
            }
            None => Ok(None),
        }
    };
    let postgres_side = postgres::observe(&target, desired);
    let pooler_side = pooler::observe(&target, desired);
    let (docker_result, postgres_result, pooler_result) =
        tokio::join!(docker_side, postgres_side, pooler_side);

    let mut live = Deployment {
        name: desired.name.clone(),
        ..Deployment::default()
    };
    let server_may_run = match docker_result? {
        Some(observed) => {
            let running = observed
                .container
                .as_ref()
                .is_some_and(|container| container.state == ContainerState::Running);
            live.container = observed.container;
            live.images = observed.images;
            running
        }
        None => true,
    };
    if let Some(observed) = pooler_result? {
        live.pooler = Some(observed.pooler);
        live.images.extend(observed.images);
    }
    // The spec may move the server to another port (or address); until apply
    // has replaced the container it still listens where it was published.
    let moved = live.container.as_ref().filter(|container| {
        server_may_run
            && (container.port, container.bind_address.as_str())
                != (target.port, target.host.as_str())
            && container.port != 0
    });
    let postgres_result = match (postgres_result, moved) {
        (Err(ObserveError::PostgresUnreachable { .. }), Some(container)) => {
            let mut published = target.clone();
            published.port = container.port;
            published.host = postgres::published_host(&container.bind_address);
            postgres::observe(&published, desired).await
        }
        (result, _) => result,
    };
    match postgres_result {
        Ok(observed) => {
            if let Some(container) = &mut live.container {
                container.data_major = Some(observed.server.version_num / 10_000);
            }
            live.server = Some(observed.server);
            live.settings = observed.settings;
            live.roles = observed.roles;
            live.databases = observed.databases;
        }
        // A stopped or missing container explains an unreachable server;
        // the plan starts it and plans the rest afterwards.
        Err(ObserveError::PostgresUnreachable { .. }) if !server_may_run => {}
        Err(error) => return Err(error),
    }
    live.backup = backup::observe_deployment(desired).await?;
    Ok(live)
}
