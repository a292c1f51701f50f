//! Volumes and networks.

use bollard::models::{
    EndpointSettings, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
    VolumeCreateRequest,
};
use bollard::query_parameters::RemoveVolumeOptions;

use super::{Docker, EngineError, found, is_not_found, labels, object_labels};

/// Whether a volume exists.
pub async fn volume_exists(docker: &Docker, name: &str) -> Result<bool, EngineError> {
    Ok(found(
        docker.inspect_volume(name).await,
        &format!("inspect volume `{name}`"),
    )?
    .is_some())
}

/// The `org.pgspec.role` label of a volume; `None` when the volume does
/// not exist, empty when it has no role.
pub async fn volume_role(docker: &Docker, name: &str) -> Result<Option<String>, EngineError> {
    Ok(found(
        docker.inspect_volume(name).await,
        &format!("inspect volume `{name}`"),
    )?
    .map(|volume| volume.labels.get(labels::ROLE).cloned().unwrap_or_default()))
}

/// Whether a network exists.
pub async fn network_exists(docker: &Docker, name: &str) -> Result<bool, EngineError> {
    Ok(found(
        docker.inspect_network(name, None).await,
        &format!("inspect network `{name}`"),
    )?
    .is_some())
}

/// Creates a named volume with the deployment's labels and `extra` ones.
pub async fn create_volume(
    docker: &Docker,
    deployment: &str,
    name: &str,
    extra: &[(&str, &str)],
) -> Result<(), EngineError> {
    let mut labels = object_labels(deployment);
    labels.extend(
        extra
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
    );
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(name.to_owned()),
            labels: Some(labels),
            ..VolumeCreateRequest::default()
        })
        .await
        .map(|_| ())
        .map_err(EngineError::call(format!("create volume `{name}`")))
}

/// Removes a volume pgspec made to throw away (a restore check's scratch
/// volume) or a replica's volume, which holds nothing the server lacks and
/// is checked by its label first; a missing one is already gone. Never
/// called on the server's data or on backups.
pub async fn remove_volume(docker: &Docker, name: &str) -> Result<(), EngineError> {
    match docker
        .remove_volume(name, None::<RemoveVolumeOptions>)
        .await
    {
        Ok(()) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(source) => Err(EngineError::Call {
            what: format!("remove volume `{name}`"),
            source,
        }),
    }
}

/// Creates a bridge network with the deployment's labels.
pub async fn create_network(
    docker: &Docker,
    deployment: &str,
    name: &str,
) -> Result<(), EngineError> {
    docker
        .create_network(NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".to_owned()),
            labels: Some(object_labels(deployment)),
            ..NetworkCreateRequest::default()
        })
        .await
        .map(|_| ())
        .map_err(EngineError::call(format!("create network `{name}`")))
}

/// Attaches a container, running or not, to a network, where it also
/// answers to `aliases`.
pub async fn connect_network(
    docker: &Docker,
    network: &str,
    container: &str,
    aliases: &[String],
) -> Result<(), EngineError> {
    let endpoint_config = (!aliases.is_empty()).then(|| EndpointSettings {
        aliases: Some(aliases.to_vec()),
        ..EndpointSettings::default()
    });
    docker
        .connect_network(
            network,
            NetworkConnectRequest {
                container: container.to_owned(),
                endpoint_config,
            },
        )
        .await
        .map_err(EngineError::call(format!(
            "connect container `{container}` to network `{network}`"
        )))
}

/// Detaches a container from a network; the container keeps running.
pub async fn disconnect_network(
    docker: &Docker,
    network: &str,
    container: &str,
) -> Result<(), EngineError> {
    docker
        .disconnect_network(
            network,
            NetworkDisconnectRequest {
                container: container.to_owned(),
                force: None,
            },
        )
        .await
        .map_err(EngineError::call(format!(
            "disconnect container `{container}` from network `{network}`"
        )))
}
