//! Host side of `pgspec backup restore --to-time|--to-lsn`: point-in-time
//! recovery beside the live server, before `backup::restore::swap` puts
//! it in place.
//!
//! The base backup is unpacked with the WAL it needs into a new volume
//! (`backup::docker::prepare_recovery`), and a scratch server of the
//! server's image, on no network, replays it to the target and promotes.
//! It runs with a client authentication file of its own (the Unix socket
//! only, trusted), so pgspec can ask it how far it got whatever rules the
//! restored data carries. A server that refuses to start (the target lies
//! beyond the archived WAL) is reported with its log, and its volume is
//! removed: nothing live was touched. Once promoted, the recovery settings
//! are reset (`ALTER SYSTEM RESET`), a checkpoint is taken and the server
//! is shut down cleanly, so the data directory starts as an ordinary
//! server wherever it goes next.
//!
//! The promoted server is on a new timeline, and the archive of the old
//! one cannot be continued: `set_archive_aside` moves it aside in the
//! destination (kept, never removed), so the archiver starts a new one.
//!
//! Invariant: nothing here removes a volume but the scratch volume this
//! recovery made, and only when the recovery failed.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};

use super::agent::{Prepared, RecoveryTarget};
use super::docker::{VerifyTarget, prepare_recovery, remove_scratch};
use super::restore::{RESTORE_ROLE, RestoreNames};
use crate::engine::archive::Entry;
use crate::engine::container as containers;
use crate::engine::{Docker, files, image, labels, object_labels, objects};
use crate::model::BackupDestination;

/// How long replaying WAL may take: a bound, not an estimate.
const RECOVERY_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);

/// The scratch server's client authentication: its Unix socket only.
const RECOVERY_HBA: &str = "/etc/pgspec-recovery/pg_hba.conf";

/// What a recovery reached.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub prepared: Prepared,
    /// The timeline the promoted server opened.
    pub timeline: String,
    /// When the last transaction replayed committed, as the server says.
    pub last_commit: Option<String>,
}

/// Prepares the new volume `names.scratch` for recovery to `recovery`,
/// replays it in a scratch server until it promotes, resets the recovery
/// settings and shuts the server down cleanly. The volume stays for the
/// swap; on failure it is removed with the scratch server.
pub async fn recover_beside(
    docker: &Docker,
    target: &VerifyTarget<'_>,
    names: &RestoreNames,
    recovery: &RecoveryTarget,
) -> anyhow::Result<Recovered> {
    // The engine hands back an existing volume of the name instead of
    // failing: one that exists is not this restore's to fill or remove.
    if objects::volume_exists(docker, &names.scratch).await? {
        bail!(
            "volume `{}` exists; a restore uses only volumes it creates. Nothing was changed",
            names.scratch
        );
    }
    objects::create_volume(
        docker,
        target.deployment,
        &names.scratch,
        &[(labels::ROLE, RESTORE_ROLE)],
    )
    .await
    .context("cannot create the volume to recover into")?;
    let recovered = tokio::select! {
        result = recover_in(docker, target, &names.scratch, recovery) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    match recovered {
        Ok(recovered) => Ok(recovered),
        Err(error) => {
            remove_scratch(docker, &names.scratch).await?;
            Err(error)
        }
    }
}

async fn recover_in(
    docker: &Docker,
    target: &VerifyTarget<'_>,
    name: &str,
    recovery: &RecoveryTarget,
) -> anyhow::Result<Recovered> {
    let prepared = prepare_recovery(docker, target, recovery, name).await?;
    crate::output::status(&format!(
        "replaying WAL from base backup `{}` ({} archived file(s)) in a scratch server…",
        prepared.backup, prepared.wal_files
    ));
    start_scratch(docker, target, name).await?;
    let psql = |statements: &[&str]| {
        let mut command = vec![
            "psql".to_owned(),
            "-X".to_owned(),
            "-At".to_owned(),
            "-v".to_owned(),
            "ON_ERROR_STOP=1".to_owned(),
            "-h".to_owned(),
            "/var/run/postgresql".to_owned(),
            "-U".to_owned(),
            target.superuser.to_owned(),
            "-d".to_owned(),
            "postgres".to_owned(),
        ];
        for statement in statements {
            command.extend(["-c".to_owned(), (*statement).to_owned()]);
        }
        command
    };
    wait_promoted(docker, name, &psql(&["SELECT pg_is_in_recovery()"])).await?;
    let reset = [
        "ALTER SYSTEM RESET restore_command",
        "ALTER SYSTEM RESET recovery_end_command",
        "ALTER SYSTEM RESET recovery_target_time",
        "ALTER SYSTEM RESET recovery_target_lsn",
        "ALTER SYSTEM RESET recovery_target_action",
        "CHECKPOINT",
        "SELECT timeline_id FROM pg_control_checkpoint()",
        "SELECT coalesce(pg_last_xact_replay_timestamp()::text, '')",
    ];
    let output = containers::exec(docker, name, &psql(&reset), false).await?;
    if output.code != 0 {
        bail!(
            "the recovered server did not take back its recovery settings: {}",
            output.stderr.trim()
        );
    }
    let lines: Vec<&str> = output.stdout.lines().map(str::trim).collect();
    let (timeline, last_commit) = match lines.as_slice() {
        [.., timeline, last] => ((*timeline).to_owned(), Some(last.to_string())),
        _ => (String::new(), None),
    };
    // A clean shutdown: the data directory needs no recovery where it goes.
    containers::stop_and_remove(docker, name)
        .await
        .context("cannot stop the recovered scratch server")?;
    Ok(Recovered {
        prepared,
        timeline,
        last_commit: last_commit.filter(|text| !text.is_empty()),
    })
}

/// A server of the image on the prepared volume, on no network, with the
/// client authentication file of its own.
async fn start_scratch(
    docker: &Docker,
    target: &VerifyTarget<'_>,
    name: &str,
) -> anyhow::Result<()> {
    let layout = image::inspect(docker, target.image)
        .await?
        .with_context(|| format!("image `{}` is not local", target.image))?
        .data_layout();
    let mut scratch_labels = object_labels(target.deployment);
    scratch_labels.insert(labels::ROLE.to_owned(), RESTORE_ROLE.to_owned());
    let body = ContainerCreateBody {
        image: Some(target.image.to_owned()),
        env: Some(vec![format!("PGDATA={}", layout.pgdata)]),
        cmd: Some(vec![
            "postgres".to_owned(),
            "-c".to_owned(),
            format!("hba_file={RECOVERY_HBA}"),
            "-c".to_owned(),
            "listen_addresses=".to_owned(),
            "-c".to_owned(),
            "port=5432".to_owned(),
        ]),
        labels: Some(scratch_labels),
        host_config: Some(HostConfig {
            mounts: Some(vec![Mount {
                target: Some(layout.mount.clone()),
                source: Some(name.to_owned()),
                typ: Some(MountType::VOLUME),
                ..Mount::default()
            }]),
            network_mode: Some("none".to_owned()),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    containers::create(docker, name, body)
        .await
        .context("cannot create the scratch server to recover in")?;
    let hba = b"local all all trust\n";
    let archive =
        crate::engine::archive::build_with_parents(&[Entry::file(RECOVERY_HBA, 0o644, hba)])
            .context("cannot build the archive for the scratch server")?;
    files::upload(docker, name, archive, "the scratch server").await?;
    containers::start(docker, name)
        .await
        .context("cannot start the scratch server to recover in")?;
    Ok(())
}

/// Waits until the scratch server has replayed to the target and
/// promoted; a server that stops instead (the target is beyond the
/// archived WAL, a file is missing) is an error with its log.
async fn wait_promoted(docker: &Docker, name: &str, probe: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let running = containers::inspect(docker, name)
            .await?
            .and_then(|inspect| inspect.state)
            .and_then(|state| state.running)
            .unwrap_or(false);
        if !running {
            bail!(
                "the recovering server stopped before it reached the target; nothing live was \
                 touched\n{}",
                containers::last_logs(docker, name).await
            );
        }
        let last = match containers::exec(docker, name, probe, false).await {
            Ok(output) if output.code == 0 && output.stdout.trim() == "f" => return Ok(()),
            Ok(output) => format!("{}{}", output.stdout.trim(), output.stderr.trim()),
            Err(error) => format!("{error:#}"),
        };
        if started.elapsed() > RECOVERY_LIMIT {
            bail!(
                "the recovering server did not promote within {} h ({last})\n{}",
                RECOVERY_LIMIT.as_secs() / 3600,
                containers::last_logs(docker, name).await
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Where the archive of the timeline before a restore is kept, below the
/// destination: `wal/<deployment>-before-restore-<time>`.
pub fn archive_aside_name(deployment: &str, stamp: &str) -> String {
    format!(
        "{}-before-restore-{}",
        crate::model::backup::wal_directory(deployment),
        stamp.to_ascii_lowercase()
    )
}

/// With the archiver stopped: moves the deployment's WAL archive aside in
/// the destination (a throwaway container of the image renames it), so
/// the archiver starts a new one on the new timeline. Returns where it
/// went, or `None` when there was none.
pub async fn set_archive_aside(
    docker: &Docker,
    deployment: &str,
    image: &str,
    destination: &BackupDestination,
    stamp: &str,
) -> anyhow::Result<Option<String>> {
    let from = crate::model::backup::wal_directory(deployment);
    let to = archive_aside_name(deployment, stamp);
    let name = format!(
        "{deployment}-restore-{}-archive",
        stamp.to_ascii_lowercase()
    );
    let mount = match destination {
        BackupDestination::Volume(source) => (MountType::VOLUME, source.clone()),
        BackupDestination::Directory(source) => (MountType::BIND, source.clone()),
    };
    let script = r#"set -eu
if [ ! -d "$1" ]; then echo pgspec-archive-none; exit 0; fi
if [ -e "$2" ]; then echo "$2 exists" >&2; exit 3; fi
mv "$1" "$2"
sync
echo pgspec-archive-moved"#;
    containers::create_throwaway(
        docker,
        deployment,
        &name,
        RESTORE_ROLE,
        ContainerCreateBody {
            image: Some(image.to_owned()),
            user: Some("0:0".to_owned()),
            entrypoint: Some(vec!["/bin/sh".to_owned()]),
            cmd: Some(vec![
                "-c".to_owned(),
                script.to_owned(),
                "aside".to_owned(),
                from.clone(),
                to.clone(),
            ]),
            host_config: Some(HostConfig {
                mounts: Some(vec![Mount {
                    target: Some(super::BACKUP_MOUNT.to_owned()),
                    source: Some(mount.1),
                    typ: Some(mount.0),
                    ..Mount::default()
                }]),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        },
    )
    .await?;
    let ran = async {
        containers::start(docker, &name).await?;
        containers::wait_exit(docker, &name, Duration::from_secs(300)).await
    }
    .await;
    let logs = containers::last_logs(docker, &name).await;
    let _ = containers::remove_throwaway(docker, &name).await;
    match ran? {
        0 if logs.contains("pgspec-archive-none") => Ok(None),
        0 => Ok(Some(to)),
        code => bail!(
            "moving the WAL archive `{from}` aside to `{to}` failed (exit code {code})\n{logs}"
        ),
    }
}
