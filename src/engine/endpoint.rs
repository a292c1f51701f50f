//! Which Docker Engine a command talks to, chosen the way the Docker CLI
//! chooses it: the spec's `postgres.engine` first (a URL or a context
//! name), then `DOCKER_HOST` (with `DOCKER_TLS_VERIFY` and
//! `DOCKER_CERT_PATH` for `tcp://`), then `DOCKER_CONTEXT`, then the
//! `currentContext` of the CLI's `config.json` (`$DOCKER_CONFIG` or
//! `~/.docker`), then the local socket.
//!
//! A context is read as the CLI stores it: its endpoint in
//! `contexts/meta/<sha256 of the name>/meta.json`, its TLS material in
//! `contexts/tls/<sha256 of the name>/docker/`. Every transport is
//! bollard's own: unix sockets, HTTPS with client certificates (`ssl`
//! feature) and SSH running `docker system dial-stdio` on the remote host
//! (`ssh` feature, through the system's `ssh`).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// How long one request to the engine may take, in seconds (bollard's
/// default).
const REQUEST_TIMEOUT: u64 = 120;

/// The engine a command talks to, as chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The engine's address: `unix:///…`, `tcp://host:port` or
    /// `ssh://[user@]host[:port]`.
    pub host: String,
    /// Client certificates for `tcp://` (TLS), when the engine asks for
    /// them.
    pub tls: Option<TlsFiles>,
    /// Where the choice came from, for errors: "DOCKER_HOST", "the spec's
    /// postgres.engine", "docker context `x`".
    pub source: String,
}

/// The three files of a TLS engine connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    fn in_directory(directory: &Path) -> TlsFiles {
        TlsFiles {
            ca: directory.join("ca.pem"),
            cert: directory.join("cert.pem"),
            key: directory.join("key.pem"),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.host)?;
        if self.tls.is_some() {
            write!(f, " (TLS)")?;
        }
        write!(f, ", from {}", self.source)
    }
}

/// What the environment says, read once (tests pass their own).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub docker_host: Option<String>,
    pub tls_verify: bool,
    pub cert_path: Option<PathBuf>,
    pub docker_context: Option<String>,
    /// `$DOCKER_CONFIG`, or `~/.docker`.
    pub config_dir: Option<PathBuf>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

impl Environment {
    /// The process's environment.
    pub fn current() -> Environment {
        let home = env("HOME").map(PathBuf::from);
        Environment {
            docker_host: env("DOCKER_HOST"),
            tls_verify: env("DOCKER_TLS_VERIFY").is_some_and(|value| value != "0"),
            cert_path: env("DOCKER_CERT_PATH").map(PathBuf::from),
            docker_context: env("DOCKER_CONTEXT"),
            config_dir: env("DOCKER_CONFIG")
                .map(PathBuf::from)
                .or_else(|| home.map(|home| home.join(".docker"))),
        }
    }

    fn cert_dir(&self) -> Option<PathBuf> {
        self.cert_path.clone().or_else(|| self.config_dir.clone())
    }
}

/// Why no engine could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    #[error("docker context `{name}` ({from}) does not exist: no {}", .meta.display())]
    NoContext {
        name: String,
        from: String,
        meta: PathBuf,
    },
    #[error("docker context `{name}`: cannot read {}: {message}", .path.display())]
    BadContext {
        name: String,
        path: PathBuf,
        message: String,
    },
    #[error("cannot read the Docker CLI configuration {}: {message}", .path.display())]
    BadConfig { path: PathBuf, message: String },
    #[error("engine `{host}` ({from}): {message}")]
    Unsupported {
        host: String,
        from: String,
        message: String,
    },
}

/// Chooses the engine: the spec's `engine` when it names one, then the
/// environment and the CLI's configuration.
pub fn choose(
    spec_engine: Option<&str>,
    environment: &Environment,
) -> Result<Endpoint, ChoiceError> {
    let endpoint = match spec_engine {
        Some(engine) if engine.contains("://") => Endpoint {
            host: engine.to_owned(),
            tls: tcp_tls(engine, environment),
            source: "the spec's postgres.engine".to_owned(),
        },
        Some(context) => read_context(context, "the spec's postgres.engine", environment)?,
        None => match &environment.docker_host {
            Some(host) => Endpoint {
                host: host.clone(),
                tls: tcp_tls(host, environment),
                source: "DOCKER_HOST".to_owned(),
            },
            None => match &environment.docker_context {
                Some(name) => read_context(name, "DOCKER_CONTEXT", environment)?,
                None => match current_context(environment)? {
                    Some(name) => read_context(&name, "config.json currentContext", environment)?,
                    None => local(),
                },
            },
        },
    };
    check_scheme(&endpoint)?;
    Ok(endpoint)
}

fn local() -> Endpoint {
    Endpoint {
        host: "unix:///var/run/docker.sock".to_owned(),
        tls: None,
        source: "the default".to_owned(),
    }
}

fn check_scheme(endpoint: &Endpoint) -> Result<(), ChoiceError> {
    let scheme = endpoint.host.split_once("://").map(|(scheme, _)| scheme);
    if scheme == Some("ssh")
        && let Route::Ssh(destination) = endpoint.route()
        && destination.port.is_some()
    {
        // bollard's SSH transport hands `user@host:port` to ssh as a host
        // name, so a port would not reach ssh; ssh's own configuration can
        // carry it.
        return Err(ChoiceError::Unsupported {
            host: endpoint.host.clone(),
            from: endpoint.source.clone(),
            message: "an ssh:// engine takes no port here: name a host whose port ssh's \
                      configuration sets (`Host db1` with `Port 2222` in ~/.ssh/config)"
                .to_owned(),
        });
    }
    match scheme {
        Some("unix" | "tcp" | "ssh" | "http" | "https") => Ok(()),
        _ => Err(ChoiceError::Unsupported {
            host: endpoint.host.clone(),
            from: endpoint.source.clone(),
            message: "pgspec reaches engines at unix://, tcp:// (optionally with TLS) and ssh://"
                .to_owned(),
        }),
    }
}

/// TLS for a `tcp://` address, as the CLI does: when `DOCKER_TLS_VERIFY` is
/// set, with the files in `DOCKER_CERT_PATH` (default the configuration
/// directory).
fn tcp_tls(host: &str, environment: &Environment) -> Option<TlsFiles> {
    let tcp = host.starts_with("tcp://") || host.starts_with("https://");
    if !(tcp && environment.tls_verify || host.starts_with("https://")) {
        return None;
    }
    environment
        .cert_dir()
        .map(|directory| TlsFiles::in_directory(&directory))
}

/// The CLI's current context from `config.json`, `None` for the default.
fn current_context(environment: &Environment) -> Result<Option<String>, ChoiceError> {
    let Some(directory) = &environment.config_dir else {
        return Ok(None);
    };
    let path = directory.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(ChoiceError::BadConfig {
                path,
                message: error.to_string(),
            });
        }
    };
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| ChoiceError::BadConfig {
            path: path.clone(),
            message: error.to_string(),
        })?;
    Ok(config
        .get("currentContext")
        .and_then(serde_json::Value::as_str)
        .filter(|name| !name.is_empty() && *name != "default")
        .map(str::to_owned))
}

/// The directory name the CLI stores a context under: the hex SHA-256 of
/// its name.
pub fn context_id(name: &str) -> String {
    hex::encode(Sha256::digest(name.as_bytes()))
}

fn read_context(
    name: &str,
    source: &str,
    environment: &Environment,
) -> Result<Endpoint, ChoiceError> {
    if name == "default" {
        return Ok(match &environment.docker_host {
            Some(host) => Endpoint {
                host: host.clone(),
                tls: tcp_tls(host, environment),
                source: "DOCKER_HOST".to_owned(),
            },
            None => local(),
        });
    }
    let directory = environment.config_dir.clone().unwrap_or_default();
    let id = context_id(name);
    let meta = directory
        .join("contexts")
        .join("meta")
        .join(&id)
        .join("meta.json");
    let text = match std::fs::read_to_string(&meta) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(ChoiceError::NoContext {
                name: name.to_owned(),
                from: source.to_owned(),
                meta,
            });
        }
        Err(error) => {
            return Err(ChoiceError::BadContext {
                name: name.to_owned(),
                path: meta,
                message: error.to_string(),
            });
        }
    };
    let bad = |message: String| ChoiceError::BadContext {
        name: name.to_owned(),
        path: meta.clone(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| bad(error.to_string()))?;
    let docker = value
        .pointer("/Endpoints/docker")
        .ok_or_else(|| bad("it has no docker endpoint".to_owned()))?;
    let host = docker
        .get("Host")
        .and_then(serde_json::Value::as_str)
        .filter(|host| !host.is_empty())
        .ok_or_else(|| bad("its docker endpoint has no Host".to_owned()))?
        .to_owned();
    let source = format!("docker context `{name}`");
    if docker
        .get("SkipTLSVerify")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
    {
        return Err(ChoiceError::Unsupported {
            host,
            from: source,
            message: "the context skips TLS verification, which pgspec does not do".to_owned(),
        });
    }
    let tls_dir = directory
        .join("contexts")
        .join("tls")
        .join(&id)
        .join("docker");
    let tls = tls_dir
        .join("ca.pem")
        .exists()
        .then(|| TlsFiles::in_directory(&tls_dir));
    Ok(Endpoint { host, tls, source })
}

/// A connected client for `endpoint`, not yet talking (bollard connects on
/// the first request).
pub fn client(endpoint: &Endpoint) -> Result<bollard::Docker, bollard::errors::Error> {
    let version = bollard::API_DEFAULT_VERSION;
    let host = endpoint.host.as_str();
    if let Some(tls) = &endpoint.tls {
        return bollard::Docker::connect_with_ssl(
            host,
            &tls.key,
            &tls.cert,
            &tls.ca,
            REQUEST_TIMEOUT,
            version,
        );
    }
    if host.starts_with("unix://") {
        return bollard::Docker::connect_with_unix(host, REQUEST_TIMEOUT, version);
    }
    if host.starts_with("ssh://") {
        return bollard::Docker::connect_with_ssh(host, REQUEST_TIMEOUT, version, None);
    }
    bollard::Docker::connect_with_http(host, REQUEST_TIMEOUT, version)
}

/// How PostgreSQL published on this engine is reached from here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Route {
    /// The engine runs here: the published address as it is.
    #[default]
    Local,
    /// A TCP engine: a port published on the engine's loopback or on all
    /// addresses is reached at the engine's host name.
    Host(String),
    /// An SSH engine: each connection is an `ssh -W` stdio forward to the
    /// published address, on the remote host.
    Ssh(super::remote::SshDestination),
}

impl Endpoint {
    /// How PostgreSQL's published port is reached.
    pub fn route(&self) -> Route {
        let (scheme, rest) = self.host.split_once("://").unwrap_or(("", &self.host));
        match scheme {
            "ssh" => Route::Ssh(super::remote::SshDestination::parse(rest)),
            "tcp" | "http" | "https" => {
                let authority = rest.split('/').next().unwrap_or(rest);
                let host = match authority.strip_prefix('[') {
                    Some(bracketed) => bracketed.split(']').next().unwrap_or(bracketed),
                    None => authority
                        .rsplit_once(':')
                        .map_or(authority, |(host, _)| host),
                };
                if is_loopback(host) {
                    Route::Local
                } else {
                    Route::Host(host.to_owned())
                }
            }
            _ => Route::Local,
        }
    }
}

/// Whether an address names this host.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

impl Route {
    /// What the plan says about how PostgreSQL is reached.
    pub fn describe(&self) -> Option<String> {
        match self {
            Route::Local => None,
            Route::Host(host) => Some(format!("PostgreSQL reached at the engine's host `{host}`")),
            Route::Ssh(destination) => Some(format!(
                "PostgreSQL reached through an SSH tunnel (ssh -W) to `{destination}`"
            )),
        }
    }
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
