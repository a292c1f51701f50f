//! Locks that keep two applies from interleaving.
//!
//! A file lock on this host covers the moments when PostgreSQL is not up yet
//! (creating or replacing the container); a session-level advisory lock on a
//! dedicated connection covers every change inside PostgreSQL and is seen by
//! pgspec on any host. `drift` and `plan` take the advisory lock shared, so
//! an apply in progress is never reported as drift.

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::engine::Docker;
use crate::engine::container::SERVER_PORT;
use crate::live::{Connections, ObserveError, Target};
use crate::model::Desired;

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another apply held the lock for longer than the wait allows.
    #[error(
        "another pgspec apply of `{deployment}` holds the lock ({holder}); gave up after {waited:?}"
    )]
    Busy {
        deployment: String,
        holder: String,
        waited: Duration,
    },
    /// The lock file could not be opened.
    #[error("cannot open lock file `{path}`")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The directory for lock files is not private to this user.
    #[error("refusing the lock file directory `{path}`: {problem}")]
    Directory { path: String, problem: String },
    /// The server could not be reached or queried for the advisory lock.
    #[error("cannot take the advisory lock")]
    Server(#[source] ObserveError),
    /// The advisory lock query failed.
    #[error("cannot take the advisory lock")]
    Query(#[source] tokio_postgres::Error),
    /// The server does not answer while its container runs (or Docker
    /// could not say whether it runs), so there is no lock to take.
    #[error(
        "cannot take the advisory lock: the server does not answer, and its container `{container}` {state}"
    )]
    Unreachable {
        container: String,
        state: String,
        #[source]
        source: Box<ObserveError>,
    },
    /// The session that held the advisory lock ended during the apply.
    #[error(
        "the advisory lock's session to the server ended during the apply; another apply may have started, so this one stopped"
    )]
    Lost(#[source] Option<tokio_postgres::Error>),
}

/// The advisory lock key of a deployment: stable across processes and
/// versions (FNV-1a of the deployment name with a fixed prefix).
pub fn key(deployment: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "pgspec:".bytes().chain(deployment.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// The host-local lock, held until dropped.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    pub async fn acquire(deployment: &str, wait: Duration) -> Result<FileLock, LockError> {
        let safe: String = deployment
            .chars()
            .map(|character| {
                if character.is_ascii_alphanumeric() {
                    character
                } else {
                    '_'
                }
            })
            .collect();
        let directory = private_directory(|name| std::env::var_os(name))?;
        let path = directory.join(format!("{safe}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| LockError::File {
                path: path.display().to_string(),
                source,
            })?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(FileLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(source)) => {
                    return Err(LockError::File {
                        path: path.display().to_string(),
                        source,
                    });
                }
            }
            if started.elapsed() >= wait {
                return Err(LockError::Busy {
                    deployment: deployment.to_owned(),
                    holder: format!("a process on this host holds `{}`", path.display()),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The directory of this user's lock files: `$XDG_RUNTIME_DIR/pgspec`, else
/// `pgspec` in the user's state directory (`$XDG_STATE_HOME`, else
/// `~/.local/state`). It is made only its user can enter or write, and one
/// that someone else owns, that others can write, or that is a symbolic link
/// is refused: a lock file under a predictable name in a directory others
/// can write (as `/tmp` is) could be taken, or swapped, by another user.
pub fn private_directory(
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<PathBuf, LockError> {
    let absolute = |name: &str| {
        env(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    let base = absolute("XDG_RUNTIME_DIR")
        .or_else(|| absolute("XDG_STATE_HOME"))
        .or_else(|| absolute("HOME").map(|home| home.join(".local").join("state")))
        .ok_or_else(|| LockError::Directory {
            path: String::new(),
            problem: "none of XDG_RUNTIME_DIR, XDG_STATE_HOME or HOME is set to an absolute \
                      path"
                .to_owned(),
        })?;
    let directory = base.join("pgspec");
    let failed = |source: std::io::Error| LockError::File {
        path: directory.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&base).map_err(failed)?;
    match std::fs::DirBuilder::new().mode(0o700).create(&directory) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(failed(error)),
    }
    check_private(&directory)?;
    Ok(directory)
}

/// Refuses a lock directory that is not a real directory of this user that
/// only this user can write.
fn check_private(directory: &Path) -> Result<(), LockError> {
    let refuse = |problem: String| LockError::Directory {
        path: directory.display().to_string(),
        problem,
    };
    let metadata = std::fs::symlink_metadata(directory).map_err(|source| LockError::File {
        path: directory.display().to_string(),
        source,
    })?;
    if !metadata.file_type().is_dir() {
        return Err(refuse(
            "it is not a directory (or is a symbolic link)".to_owned(),
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let user = unsafe { libc::geteuid() };
    if metadata.uid() != user {
        return Err(refuse(format!(
            "it is owned by user id {}, not by this user ({user})",
            metadata.uid()
        )));
    }
    if metadata.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "others can write it (mode {:o}); run `chmod 700` on it",
            metadata.mode() & 0o777
        )));
    }
    Ok(())
}

/// Exclusive (apply) or shared (plan, drift).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Exclusive,
    Shared,
}

/// A session-level advisory lock on its own connection; released when the
/// connection closes (dropping this value, or the process dying).
pub struct AdvisoryLock {
    client: Client,
}

impl AdvisoryLock {
    pub async fn acquire(
        target: &Target,
        deployment: &str,
        mode: Mode,
        wait: Duration,
    ) -> Result<AdvisoryLock, LockError> {
        let client = target.connect().await.map_err(LockError::Server)?;
        // The lock lives as long as this session: a server-side idle
        // timeout must not end it while apply works on other connections.
        // `idle_session_timeout` exists from PostgreSQL 14; setting it
        // through pg_settings skips it on older servers.
        client
            .query(
                "SELECT set_config(name, '0', false) FROM pg_settings \
                 WHERE name IN ('idle_session_timeout', 'idle_in_transaction_session_timeout')",
                &[],
            )
            .await
            .map_err(LockError::Query)?;
        let key = key(deployment);
        let query = match mode {
            Mode::Exclusive => "SELECT pg_try_advisory_lock($1)",
            Mode::Shared => "SELECT pg_try_advisory_lock_shared($1)",
        };
        let started = Instant::now();
        let mut announced = false;
        loop {
            let row = client
                .query_one(query, &[&key])
                .await
                .map_err(LockError::Query)?;
            if row.get::<_, bool>(0) {
                return Ok(AdvisoryLock { client });
            }
            let holder = holder(&client, key).await;
            if started.elapsed() >= wait {
                return Err(LockError::Busy {
                    deployment: deployment.to_owned(),
                    holder,
                    waited: started.elapsed(),
                });
            }
            if !announced {
                tracing::warn!(%holder, "waiting for another pgspec apply to finish");
                announced = true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Takes the advisory lock shared, as `plan`, `drift` and `import` do
/// while they read, so they never see an apply half-way. `None` when the
/// spec's own container is not running: there is no server to lock, and
/// the plan says it will be started.
pub async fn shared(
    spec: &Desired,
    connections: &Connections,
    wait: Duration,
) -> Result<Option<AdvisoryLock>, LockError> {
    match AdvisoryLock::acquire(
        &connections.target,
        &spec.deployment.name,
        Mode::Shared,
        wait,
    )
    .await
    {
        Ok(lock) => Ok(Some(lock)),
        Err(LockError::Server(ObserveError::PostgresUnreachable { .. }))
            if spec.deployment.container.is_some() =>
        {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// The locks one apply holds from before it plans until it has verified:
/// the host file lock always, the advisory lock as soon as the server runs.
pub struct ApplyLock {
    _file: FileLock,
    advisory: Option<AdvisoryLock>,
    target: Target,
    deployment: String,
    wait: Duration,
}

impl ApplyLock {
    /// Takes the file lock, and the advisory lock when the server answers.
    /// A managed container that Docker reports as not running (or missing)
    /// has no server to lock yet; `ensure_advisory` takes it once the
    /// container phase has started it. Any other unreachable server is an
    /// error: the lock is never skipped on a guess.
    pub async fn acquire(
        spec: &Desired,
        connections: &Connections,
        wait: Duration,
    ) -> Result<ApplyLock, LockError> {
        let deployment = spec.deployment.name.clone();
        let file = FileLock::acquire(&deployment, wait).await?;
        let target = connections.target.clone();
        let advisory = match AdvisoryLock::acquire(&target, &deployment, Mode::Exclusive, wait)
            .await
        {
            Ok(lock) => Some(lock),
            Err(LockError::Server(source @ ObserveError::PostgresUnreachable { .. })) => {
                let Some(container) = &spec.deployment.container else {
                    return Err(LockError::Server(source));
                };
                let engine = connections.engine().map_err(LockError::Server)?;
                match container_state(engine, &container.name).await {
                    // The spec moves the server to another port; until
                    // the replace it listens where it is published now.
                    ContainerRun::Running(Some((host, port)))
                        if (host.as_str(), port) != (target.host.as_str(), target.port) =>
                    {
                        let published = Target {
                            host,
                            port,
                            ..target.clone()
                        };
                        Some(
                            AdvisoryLock::acquire(&published, &deployment, Mode::Exclusive, wait)
                                .await?,
                        )
                    }
                    ContainerRun::Running(_) => {
                        return Err(LockError::Unreachable {
                            container: container.name.clone(),
                            state: "is running".to_owned(),
                            source: Box::new(source),
                        });
                    }
                    ContainerRun::Unknown(why) => {
                        return Err(LockError::Unreachable {
                            container: container.name.clone(),
                            state: format!("could not be inspected ({why})"),
                            source: Box::new(source),
                        });
                    }
                    ContainerRun::NotRunning(state) => {
                        tracing::info!(
                            container = %container.name,
                            state,
                            "the server's container is not running: the advisory lock is \
                             taken once apply has started it (the host lock file is held)"
                        );
                        None
                    }
                }
            }
            Err(error) => return Err(error),
        };
        Ok(ApplyLock {
            _file: file,
            advisory,
            target,
            deployment,
            wait,
        })
    }

    /// Whether the advisory lock is held now.
    pub fn holds_advisory(&self) -> bool {
        self.advisory.is_some()
    }

    /// Fails when the advisory lock's session has ended since it was taken
    /// (killed by the server, or the connection lost). With `ask_server`,
    /// a round trip proves the session still answers.
    pub async fn check_advisory(&self, ask_server: bool) -> Result<(), LockError> {
        let Some(lock) = &self.advisory else {
            return Ok(());
        };
        if lock.client.is_closed() {
            return Err(LockError::Lost(None));
        }
        if ask_server {
            lock.client
                .simple_query("SELECT 1")
                .await
                .map_err(|error| LockError::Lost(Some(error)))?;
        }
        Ok(())
    }

    /// Takes the advisory lock if it is not held yet.
    pub async fn ensure_advisory(&mut self) -> Result<(), LockError> {
        if self.advisory.is_none() {
            self.advisory = Some(
                AdvisoryLock::acquire(&self.target, &self.deployment, Mode::Exclusive, self.wait)
                    .await?,
            );
        }
        Ok(())
    }

    /// Releases the advisory lock before the server restarts (its
    /// connection dies with the server); the file lock stays.
    pub fn release_advisory(&mut self) {
        self.advisory = None;
    }
}

/// What Docker says about the server's container, for the lock.
enum ContainerRun {
    /// Running, with the address its server port is published on.
    Running(Option<(String, u16)>),
    /// Missing, created, exited, paused…: no server to lock.
    NotRunning(String),
    Unknown(String),
}

/// The container's state; a failed inspection is `Unknown`.
async fn container_state(engine: &Docker, name: &str) -> ContainerRun {
    match crate::engine::container::inspect(engine, name).await {
        Ok(Some(inspect)) => {
            let state = inspect.state.clone().unwrap_or_default();
            if state.running == Some(true) {
                let published = crate::engine::container::published(&inspect, SERVER_PORT)
                    .map(|(host, port)| (crate::live::postgres::published_host(&host), port));
                ContainerRun::Running(published)
            } else {
                ContainerRun::NotRunning(
                    state
                        .status
                        .map_or_else(|| "not running".to_owned(), |status| status.to_string()),
                )
            }
        }
        Ok(None) => ContainerRun::NotRunning("missing".to_owned()),
        Err(error) => ContainerRun::Unknown(error.to_string()),
    }
}

/// Who holds the exclusive lock, for the message.
async fn holder(client: &Client, key: i64) -> String {
    // Advisory lock keys are split into two 32-bit halves in pg_locks.
    let row = client
        .query_opt(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'), \
                    a.backend_start::text \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock' \
               AND l.classid::int8 = (($1::int8 >> 32) & 4294967295) \
               AND l.objid::int8 = ($1::int8 & 4294967295) \
             LIMIT 1",
            &[&key],
        )
        .await;
    match row {
        Ok(Some(row)) => format!(
            "server process {} ({} from {}, connected since {})",
            row.get::<_, i32>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2),
            row.get::<_, String>(3)
        ),
        _ => "holder unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory no other test uses, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(purpose: &str) -> Scratch {
            let path = std::env::temp_dir()
                .join(format!("pgspec-lock-test-{purpose}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir(&path).expect("create scratch directory");
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn env_of(pairs: &[(&str, &Path)]) -> impl Fn(&str) -> Option<std::ffi::OsString> {
        let pairs: Vec<(String, PathBuf)> = pairs
            .iter()
            .map(|(name, path)| ((*name).to_owned(), path.to_path_buf()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, path)| path.clone().into_os_string())
        }
    }

    #[test]
    fn lock_directory_is_private_to_its_user() {
        let scratch = Scratch::new("runtime");
        let runtime = scratch.0.join("run");
        let home = scratch.0.join("home");
        let directory =
            private_directory(env_of(&[("XDG_RUNTIME_DIR", &runtime), ("HOME", &home)]))
                .expect("private directory");
        assert_eq!(directory, runtime.join("pgspec"));
        let metadata = std::fs::metadata(&directory).expect("made");
        assert_eq!(metadata.mode() & 0o777, 0o700);
        // SAFETY: geteuid has no preconditions.
        assert_eq!(metadata.uid(), unsafe { libc::geteuid() });

        // Without a runtime directory: the state directory under HOME.
        let directory = private_directory(env_of(&[("HOME", &home)])).expect("fallback");
        assert_eq!(directory, home.join(".local/state/pgspec"));
        assert_eq!(
            std::fs::metadata(&directory).expect("made").mode() & 0o777,
            0o700
        );
    }

    #[test]
    fn lock_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = Scratch::new("shared");
        let directory = scratch.0.join("pgspec");
        std::fs::create_dir(&directory).expect("create");
        std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let refused = private_directory(env_of(&[("XDG_RUNTIME_DIR", &scratch.0)]));
        assert!(
            matches!(&refused, Err(LockError::Directory { problem, .. }) if problem.contains("others can write")),
            "{:?}",
            refused.err()
        );

        // A symbolic link in its place is refused too, wherever it points.
        std::fs::remove_dir(&directory).expect("remove");
        let elsewhere = scratch.0.join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("create");
        std::os::unix::fs::symlink(&elsewhere, &directory).expect("symlink");
        let refused = private_directory(env_of(&[("XDG_RUNTIME_DIR", &scratch.0)]));
        assert!(
            matches!(&refused, Err(LockError::Directory { problem, .. }) if problem.contains("symbolic link")),
            "{:?}",
            refused.err()
        );
    }

    #[test]
    fn lock_directory_of_another_user_is_refused() {
        let scratch = Scratch::new("owner");
        let directory = scratch.0.join("pgspec");
        std::fs::create_dir(&directory).expect("create");
        // Only root can give a directory away; elsewhere this case cannot be made.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        std::os::unix::fs::chown(&directory, Some(65534), None).expect("chown");
        let refused = private_directory(env_of(&[("XDG_RUNTIME_DIR", &scratch.0)]));
        assert!(
            matches!(&refused, Err(LockError::Directory { problem, .. }) if problem.contains("owned by user id 65534")),
            "{:?}",
            refused.err()
        );
    }

    #[test]
    fn key_is_stable_and_distinct() {
        assert_eq!(key("ledger"), key("ledger"));
        assert_ne!(key("ledger"), key("threadr"));
    }
}
