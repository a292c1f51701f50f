//! Host side of `pgspec backup restore`: a whole backup restored beside
//! the live server, then swapped in for its data.
//!
//! The backup is restored into a scratch server on a new volume with the
//! same restore check `backup verify` runs (files against the manifest,
//! the image's own tools, row counts against those taken with the dump),
//! and the scratch server is shut down cleanly. Only a backup that passed
//! is swapped in: with the server stopped, a throwaway container copies
//! the live volume whole into a new volume that keeps it
//! (`<volume>-before-restore-<time>`), then replaces the live volume's
//! contents with the restored data directory and carries over the
//! server's own configuration files (settings, client authentication,
//! certificates), so the server comes back configured as it was. The spec's
//! volume keeps its name, so nothing in the spec changes.
//!
//! Invariant: nothing here removes a volume but the scratch volume this
//! restore made, and only once its data is in the live volume.

use std::time::Duration;

use anyhow::{Context, bail};
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};

use super::agent::Report;
use super::docker::{VerifyTarget, remove_scratch, verify_in};
use crate::engine::container as containers;
use crate::engine::{Docker, labels, objects};

/// How long the copies of a swap may take: a bound, not an estimate.
const SWAP_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);

/// `org.pgspec.role` of the scratch server and volume of a restore.
pub const RESTORE_ROLE: &str = "restore";
/// `org.pgspec.role` of the volume that keeps the data a restore replaced.
pub const KEPT_ROLE: &str = "restore-previous";

/// The names one restore uses, from the time it started (`20261130T061500Z`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreNames {
    /// The scratch server and the volume the backup is restored into.
    pub scratch: String,
    /// The new volume that keeps the data the live volume held.
    pub kept: String,
}

impl RestoreNames {
    pub fn new(deployment: &str, volume: &str, stamp: &str) -> RestoreNames {
        RestoreNames {
            scratch: format!("{deployment}-restore-{}", stamp.to_ascii_lowercase()),
            kept: format!("{volume}-before-restore-{}", stamp.to_ascii_lowercase()),
        }
    }
}

/// Restores backup `id` (default: the newest good one) into a scratch
/// server on the new volume `names.scratch` and checks it. The scratch
/// server is stopped cleanly and removed; the volume stays only when every
/// check passed, for [`swap`].
pub async fn restore_beside(
    docker: &Docker,
    target: &VerifyTarget<'_>,
    names: &RestoreNames,
    id: Option<&str>,
) -> anyhow::Result<Report> {
    // The engine hands back an existing volume of the name instead of
    // failing: one that exists is not this restore's to fill or remove.
    if objects::volume_exists(docker, &names.scratch).await? {
        bail!(
            "volume `{}` exists; a restore uses only volumes it creates. Nothing was changed",
            names.scratch
        );
    }
    let restored = tokio::select! {
        result = verify_in(docker, target, &names.scratch, RESTORE_ROLE, id) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let report = match restored {
        Ok(report) if report.ok() => report,
        other => {
            remove_scratch(docker, &names.scratch).await?;
            return other;
        }
    };
    // A clean shutdown, so the data directory needs no recovery where it
    // goes next.
    if let Err(error) = containers::stop_and_remove(docker, &names.scratch).await {
        remove_scratch(docker, &names.scratch).await?;
        return Err(error).context("cannot stop the scratch server the backup was restored into");
    }
    Ok(report)
}

/// Where a swap copies from and to.
#[derive(Debug, Clone)]
pub struct Swap<'a> {
    pub deployment: &'a str,
    /// The server's image: it has the shell and tools the copies use.
    pub image: &'a str,
    /// The live data volume, as the spec names it.
    pub volume: &'a str,
    /// Where the data directory is inside the volume after the swap,
    /// relative to the volume's root (`` for PGDATA at the mount,
    /// `18/docker` for the layout of PostgreSQL 18).
    pub pgdata_in_volume: &'a str,
    /// Where it is in the data the volume held before (another layout
    /// after a major upgrade).
    pub kept_pgdata_in_volume: &'a str,
    /// Carry `postgresql.conf` over too: only between servers of one major
    /// version, whose configuration files have the same settings.
    pub carry_settings: bool,
    pub names: &'a RestoreNames,
}

/// How a swap ended when it did not finish.
#[derive(Debug)]
pub enum SwapError {
    /// Nothing of the live volume was touched: the server can start again
    /// on it as it was.
    Untouched(anyhow::Error),
    /// The live volume was being replaced: its former data is whole in the
    /// kept volume, the restored data in the scratch volume.
    Midway(anyhow::Error),
}

/// The script of the swap container. `$1` is the data directory's path
/// inside the volume after the swap, `$2` inside the data kept, `$3` the
/// configuration files carried over. Exit 10: the copy that keeps the live
/// data failed (the live volume is untouched); any other failure came
/// after.
const SWAP_SCRIPT: &str = r#"set -u
rel="$1"
kept="$2"
cp -a /live/. /kept/ || exit 10
sync || exit 10
set -e
find /live -mindepth 1 -delete
cp -a /restored/. /live/
for file in $3; do
  if [ -f "/kept/$kept/$file" ]; then cp -a "/kept/$kept/$file" "/live/$rel/$file"; fi
done
for file in /kept/"$kept"/*.crt /kept/"$kept"/*.key /kept/"$kept"/*.pem /kept/"$kept"/pgspec.*; do
  if [ -f "$file" ]; then cp -a "$file" "/live/$rel/"; fi
done
sync
"#;

/// With the server's container stopped: keeps the live volume's data in
/// the new volume `names.kept`, then replaces it with the restored data in
/// `names.scratch`, carrying over the server's configuration files. The
/// scratch volume is removed once its data is in place.
pub async fn swap(docker: &Docker, swap: &Swap<'_>) -> Result<(), SwapError> {
    let names = swap.names;
    // An existing volume would be handed back and mixed with the copy.
    match objects::volume_exists(docker, &names.kept).await {
        Ok(false) => {}
        Ok(true) => {
            return Err(SwapError::Untouched(anyhow::anyhow!(
                "volume `{}` exists; the data is kept only in a volume the swap creates",
                names.kept
            )));
        }
        Err(error) => return Err(SwapError::Untouched(error.into())),
    }
    objects::create_volume(
        docker,
        swap.deployment,
        &names.kept,
        &[(labels::ROLE, KEPT_ROLE)],
    )
    .await
    .map_err(|error| SwapError::Untouched(error.into()))?;
    let name = format!("{}-swap", names.scratch);
    let mount = |source: &str, target: &str| Mount {
        source: Some(source.to_owned()),
        target: Some(target.to_owned()),
        typ: Some(MountType::VOLUME),
        ..Mount::default()
    };
    let body = ContainerCreateBody {
        image: Some(swap.image.to_owned()),
        user: Some("0:0".to_owned()),
        entrypoint: Some(vec!["/bin/sh".to_owned()]),
        cmd: Some(vec![
            "-c".to_owned(),
            SWAP_SCRIPT.to_owned(),
            "swap".to_owned(),
            swap.pgdata_in_volume.to_owned(),
            swap.kept_pgdata_in_volume.to_owned(),
            if swap.carry_settings {
                "postgresql.conf postgresql.auto.conf pg_hba.conf pg_ident.conf"
            } else {
                "postgresql.auto.conf pg_hba.conf pg_ident.conf"
            }
            .to_owned(),
        ]),
        host_config: Some(HostConfig {
            mounts: Some(vec![
                mount(swap.volume, "/live"),
                mount(&names.kept, "/kept"),
                mount(&names.scratch, "/restored"),
            ]),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    let untouched = |error: anyhow::Error| SwapError::Untouched(error);
    containers::create_throwaway(docker, swap.deployment, &name, RESTORE_ROLE, body)
        .await
        .map_err(|error| untouched(error.into()))?;
    let ran = async {
        containers::start(docker, &name).await?;
        containers::wait_exit(docker, &name, SWAP_LIMIT).await
    }
    .await;
    let logs = containers::last_logs(docker, &name).await;
    let _ = containers::remove_throwaway(docker, &name).await;
    match ran {
        Ok(0) => {}
        Ok(10) => {
            return Err(untouched(anyhow::anyhow!(
                "copying the live data into volume `{}` failed:\n{logs}",
                names.kept
            )));
        }
        Ok(code) => {
            return Err(SwapError::Midway(anyhow::anyhow!(
                "replacing the data of volume `{}` failed (exit code {code}):\n{logs}",
                swap.volume
            )));
        }
        Err(error) => return Err(untouched(error)),
    }
    objects::remove_volume(docker, &names.scratch)
        .await
        .map_err(|error| SwapError::Midway(error.into()))?;
    Ok(())
}

/// The data directory's path inside its volume: `pgdata` below `mount`.
pub fn pgdata_in_volume(mount: &str, pgdata: &str) -> anyhow::Result<String> {
    let mount = mount.trim_end_matches('/');
    let relative = pgdata
        .strip_prefix(mount)
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        .with_context(|| {
            format!("the data directory `{pgdata}` is not inside the volume's mount `{mount}`")
        })?;
    let relative = relative.trim_start_matches('/');
    if relative.split('/').any(|part| part == "..") {
        bail!("the data directory `{pgdata}` leaves the volume's mount `{mount}`");
    }
    Ok(relative.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_directory_is_found_inside_its_volume() {
        let inside = |mount: &str, pgdata: &str| {
            pgdata_in_volume(mount, pgdata).map_err(|error| error.to_string())
        };
        assert_eq!(
            inside("/var/lib/postgresql/data", "/var/lib/postgresql/data").as_deref(),
            Ok("")
        );
        assert_eq!(
            inside("/var/lib/postgresql", "/var/lib/postgresql/18/docker").as_deref(),
            Ok("18/docker")
        );
        assert!(inside("/var/lib/postgresql/data", "/var/lib/postgresql/database").is_err());
        assert!(inside("/var/lib/postgresql", "/var/lib/postgresql/../etc").is_err());
    }

    #[test]
    fn names_say_what_they_hold_and_when() {
        let names = RestoreNames::new("ledger", "ledger-data", "20261130T061500Z");
        assert_eq!(names.scratch, "ledger-restore-20261130t061500z");
        assert_eq!(names.kept, "ledger-data-before-restore-20261130t061500z");
    }
}
