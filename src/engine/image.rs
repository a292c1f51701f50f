//! Images: what pgspec needs to know of one, and pulling it when it is not
//! local.

use bollard::models::ImageInspect;
use bollard::query_parameters::CreateImageOptions;

use super::{Docker, EngineError, PULL_STALL, found, next_within};
use crate::model::Image;

/// The facts pgspec needs of an image: its id, major version, `PGDATA` and
/// declared volumes.
pub fn facts(image: ImageInspect) -> Image {
    let config = image.config.unwrap_or_default();
    let env = config.env.unwrap_or_default();
    let mut volumes: Vec<String> = config.volumes.unwrap_or_default().into_iter().collect();
    volumes.sort();
    Image {
        id: image.id.unwrap_or_default(),
        pg_major: env_value(&env, "PG_MAJOR").and_then(|major| major.parse().ok()),
        pgdata: env_value(&env, "PGDATA").map(str::to_owned),
        volumes,
    }
}

/// The value of `name` in a container's or image's `KEY=value` environment.
pub fn env_value<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter()
        .find_map(|entry| entry.strip_prefix(name)?.strip_prefix('='))
}

/// The local image's facts; `None` when it is not local.
pub async fn inspect(docker: &Docker, image: &str) -> Result<Option<Image>, EngineError> {
    Ok(found(
        docker.inspect_image(image).await,
        &format!("inspect image `{image}`"),
    )?
    .map(facts))
}

/// Makes sure the image is local: pulls it when it is not, reporting
/// progress on stderr, and says plainly when it can be neither found nor
/// pulled.
pub async fn ensure(docker: &Docker, image: &str) -> anyhow::Result<()> {
    if inspect(docker, image).await?.is_some() {
        return Ok(());
    }
    crate::output::status(&format!("pulling image `{image}`…"));
    let mut pull = docker.create_image(
        Some(CreateImageOptions {
            from_image: Some(image.to_owned()),
            ..CreateImageOptions::default()
        }),
        None,
        None,
    );
    let mut last_status = String::new();
    while let Some(progress) =
        next_within(&mut pull, PULL_STALL)
            .await
            .map_err(|source| EngineError::Stalled {
                what: format!("pull image `{image}`: it made no progress"),
                source,
            })?
    {
        match progress {
            Ok(info) => {
                if let Some(status) = info.status
                    && status != last_status
                {
                    crate::output::status(&format!("  {image}: {status}"));
                    last_status = status;
                }
            }
            Err(error) => {
                return Err(anyhow::Error::new(error).context(format!(
                    "image `{image}` is neither local nor pullable; build or load it \
                     (scripts/images.sh builds the test images) or fix the name"
                )));
            }
        }
    }
    Ok(())
}
