//! The Docker Engine, for every layer that talks to it: one connection per
//! command (API version negotiated once), the labels pgspec puts on what it
//! creates, containers (create, start, wait, exec, logs, remove), files in
//! and out of containers, images (inspect, pull with progress), volumes and
//! networks.
//!
//! `live`, `apply` and `backup` call down into this module and never into
//! each other for engine work. Nothing here knows a spec, a plan or a
//! PostgreSQL connection; what a container is for is its caller's business.
//!
//! Invariant: every wait is bounded (a stream that stops sending is
//! [`Stalled`]; waits for a container take a limit), and nothing here
//! removes a named volume except [`objects::remove_volume`], which only
//! `backup verify` calls, for the scratch volume it made.

pub mod archive;
pub mod container;
pub mod endpoint;
pub mod files;
pub mod image;
pub mod objects;
pub mod remote;

use std::collections::HashMap;
use std::time::Duration;

pub use bollard::Docker;
use bollard::errors::Error as DockerError;
use futures_util::{Stream, StreamExt};

pub use crate::model::labels;

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

/// How long a stream from the Docker Engine (a file read out of a
/// container, a log tail, exec output) may go without a chunk before pgspec
/// gives up on it. bollard bounds only the wait for a response's headers.
pub const STREAM_STALL: Duration = Duration::from_secs(60);

/// How long an image pull may go without a progress message: the engine
/// reports every layer's download many times a second, so this is long
/// only for a registry that stopped answering.
pub const PULL_STALL: Duration = Duration::from_secs(120);

/// A stream from the Docker Engine sent nothing for the whole bound.
#[derive(Debug, thiserror::Error)]
#[error("the Docker Engine sent nothing for {} s", .0.as_secs())]
pub struct Stalled(pub Duration);

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The Docker Engine did not answer.
    #[error("Docker Engine did not answer")]
    Unreachable(#[source] DockerError),
    /// The engine the spec or the environment names did not answer, or
    /// could not be set up (a certificate file missing or unusable).
    #[error("the Docker Engine at {engine} did not answer{tls}")]
    Remote {
        engine: String,
        tls: String,
        #[source]
        source: DockerError,
    },
    /// No engine could be chosen (a context that does not exist).
    #[error(transparent)]
    Choice(#[from] endpoint::ChoiceError),
    /// A call failed; `what` says what pgspec was doing ("inspect volume
    /// `x`").
    #[error("cannot {what}")]
    Call {
        what: String,
        #[source]
        source: DockerError,
    },
    /// A container pgspec would remove by name is not one it made.
    #[error(
        "container `{name}` exists but pgspec did not make it; it is left alone: remove or \
         rename it, or name the deployment otherwise"
    )]
    NotOurs { name: String },
    /// A stream stopped arriving.
    #[error("cannot {what}")]
    Stalled {
        what: String,
        #[source]
        source: Stalled,
    },
}

impl EngineError {
    /// A failed call, described by what pgspec was doing.
    pub fn call(what: impl Into<String>) -> impl FnOnce(DockerError) -> EngineError {
        let what = what.into();
        move |source| EngineError::Call { what, source }
    }

    /// What the user can do about it, when there is something.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            EngineError::Unreachable(_) => {
                Some("start dockerd (scripts/docker-engine.sh does), or set DOCKER_HOST")
            }
            // A local socket named by DOCKER_HOST or a context: the daemon
            // is not running here.
            EngineError::Remote { engine, .. } if engine.starts_with("unix://") => {
                Some("start dockerd (scripts/docker-engine.sh does), or set DOCKER_HOST")
            }
            EngineError::Remote { .. } => Some(
                "check the engine's address, that it runs, and for TLS that the engine's \
                 certificate is signed by ca.pem and names the host (DOCKER_CERT_PATH, or the \
                 context's TLS files); for ssh:// that `ssh HOST docker version` works",
            ),
            EngineError::Choice(_) => Some(
                "`docker context ls` lists the contexts; set DOCKER_HOST, DOCKER_CONTEXT or \
                 the spec's postgres.engine",
            ),
            _ => None,
        }
    }
}

/// Connects to the engine the environment names (DOCKER_HOST, the docker
/// context, or the local socket) and agrees on an API version, so an
/// engine speaking 1.41 works as well as a current one. A command connects
/// once and passes the client down.
pub async fn connect() -> Result<Docker, EngineError> {
    Ok(connect_to(None).await?.docker)
}

/// A connected engine: the client, where it is and how PostgreSQL
/// published on it is reached from here.
#[derive(Clone)]
pub struct Engine {
    pub docker: Docker,
    pub endpoint: endpoint::Endpoint,
}

impl Engine {
    /// How PostgreSQL published on this engine is reached.
    pub fn route(&self) -> endpoint::Route {
        self.endpoint.route()
    }
}

/// Connects to the engine the spec names (`postgres.engine`), or else the
/// one `DOCKER_HOST`, `DOCKER_CONTEXT` or the CLI's current context names
/// (see [`endpoint`]), and agrees on an API version. Errors name the
/// engine and, for TLS, the certificate files.
pub async fn connect_to(spec_engine: Option<&str>) -> Result<Engine, EngineError> {
    let endpoint = endpoint::choose(spec_engine, &endpoint::Environment::current())?;
    let tls = match &endpoint.tls {
        Some(files) => format!(
            " (TLS with CA {}, client certificate {})",
            files.ca.display(),
            files.cert.display()
        ),
        None => String::new(),
    };
    let remote = |source| EngineError::Remote {
        engine: endpoint.to_string(),
        tls: tls.clone(),
        source,
    };
    let docker = endpoint::client(&endpoint).map_err(remote)?;
    let docker = docker.negotiate_version().await.map_err(remote)?;
    Ok(Engine { docker, endpoint })
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

/// An inspect's answer with "does not exist" as `None`.
pub fn found<T>(result: Result<T, DockerError>, what: &str) -> Result<Option<T>, EngineError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(source) => Err(EngineError::Call {
            what: what.to_owned(),
            source,
        }),
    }
}

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
