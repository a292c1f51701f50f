//! Locks that keep two applies from interleaving.
//!
//! A file lock on this host covers the moments when PostgreSQL is not up yet
//! (creating or replacing the container); a session-level advisory lock on a
//! dedicated connection covers every change inside PostgreSQL and is seen by
//! pgspec on any host. `drift` and `plan` take the advisory lock shared, so
//! an apply in progress is never reported as drift.

use std::fs::File;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::live::{ObserveError, Target};
use crate::spec::Spec;

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
    /// The server could not be reached or queried for the advisory lock.
    #[error("cannot take the advisory lock")]
    Server(#[source] ObserveError),
    /// The advisory lock query failed.
    #[error("cannot take the advisory lock")]
    Query(#[source] tokio_postgres::Error),
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
        let path = std::env::temp_dir().join(format!("pgspec-{safe}.lock"));
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

/// Exclusive (apply) or shared (plan, drift).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Exclusive,
    Shared,
}

/// A session-level advisory lock on its own connection; released when the
/// connection closes (dropping this value, or the process dying).
pub struct AdvisoryLock {
    _client: Client,
}

impl AdvisoryLock {
    pub async fn acquire(
        target: &Target,
        deployment: &str,
        mode: Mode,
        wait: Duration,
    ) -> Result<AdvisoryLock, LockError> {
        let client = target.connect().await.map_err(LockError::Server)?;
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
                return Ok(AdvisoryLock { _client: client });
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
    /// A managed container that is not running has no server to lock yet;
    /// `ensure_advisory` takes it once the container phase has started it.
    pub async fn acquire(spec: &Spec, wait: Duration) -> Result<ApplyLock, LockError> {
        let deployment = spec.deployment.name.clone();
        let file = FileLock::acquire(&deployment, wait).await?;
        let target = Target::resolve(spec).map_err(LockError::Server)?;
        let advisory =
            match AdvisoryLock::acquire(&target, &deployment, Mode::Exclusive, wait).await {
                Ok(lock) => Some(lock),
                Err(LockError::Server(ObserveError::PostgresUnreachable { .. }))
                    if spec.deployment.container.is_some() =>
                {
                    None
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

    #[test]
    fn key_is_stable_and_distinct() {
        assert_eq!(key("ledger"), key("ledger"));
        assert_ne!(key("ledger"), key("threadr"));
    }
}
