//! Observing backups: the backup container (`<deployment>-backup`), the
//! schedules and destination its labels carry, whether its password file
//! still holds the spec's superuser password, and whether the desired
//! destination volume exists.
//!
//! Invariant: only reads. Backups themselves are read by `pgspec backup
//! list` through the agent, not here; the one exception is the outcome of
//! the last scheduled restore test of each schedule that has one (the
//! agent's read-only `restore-tests`), and the WAL archiver's replication
//! slot, read from the server.

use crate::engine::Docker;
use crate::engine::labels as common_labels;
use crate::live::ObserveError;
use crate::model::backup::{self, labels};
use crate::model::{Backup, BackupAgent, BackupDestination, Deployment};

/// Reads the backup side of a deployment. `None` when the spec has no
/// `backup` section and no backup container exists.
pub async fn observe(
    docker: &Docker,
    desired: &Deployment,
) -> Result<Option<Backup>, ObserveError> {
    let name = backup::container_name(&desired.name);
    let destination_exists = match desired.backup.as_ref().map(|backup| &backup.destination) {
        Some(BackupDestination::Volume(volume)) => {
            crate::engine::objects::volume_exists(docker, volume).await?
        }
        _ => true,
    };
    let inspect = crate::engine::container::inspect(docker, &name).await?;
    let Some(inspect) = inspect else {
        return Ok(desired.backup.as_ref().map(|_| Backup {
            destination_exists,
            ..Backup::default()
        }));
    };
    let config = inspect.config.unwrap_or_default();
    let container_labels = config.labels.unwrap_or_default();
    let label = |key: &str| container_labels.get(key).cloned().unwrap_or_default();
    let wanted_network = desired
        .container
        .as_ref()
        .map(|container| container.network.as_str())
        .unwrap_or_default();
    let mut networks: Vec<String> = inspect
        .network_settings
        .and_then(|settings| settings.networks)
        .map(|networks| networks.into_keys().collect())
        .unwrap_or_default();
    networks.sort();
    let network = if networks.iter().any(|network| network == wanted_network) {
        wanted_network.to_owned()
    } else {
        networks.into_iter().next().unwrap_or_default()
    };
    let running = inspect
        .state
        .as_ref()
        .and_then(|state| state.running)
        .unwrap_or(false);
    let restore_tests = if running && tests_restores(desired) {
        read_restore_tests(docker, &name).await
    } else {
        Default::default()
    };
    Ok(Some(Backup {
        restore_tests,
        destination: backup::parse_destination_label(&label(labels::DESTINATION))
            .unwrap_or_default(),
        schedules: backup::schedules_from_labels(&container_labels),
        agent: Some(BackupAgent {
            name,
            image: config.image.unwrap_or_default(),
            network,
            server: label(labels::SERVER),
            superuser: label(labels::SUPERUSER),
            superuser_password: None,
            version: label(common_labels::VERSION),
            running: inspect
                .state
                .and_then(|state| state.running)
                .unwrap_or(false),
            image_id: inspect.image.unwrap_or_default(),
            password_matches: password_matches(docker, desired).await?,
        }),
        destination_exists,
        ..Backup::default()
    }))
}

/// Compares the password file in the backup container with the spec's
/// superuser password, keeping only the outcome. The file is read through
/// the engine's archive endpoint, so a stopped container is read too.
async fn password_matches(
    docker: &Docker,
    desired: &Deployment,
) -> Result<Option<bool>, ObserveError> {
    let Some(secret) = desired
        .container
        .as_ref()
        .and_then(|container| container.superuser_password.as_ref())
    else {
        return Ok(None);
    };
    let password = secret.resolve().map_err(|source| ObserveError::Secret {
        purpose: "superuser password",
        source,
    })?;
    let name = backup::container_name(&desired.name);
    let Some(text) = crate::engine::files::read_text(docker, &name, backup::PGPASS_PATH).await
    else {
        return Ok(None);
    };
    Ok(Some(
        backup::password_from_pgpass(&text).as_deref() == Some(password.expose()),
    ))
}

/// Reads the WAL archiver's replication slot and how far behind the server
/// its archive is: caught up when `pg_receivewal` has flushed everything
/// the server wrote, else the walsender's `flush_lag`.
pub async fn observe_archiver(
    target: &crate::live::Target,
    deployment: &str,
) -> Result<crate::model::Archiver, ObserveError> {
    let client = target.connect_to_read().await?;
    // A backup container just (re)started needs a moment before its
    // `pg_receivewal` streams: an inactive slot is read again for a few
    // seconds before it counts as stopped.
    let mut attempts = 0;
    loop {
        let archiver = read_slot(&client, deployment).await?;
        attempts += 1;
        if archiver.active || attempts >= ARCHIVER_ATTEMPTS {
            return Ok(archiver);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// How often an inactive slot is read, half a second apart.
const ARCHIVER_ATTEMPTS: u32 = 12;

async fn read_slot(
    client: &tokio_postgres::Client,
    deployment: &str,
) -> Result<crate::model::Archiver, ObserveError> {
    let row = client
        .query_opt(
            "SELECT s.active, \
                    (pg_current_wal_lsn() - coalesce(r.flush_lsn, s.restart_lsn))::bigint, \
                    extract(epoch FROM r.flush_lag)::float8 \
             FROM pg_replication_slots s \
             LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid \
             WHERE s.slot_name = $1",
            &[&backup::slot_name(deployment)],
        )
        .await
        .map_err(|source| ObserveError::Query {
            database: "postgres".to_owned(),
            what: "the WAL archiver's replication slot",
            source,
        })?;
    let Some(row) = row else {
        return Ok(crate::model::Archiver::default());
    };
    let active: bool = row.get(0);
    let lag_bytes: Option<i64> = row.get(1);
    let flush_lag: Option<f64> = row.get(2);
    Ok(crate::model::Archiver {
        slot_exists: true,
        active,
        lag_bytes,
        lag_seconds: match (active, lag_bytes) {
            (true, Some(bytes)) if bytes <= 0 => Some(0.0),
            (true, _) => flush_lag,
            (false, _) => None,
        },
    })
}

/// Whether the desired backup streams WAL (has a `physical` schedule).
pub fn streams_wal(desired: &Deployment) -> bool {
    desired.backup.as_ref().is_some_and(|backup| {
        backup
            .schedules
            .values()
            .any(|schedule| schedule.kind == "physical")
    })
}

/// Whether a desired schedule has a scheduled restore test (`verify`).
fn tests_restores(desired: &Deployment) -> bool {
    desired.backup.as_ref().is_some_and(|backup| {
        backup
            .schedules
            .values()
            .any(|schedule| schedule.verify.is_some())
    })
}

/// The last restore test of each schedule, as the running agent reads them
/// from the manifests (`backup agent restore-tests`, which only reads);
/// empty, so no drift, when the agent cannot say.
async fn read_restore_tests(
    docker: &Docker,
    container: &str,
) -> std::collections::BTreeMap<String, crate::model::RestoreTest> {
    let command = [backup::AGENT_PATH, "backup", "agent", "restore-tests"]
        .map(str::to_owned)
        .to_vec();
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        crate::engine::container::exec(docker, container, &command, false),
    )
    .await;
    match answer {
        Ok(Ok(output)) if output.code == 0 => {
            serde_json::from_str(&output.stdout).unwrap_or_default()
        }
        _ => Default::default(),
    }
}
