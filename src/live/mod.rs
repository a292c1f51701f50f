//! Reading what is live: Docker through the Engine API, PostgreSQL through
//! its catalogs, both at once.
//!
//! Invariant: nothing here writes. Every kind of object is read with one
//! query per database, never one per object, and results are sorted before
//! they reach `plan`.

pub mod all;
pub mod backup;
pub mod docker;
pub mod exporter;
pub mod pooler;
pub mod postgres;
pub mod replicas;
pub mod status;
pub mod tls;
pub mod upgrade;

use crate::engine::EngineError;
use crate::model::Desired;
use crate::model::{ContainerState, Deployment};
use crate::secret::SecretError;

pub use postgres::Target;

/// Why live state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The Docker Engine did not answer, a call failed, or a file read out
    /// of a container stopped arriving.
    #[error(transparent)]
    Engine(#[from] EngineError),
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
    /// A certificate or key the spec names cannot be used; `what` names
    /// where it is, never what it holds.
    #[error("the TLS file in {what} cannot be used: {message}")]
    Certificate { what: String, message: String },
}

impl ObserveError {
    /// What the user can do about it, when there is something.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            ObserveError::Engine(error) => error.help(),
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

/// The help for one cause of an error chain: an observation's or the
/// engine's, where they have one.
pub fn help_for(cause: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    if let Some(error) = cause.downcast_ref::<ObserveError>() {
        return error.help();
    }
    cause
        .downcast_ref::<EngineError>()
        .and_then(EngineError::help)
}

/// What a command reaches, opened once and passed down: the server's
/// connection target (secrets read here, once) and, when the spec runs a
/// container, the engine (API version negotiated once).
#[derive(Debug, Clone)]
pub struct Connections {
    pub target: Target,
    pub engine: Option<crate::engine::Docker>,
    /// Which engine `engine` is, when there is one.
    pub endpoint: Option<crate::engine::endpoint::Endpoint>,
}

impl Connections {
    /// Resolves the target and connects to the engine when the spec has a
    /// container.
    pub async fn open(spec: &Desired) -> Result<Connections, ObserveError> {
        let mut target = Target::resolve(spec)?;
        let (engine, endpoint) = match &spec.deployment.container {
            Some(_) => {
                let engine = crate::engine::connect_to(spec.connection.engine.as_deref()).await?;
                // The published port is reached the way the engine makes
                // it reachable, unless the spec says where the server is.
                if spec.connection.host.is_none() && spec.connection.url.is_none() {
                    target.route = engine.route();
                }
                (Some(engine.docker), Some(engine.endpoint))
            }
            None => (None, None),
        };
        // `verify-ca` and `verify-full` without a root certificate check
        // the server against the CA pgspec generated for it, read from the
        // container (whoever controls the engine controls the server too).
        if let (Some(engine), Some(container), Some(tls)) =
            (&engine, &spec.deployment.container, &spec.deployment.tls)
            && target.ssl.mode.verifies()
            && target.ssl.root_cert.is_none()
            && matches!(tls.source, Some(crate::model::TlsSource::SelfSigned { .. }))
        {
            target.ssl.generated_ca = Some(postgres::ssl::GeneratedCa::new(
                engine.clone(),
                container.name.clone(),
            ));
        }
        Ok(Connections {
            target,
            engine,
            endpoint,
        })
    }

    /// The engine; an error when the spec runs no container (a bug: only
    /// a container's plan has engine steps).
    pub fn engine(&self) -> Result<&crate::engine::Docker, ObserveError> {
        self.engine.as_ref().ok_or_else(|| {
            ObserveError::Connection(
                "the spec runs no container, so pgspec did not connect to the Docker Engine"
                    .to_owned(),
            )
        })
    }
}

/// Reads the live deployment the spec describes: the container, pooler and
/// backup container (when the spec runs a server) through one engine
/// connection and, concurrently, PostgreSQL's catalogs at `target`, the
/// connection the command resolved once.
pub async fn observe(
    spec: &Desired,
    connections: &Connections,
) -> Result<Deployment, ObserveError> {
    let desired = &spec.deployment;
    let target = &connections.target;
    let docker = &connections.engine;
    // Counted by tests: an apply observes at most twice.
    tracing::debug!(deployment = %desired.name, "observing the deployment");
    let docker_side = async {
        match (docker, &desired.container) {
            (Some(docker), Some(container)) => {
                let (server, backup) = tokio::join!(
                    docker::observe(docker, &desired.name, container),
                    backup::observe(docker, desired)
                );
                Ok::<_, ObserveError>(Some((server?, backup?)))
            }
            _ => Ok(None),
        }
    };
    let postgres_side = postgres::observe(target, desired);
    let pooler_side = async {
        match docker {
            Some(docker) => pooler::observe(docker, target, desired).await,
            None => Ok(None),
        }
    };
    let exporter_side = async {
        match docker {
            Some(docker) => exporter::observe(docker, desired).await.map(Some),
            None => Ok(None),
        }
    };
    let (docker_result, postgres_result, pooler_result, exporter_result) =
        tokio::join!(docker_side, postgres_side, pooler_side, exporter_side);

    let mut live = Deployment {
        name: desired.name.clone(),
        ..Deployment::default()
    };
    let server_may_run = match docker_result? {
        Some((observed, backup)) => {
            live.backup = backup;
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
    if let (Some(docker), Some(tls), Some(container)) = (docker, &desired.tls, &live.container)
        && container.state != ContainerState::Missing
    {
        let pgdata = if container.pgdata.is_empty() {
            crate::model::data::DEFAULT_PGDATA
        } else {
            container.pgdata.as_str()
        };
        live.tls = Some(tls::observe(docker, &container.name, pgdata, tls).await?);
    } else if let Some(tls) = &desired.tls {
        // No container yet: the spec's files are read all the same, so a
        // certificate that cannot be used stops the plan that creates it.
        live.tls = Some(tls::observe_spec_only(tls)?);
    }
    if let Some(observed) = pooler_result? {
        live.pooler = Some(observed.pooler);
        live.images.extend(observed.images);
    }
    if let Some((exporters, images)) = exporter_result? {
        live.exporters = exporters;
        live.images.extend(images);
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
    let answered = postgres_result.is_ok();
    match postgres_result {
        Ok(observed) => {
            // The archiver is read only when the server answered; unknown
            // (and no drift) when the slot cannot be read.
            if backup::streams_wal(desired)
                && let Some(backup) = &mut live.backup
            {
                backup.archiver = backup::observe_archiver(target, &desired.name).await.ok();
            }
            if let Some(container) = &mut live.container {
                container.data_major = Some(observed.server.version_num / 10_000);
            }
            live.server = Some(observed.server);
            live.settings = observed.settings;
            live.roles = observed.roles;
            live.databases = observed.databases;
            live.access = observed.access;
        }
        // A stopped or missing container explains an unreachable server;
        // the plan starts it and plans the rest afterwards.
        Err(ObserveError::PostgresUnreachable { .. }) if !server_may_run => {}
        Err(error) => return Err(error),
    }
    if let (Some(docker), Some((image, major))) = (docker, pending_upgrade(desired, &live)) {
        live.upgrade = Some(upgrade::observe(docker, target, &desired.name, image, major).await?);
    }
    if let Some(docker) = docker {
        live.replication = replicas::observe(docker, target, desired, answered).await?;
    }
    Ok(live)
}

/// The image and major version of a declared upgrade the live server
/// awaits: the spec declares `postgres.upgrade`, the server answered, and
/// the local image runs a later major version than its data.
fn pending_upgrade<'a>(desired: &'a Deployment, live: &Deployment) -> Option<(&'a str, u32)> {
    let want = desired.container.as_ref()?;
    want.upgrade?;
    live.server.as_ref()?;
    let data_major = live.container.as_ref()?.data_major?;
    let image_major = live.images.get(&want.image)?.pg_major?;
    (image_major > data_major).then_some((want.image.as_str(), image_major))
}
