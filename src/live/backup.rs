//! Observing backups: the backup container (`<deployment>-backup`), the
//! schedules and destination its labels carry, whether its password file
//! still holds the spec's superuser password, and whether the desired
//! destination volume exists.
//!
//! Invariant: only reads. Backups themselves are read by `pgspec backup
//! list` through the agent, not here: a plan does not depend on them.

use bollard::Docker;
use bollard::query_parameters::DownloadFromContainerOptions;

use crate::backup::{self, labels};
use crate::live::ObserveError;
use crate::live::docker::{STREAM_STALL, is_not_found, labels as common_labels, next_within};
use crate::model::{Backup, BackupAgent, BackupDestination, Deployment};

/// Reads the backup side of a deployment whose server container pgspec
/// manages; without one there is no backup container either.
pub async fn observe_deployment(desired: &Deployment) -> Result<Option<Backup>, ObserveError> {
    if desired.container.is_none() {
        return Ok(None);
    }
    let docker = crate::live::docker::connect().await?;
    observe(&docker, desired).await
}

/// Reads the backup side of a deployment. `None` when the spec has no
/// `backup` section and no backup container exists.
pub async fn observe(
    docker: &Docker,
    desired: &Deployment,
) -> Result<Option<Backup>, ObserveError> {
    let name = backup::container_name(&desired.name);
    let destination_exists = match desired.backup.as_ref().map(|backup| &backup.destination) {
        Some(BackupDestination::Volume(volume)) => match docker.inspect_volume(volume).await {
            Ok(_) => true,
            Err(error) if is_not_found(&error) => false,
            Err(source) => {
                return Err(ObserveError::Docker {
                    what: format!("inspect volume `{volume}`"),
                    source,
                });
            }
        },
        _ => true,
    };
    let inspect = match docker.inspect_container(&name, None).await {
        Ok(inspect) => Some(inspect),
        Err(error) if is_not_found(&error) => None,
        Err(source) => {
            return Err(ObserveError::Docker {
                what: format!("inspect container `{name}`"),
                source,
            });
        }
    };
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
    Ok(Some(Backup {
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
    let mut archive = Vec::new();
    let mut stream = docker.download_from_container(
        &name,
        Some(DownloadFromContainerOptions {
            path: backup::PGPASS_PATH.to_owned(),
        }),
    );
    loop {
        match next_within(&mut stream, STREAM_STALL).await {
            Ok(Some(Ok(bytes))) => archive.extend_from_slice(&bytes),
            Ok(None) => break,
            Ok(Some(Err(_))) | Err(_) => return Ok(None),
        }
    }
    let mut reader = tar::Archive::new(archive.as_slice());
    let Ok(mut entries) = reader.entries() else {
        return Ok(None);
    };
    let Some(Ok(mut entry)) = entries.next() else {
        return Ok(None);
    };
    let mut text = String::new();
    if std::io::Read::read_to_string(&mut entry, &mut text).is_err() {
        return Ok(None);
    }
    Ok(Some(
        backup::password_from_pgpass(&text).as_deref() == Some(password.expose()),
    ))
}
