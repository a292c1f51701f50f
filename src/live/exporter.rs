//! Observing the metrics exporter containers (`monitoring.exporter`): state,
//! image, published port, the `org.pgspec.config-hash` label, and whether
//! the password file still holds the spec's password (only that outcome is
//! kept).
//!
//! Invariant: only reads.

use std::collections::BTreeMap;

use crate::engine::{self, Docker};
use crate::live::ObserveError;
use crate::model::monitoring::exporter::{Exporter, ExporterKind, PASSWORD_FILE};
use crate::model::{ContainerState, Deployment, Image};

/// The exporters the spec declares and those pgspec made that it no longer
/// declares, with the images the spec names as the engine has them.
pub async fn observe(
    docker: &Docker,
    desired: &Deployment,
) -> Result<(BTreeMap<ExporterKind, Exporter>, BTreeMap<String, Image>), ObserveError> {
    let mut exporters = BTreeMap::new();
    let mut images = BTreeMap::new();
    if desired.container.is_none() {
        return Ok((exporters, images));
    }
    for kind in ExporterKind::ALL {
        let want = desired.exporters.get(&kind);
        let name = kind.container(&desired.name);
        let inspect = engine::container::inspect(docker, &name).await?;
        if let Some(want) = want
            && let Some(image) = engine::image::inspect(docker, &want.image).await?
        {
            images.insert(want.image.clone(), image);
        }
        let Some(inspect) = inspect else {
            if let Some(want) = want {
                exporters.insert(
                    kind,
                    Exporter {
                        state: ContainerState::Missing,
                        password: None,
                        ..want.clone()
                    },
                );
            }
            continue;
        };
        let config = inspect.config.clone().unwrap_or_default();
        let container_labels = config.labels.unwrap_or_default();
        let label = |key: &str| container_labels.get(key).cloned().unwrap_or_default();
        if want.is_none() && label(engine::labels::MANAGED) != "true" {
            continue;
        }
        let (bind_address, port) =
            engine::container::configured(&inspect, &format!("{}/tcp", kind.listen_port()));
        let running = inspect
            .state
            .as_ref()
            .and_then(|state| state.running)
            .unwrap_or(false);
        let password_matches = match want.and_then(|want| want.password.as_ref()) {
            Some(secret) => {
                let password = secret.resolve().map_err(|source| ObserveError::Secret {
                    purpose: "monitoring role password",
                    source,
                })?;
                Some(
                    engine::files::read_text(docker, &name, PASSWORD_FILE)
                        .await
                        .is_some_and(|text| text == password.expose()),
                )
            }
            None => None,
        };
        exporters.insert(
            kind,
            Exporter {
                kind,
                image: config.image.unwrap_or_default(),
                port: (port != 0).then_some(port),
                bind_address,
                role: want.map(|want| want.role.clone()).unwrap_or_default(),
                password: None,
                state: if running {
                    ContainerState::Running
                } else {
                    ContainerState::Stopped
                },
                image_id: inspect.image.clone().unwrap_or_default(),
                config_hash: label(engine::labels::CONFIG_HASH),
                password_matches,
            },
        );
    }
    Ok((exporters, images))
}
