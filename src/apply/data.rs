//! The data directory across a replace or a recreate: proven before the
//! live container is touched, checked again once the new server runs.
//!
//! `prepare` pulls and inspects the image, reads where it keeps its data
//! directory (`model::data`), proves from the live container (its mounts,
//! its `PGDATA` and, when the server runs, `data_directory`) that the data
//! is on the named volume, and creates — but never starts — a container
//! from the new image on that volume, to read the control file at the new
//! `PGDATA`. The cluster's system identifier (the first eight bytes of
//! `global/pg_control`, written once by initdb) must be the one the live
//! container has; a new image that would find nothing there, or a
//! different cluster, stops the apply while the old server still runs.
//! `verify` reads the identifier again from the server that came up and
//! checks it still has every database it had, so an apply never goes on
//! (or says "complete") on top of a data directory that is not the user's.
//!
//! Invariant: nothing here removes a volume or touches the live container;
//! the only container removed is the never-started check container.

use std::time::Duration;

use anyhow::{Context, bail};
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};

use crate::engine::container::{self as containers, SERVER_PORT};
use crate::engine::files::read_file;
use crate::engine::image::{self, env_value};
use crate::engine::{Docker, objects};
use crate::live::Target;
use crate::live::docker::mounts_of;
use crate::live::postgres::published_host;
use crate::model::Container;
use crate::model::data::{DEFAULT_PGDATA, DataHome};

/// How long the proof waits for a running server to say where its data
/// directory is; a server that does not answer in time is judged by its
/// mounts alone.
const SERVER_ANSWER: Duration = Duration::from_secs(5);

/// What the new server must turn out to be.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// The cluster's system identifier (hex of the control file's first
    /// eight bytes); `None` when the volume holds no data directory yet.
    pub system_identifier: Option<String>,
}

/// The desired container with the data layout its image declares. The
/// image must be local.
pub async fn with_image_layout(docker: &Docker, want: &Container) -> anyhow::Result<Container> {
    Ok(want.with_layout(&local_image(docker, &want.image).await?.data_layout()))
}

/// The facts of an image that must be local.
async fn local_image(docker: &Docker, name: &str) -> anyhow::Result<crate::model::Image> {
    image::inspect(docker, name)
        .await?
        .with_context(|| format!("image `{name}` is not local"))
}

/// Everything that must hold before the live container is stopped; see the
/// module documentation.
pub async fn prepare(
    docker: &Docker,
    deployment: &str,
    want: &Container,
    target: &Target,
) -> anyhow::Result<Expected> {
    image::ensure(docker, &want.image).await?;
    let image = local_image(docker, &want.image).await?;
    let want = want.with_layout(&image.data_layout());

    // The live container, when there is one: its data must be on the
    // volume, and its cluster is the one the new container must find.
    let mut live_identifier = None;
    let mut live_major = None;
    if let Some(inspect) = containers::inspect(docker, &want.name).await? {
        let env = inspect
            .config
            .as_ref()
            .and_then(|config| config.env.clone())
            .unwrap_or_default();
        let pgdata = env_value(&env, "PGDATA")
            .filter(|pgdata| pgdata.starts_with('/'))
            .unwrap_or(DEFAULT_PGDATA)
            .to_owned();
        let home = DataHome::locate(
            &pgdata,
            &mounts_of(inspect.mounts.clone().unwrap_or_default()),
        );
        let running = inspect
            .state
            .as_ref()
            .and_then(|state| state.running)
            .unwrap_or(false);
        let server_directory = if running {
            server_data_directory(&inspect, target).await
        } else {
            None
        };
        let live = Container {
            name: want.name.clone(),
            pgdata: home.pgdata.clone(),
            data_kind: home.kind.clone(),
            volume: home.volume.clone(),
            data_mount: home.mount.clone(),
            ..Container::default()
        };
        if let Some(reason) = home.unproven(&want.volume, server_directory.as_deref()) {
            bail!(crate::plan::diff::unproven_message(&live, &want, &reason));
        }
        live_identifier = system_identifier(docker, &want.name, &pgdata).await?;
        live_major = crate::live::docker::data_directory_major(docker, &want.name, &pgdata).await;
    }

    // A new volume holds nothing to lose; the server initialises it.
    if !objects::volume_exists(docker, &want.volume).await? {
        if live_identifier.is_none() {
            return Ok(Expected::default());
        }
        bail!(
            "volume `{}` does not exist, but the live container's data is on it",
            want.volume
        );
    }

    let found = look_through_new_container(docker, deployment, &want).await?;
    let data_major = found.major.or(live_major);
    if let (Some(data_major), Some(image_major)) = (data_major, image.pg_major)
        && data_major != image_major
    {
        bail!(
            "image `{}` runs PostgreSQL {image_major} but the data directory on volume `{}` was \
             created by PostgreSQL {data_major}; a major version change needs an upgrade, and \
             pgspec will not start a different major version on existing data. Nothing was \
             changed",
            want.image,
            want.volume
        );
    }
    match (&live_identifier, &found.identifier) {
        (Some(live), Some(new)) if live == new => {}
        (Some(live), new) => bail!(
            "a container from `{image}` would not find the data directory of `{name}`: the \
             server's cluster (system identifier {live}) is not at `{pgdata}` on volume \
             `{volume}` mounted at `{mount}`, where the image keeps PGDATA{there}. `{name}` \
             keeps running and nothing was changed; keep the image whose layout matches the \
             data, or move the data directory to `{pgdata}` first",
            image = want.image,
            name = want.name,
            pgdata = want.pgdata,
            volume = want.volume,
            mount = want.data_mount,
            there = match new {
                Some(other) => format!(" (there is another cluster there, {other})"),
                None => " (there is none there)".to_owned(),
            },
        ),
        (None, None) if !found.elsewhere.is_empty() => bail!(
            "volume `{volume}` holds a data directory at {paths}, but a container from \
             `{image}` keeps PGDATA at `{pgdata}` (volume mounted at `{mount}`) and would \
             initialise a new, empty cluster beside it. Nothing was changed; keep an image \
             whose layout matches the volume, or move the data directory to `{pgdata}` first",
            volume = want.volume,
            paths = found
                .elsewhere
                .iter()
                .map(|path| format!("`{path}`"))
                .collect::<Vec<_>>()
                .join(", "),
            image = want.image,
            pgdata = want.pgdata,
            mount = want.data_mount,
        ),
        _ => {}
    }
    Ok(Expected {
        system_identifier: live_identifier.or(found.identifier),
    })
}

/// Checks the server that came up: the same cluster as before, with every
/// database it had.
pub async fn verify(
    docker: &Docker,
    name: &str,
    expected: &Expected,
    databases: &[String],
    target: &Target,
) -> anyhow::Result<()> {
    if let Some(want) = &expected.system_identifier {
        let inspect = docker
            .inspect_container(name, None)
            .await
            .with_context(|| format!("cannot inspect container `{name}`"))?;
        let pgdata = inspect
            .config
            .and_then(|config| config.env)
            .unwrap_or_default()
            .iter()
            .find_map(|entry| entry.strip_prefix("PGDATA=").map(str::to_owned))
            .unwrap_or_else(|| DEFAULT_PGDATA.to_owned());
        let have = system_identifier(docker, name, &pgdata).await?;
        if have.as_ref() != Some(want) {
            bail!(
                "the server in `{name}` runs on a different data directory than before the \
                 replace (system identifier {}, was {want}); apply stopped here and ran \
                 nothing else. The previous data directory is still on its volume: do not \
                 write to this server, and see `docker volume ls` and `docker inspect {name}`",
                have.as_deref().unwrap_or("unknown")
            );
        }
    }
    if databases.is_empty() {
        return Ok(());
    }
    let client = target
        .connect()
        .await
        .with_context(|| format!("cannot connect to the server in `{name}`"))?;
    let rows = client
        .query("SELECT datname::text FROM pg_database", &[])
        .await
        .with_context(|| format!("cannot list the databases of `{name}`"))?;
    let live: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    let missing: Vec<&String> = databases
        .iter()
        .filter(|database| !live.contains(database))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the server in `{name}` came up without database(s) it had before: {}; apply \
             stopped here and ran nothing else. Do not write to this server; its previous data \
             directory may still be on a volume (`docker volume ls`)",
            missing
                .iter()
                .map(|database| format!("`{database}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// The system identifier of the cluster at `pgdata` in a container, as hex
/// of the control file's first eight bytes; `None` when there is none.
async fn system_identifier(
    docker: &Docker,
    container: &str,
    pgdata: &str,
) -> anyhow::Result<Option<String>> {
    let control = read_file(docker, container, &format!("{pgdata}/global/pg_control"))
        .await
        .with_context(|| format!("cannot read the control file in `{container}`"))?;
    Ok(control
        .filter(|bytes| bytes.len() >= 8)
        .map(|bytes| hex::encode(&bytes[..8])))
}

/// `data_directory` as the running server reports it, on the port the live
/// container publishes; `None` when it does not answer in time.
async fn server_data_directory(
    inspect: &bollard::models::ContainerInspectResponse,
    target: &Target,
) -> Option<String> {
    let (host, port) = containers::published(inspect, SERVER_PORT)?;
    let mut published = target.clone();
    published.port = port;
    published.host = published_host(&host);
    let query = async {
        let client = published.connect().await.ok()?;
        let row = client
            .query_one(
                "SELECT CASE WHEN pg_has_role('pg_read_all_settings', 'USAGE') \
                        THEN current_setting('data_directory') END",
                &[],
            )
            .await
            .ok()?;
        row.get::<_, Option<String>>(0)
    };
    tokio::time::timeout(SERVER_ANSWER, query).await.ok()?
}

/// What a container from the new image sees on the volume.
#[derive(Debug, Default)]
struct Found {
    /// The cluster at the new `PGDATA`.
    identifier: Option<String>,
    /// `PG_VERSION` there.
    major: Option<u32>,
    /// Data directories elsewhere on the volume, when there is none at the
    /// new `PGDATA`.
    elsewhere: Vec<String>,
}

/// Creates a container from the new image with the volume mounted where the
/// image wants it, never starts it, reads what is at its `PGDATA`, and
/// removes it again.
async fn look_through_new_container(
    docker: &Docker,
    deployment: &str,
    want: &Container,
) -> anyhow::Result<Found> {
    let name = format!("{}-pgspec-check", want.name);
    containers::create_throwaway(
        docker,
        deployment,
        &name,
        "data-check",
        ContainerCreateBody {
            image: Some(want.image.clone()),
            env: Some(vec![format!("PGDATA={}", want.pgdata)]),
            host_config: Some(HostConfig {
                mounts: Some(vec![Mount {
                    target: Some(want.data_mount.clone()),
                    source: Some(want.volume.clone()),
                    typ: Some(MountType::VOLUME),
                    ..Mount::default()
                }]),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        },
    )
    .await?;
    let found = read_found(docker, &name, want).await;
    containers::remove_throwaway(docker, &name).await?;
    found
}

async fn read_found(docker: &Docker, name: &str, want: &Container) -> anyhow::Result<Found> {
    let identifier = system_identifier(docker, name, &want.pgdata).await?;
    let major = crate::live::docker::data_directory_major(docker, name, &want.pgdata).await;
    let mut elsewhere = Vec::new();
    if identifier.is_none() {
        // Where the official images and Debian's clusters keep PGDATA, below
        // the mount: its root, `data`, `pgdata`, `<major>/docker` and
        // `<major>/main`.
        let mut candidates = vec![
            want.data_mount.clone(),
            format!("{}/data", want.data_mount),
            format!("{}/pgdata", want.data_mount),
        ];
        for major in 9..=30 {
            candidates.push(format!("{}/{major}/docker", want.data_mount));
            candidates.push(format!("{}/{major}/main", want.data_mount));
        }
        for candidate in candidates {
            if candidate != want.pgdata
                && read_file(docker, name, &format!("{candidate}/PG_VERSION"))
                    .await
                    .with_context(|| format!("cannot read volume `{}`", want.volume))?
                    .is_some()
            {
                elsewhere.push(candidate);
            }
        }
    }
    Ok(Found {
        identifier,
        major,
        elsewhere,
    })
}

/// Writes the adoption mark of `deployment` into the data directory of a
/// running server container pgspec did not create, owned like the
/// directory and readable by its owner only. The server ignores the file;
/// observing reads it back (`live::docker`).
pub async fn mark_adopted(
    docker: &Docker,
    container: &str,
    deployment: &str,
) -> anyhow::Result<()> {
    let inspect = containers::inspect(docker, container)
        .await?
        .with_context(|| format!("container `{container}` disappeared before its adoption"))?;
    let env = inspect
        .config
        .and_then(|config| config.env)
        .unwrap_or_default();
    let pgdata = env_value(&env, "PGDATA")
        .filter(|pgdata| pgdata.starts_with('/'))
        .unwrap_or(DEFAULT_PGDATA)
        .to_owned();
    let listing = crate::engine::files::list(docker, container, &pgdata).await;
    let Some(directory) = listing.first() else {
        bail!(
            "cannot read the data directory `{pgdata}` of `{container}` to record its adoption; \
             nothing was changed"
        );
    };
    let path = format!("{pgdata}/{}", crate::model::ADOPTED_MARK);
    let text = crate::model::adopted_mark(deployment);
    let entry = crate::engine::archive::Entry::file(&path, 0o600, text.as_bytes())
        .owned_by(directory.uid, directory.gid)
        .modified_at(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_secs())
                .unwrap_or_default(),
        );
    crate::engine::files::upload_entries(docker, container, &[entry], "the adoption mark").await
}
