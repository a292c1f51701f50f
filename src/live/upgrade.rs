//! What a pending major version upgrade reads besides every plan: the
//! databases' sizes (one query), the extensions of every database (one
//! query each), and the extensions the new image ships.
//!
//! The image's are read from a container created from it and never started,
//! labelled `org.pgspec.role=extension-check` and removed at once: the
//! engine's archive endpoint reads the files of a created container, so
//! nothing of the image runs. Invariant: nothing here changes the
//! deployment.

use std::collections::BTreeMap;

use bollard::models::ContainerCreateBody;
use futures_util::{StreamExt, stream};

use crate::engine::Docker;
use crate::engine::container as containers;
use crate::live::{ObserveError, Target};
use crate::model::upgrade::{ImageExtension, UpgradeFacts, image_extensions};

use super::postgres::query_error;

/// `org.pgspec.role` of the never-started container the image's
/// extensions are read from.
pub const EXTENSION_CHECK_ROLE: &str = "extension-check";

/// The most of one control file read.
const CONTROL_LIMIT: usize = 64 * 1024;

/// Reads the facts of an upgrade of the server at `target` to `image`,
/// which runs PostgreSQL `major`.
pub async fn observe(
    docker: &Docker,
    target: &Target,
    deployment: &str,
    image: &str,
    major: u32,
) -> Result<UpgradeFacts, ObserveError> {
    let (server, extensions) = tokio::join!(
        server_facts(target),
        read_image_extensions(docker, deployment, image, major)
    );
    let (database_sizes, installed) = server?;
    let (image_extensions, unread) = match extensions {
        Ok(catalog) => (Some(catalog), None),
        Err(why) => (None, Some(why)),
    };
    Ok(UpgradeFacts {
        database_sizes,
        installed,
        image_extensions,
        unread,
    })
}

type Sizes = BTreeMap<String, u64>;
type Extensions = BTreeMap<String, String>;
type Installed = BTreeMap<String, Extensions>;

/// The size of every database pgspec's role may measure, and the
/// extensions of every database it may connect to.
async fn server_facts(target: &Target) -> Result<(Sizes, Installed), ObserveError> {
    let maintenance = target.database.clone();
    let client = target.connect_to_read().await?;
    let rows = client
        .query(
            "SELECT d.datname::text, \
                    CASE WHEN has_database_privilege(d.oid, 'CONNECT') \
                           OR pg_has_role('pg_read_all_stats', 'USAGE') \
                         THEN pg_database_size(d.oid) END, \
                    d.datallowconn AND has_database_privilege(d.oid, 'CONNECT') \
             FROM pg_database d WHERE NOT d.datistemplate ORDER BY 1",
            &[],
        )
        .await
        .map_err(query_error("the databases' sizes", &maintenance))?;
    drop(client);
    let mut sizes = BTreeMap::new();
    let mut reachable = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        if let Some(size) = row.get::<_, Option<i64>>(1) {
            sizes.insert(name.clone(), u64::try_from(size).unwrap_or_default());
        }
        if row.get::<_, bool>(2) {
            reachable.push(name);
        }
    }
    let read: Vec<Result<(String, Extensions), ObserveError>> = stream::iter(reachable)
        .map(|database| async move {
            let client = target.with_database(&database).connect_to_read().await?;
            let extensions = client
                .query(
                    "SELECT extname::text, extversion FROM pg_extension ORDER BY 1",
                    &[],
                )
                .await
                .map_err(query_error("extensions", &database))?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect();
            Ok((database, extensions))
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let installed = read.into_iter().collect::<Result<_, _>>()?;
    Ok((sizes, installed))
}

/// The extension directories of the official images: Debian's by major
/// version, Alpine's under /usr/local.
fn extension_directories(major: u32) -> [String; 3] {
    [
        format!("/usr/share/postgresql/{major}/extension"),
        "/usr/local/share/postgresql/extension".to_owned(),
        "/usr/share/postgresql/extension".to_owned(),
    ]
}

/// The new image's extensions; an error says why they could not be read.
async fn read_image_extensions(
    docker: &Docker,
    deployment: &str,
    image: &str,
    major: u32,
) -> Result<BTreeMap<String, ImageExtension>, String> {
    // Named by process, so that two plans at once do not share it.
    let name = format!("{deployment}-pgspec-extension-check-{}", std::process::id());
    containers::create_throwaway(
        docker,
        deployment,
        &name,
        EXTENSION_CHECK_ROLE,
        ContainerCreateBody {
            image: Some(image.to_owned()),
            ..ContainerCreateBody::default()
        },
    )
    .await
    .map_err(|error| format!("{error:#}"))?;
    let read = read_directories(docker, &name, major).await;
    let removed = containers::remove_throwaway(docker, &name).await;
    if let Err(error) = removed {
        tracing::warn!(container = %name, %error, "cannot remove the extension check container");
    }
    read
}

async fn read_directories(
    docker: &Docker,
    container: &str,
    major: u32,
) -> Result<BTreeMap<String, ImageExtension>, String> {
    let keep: fn(&str) -> bool = |name| name.ends_with(".control");
    for directory in extension_directories(major) {
        let scanned = crate::engine::files::scan_directory(
            docker,
            container,
            &directory,
            keep,
            CONTROL_LIMIT,
        )
        .await
        .map_err(|error| format!("{error:#}"))?;
        let Some((files, whole)) = scanned else {
            continue;
        };
        if !whole {
            return Err(format!("the archive of `{directory}` broke off"));
        }
        let files: Vec<(String, Option<String>)> = files
            .into_iter()
            .map(|(name, content)| {
                let text = content.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
                (name, text)
            })
            .collect();
        return Ok(image_extensions(&files));
    }
    Err(format!(
        "the image has none of the extension directories pgspec knows ({})",
        extension_directories(major).join(", ")
    ))
}
