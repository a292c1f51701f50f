//! Observing backups: the backup container (`<deployment>-backup`), the
//! schedules and destination its labels carry, and whether the desired
//! destination volume exists.
//!
//! Invariant: only reads. Backups themselves are read by `pgspec backup
//! list` through the agent, not here: a plan does not depend on them.

use bollard::Docker;

use crate::backup::{self, labels};
use crate::live::ObserveError;
use crate::live::docker::{is_not_found, labels as common_labels};
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
        }),
        destination_exists,
    }))
}
