//! `pgspec backup restore --to-time|--to-lsn`: the whole server brought
//! back to a point in time from a `physical` schedule's base backup and
//! the archived WAL.
//!
//! The recovery runs beside the live server (`backup::pitr`); only a
//! server that reached the target and promoted is swapped in, as a dump
//! restore is (`backup::restore::swap`: the former data kept in a new
//! volume, the server's configuration files carried over). The server
//! then runs on a new timeline: the archive of the old one is moved aside
//! in the destination, the archiver starts a new one on its slot, and a
//! base backup is taken at once so that the recoverable window starts
//! again.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::Exit;
use super::restore::{
    RestoreArgs, confirm, exec_agent, live_container, lock, server, stamp, start,
};
use crate::backup::agent::RecoveryTarget;
use crate::backup::manifest::{Entry, Manifest, Status};
use crate::backup::restore::{RestoreNames, Swap, SwapError, pgdata_in_volume};
use crate::backup::text::{ArchiveState, PitrPreview, pitr_preview};
use crate::backup::{self, window};
use crate::engine::Docker;
use crate::engine::container as containers;
use crate::live::Connections;
use crate::model::Desired;
use crate::output;

/// The recovery target the arguments ask for, if any; refused with
/// `--database`, `--into` or a backup id.
pub(super) fn target(args: &RestoreArgs) -> anyhow::Result<Option<RecoveryTarget>> {
    let target = match (&args.to_time, &args.to_lsn) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => bail!("say either --to-time or --to-lsn, not both"),
        (Some(time), None) => {
            RecoveryTarget::Time(window::parse_target_time(time).map_err(anyhow::Error::msg)?)
        }
        (None, Some(lsn)) => {
            backup::agent::parse_lsn(lsn)
                .with_context(|| format!("`{lsn}` is not an LSN (`0/3000060`)"))?;
            RecoveryTarget::Lsn(lsn.trim().to_owned())
        }
    };
    if args.database.is_some() || args.into.is_some() {
        bail!(
            "--to-time and --to-lsn bring the whole server back to a point in time from a base \
             backup and the archived WAL; they cannot be combined with --database or --into \
             (one database cannot be recovered to a point in time alone). Nothing was changed"
        );
    }
    if let Some(id) = &args.backup {
        bail!(
            "--to-time and --to-lsn choose the base backup themselves (the newest before the \
             target); leave out `{id}`. Nothing was changed"
        );
    }
    Ok(Some(target))
}

/// The first `physical` schedule of the spec, whose base backups and WAL
/// archive a point-in-time restore uses.
fn physical_schedule(spec: &Desired) -> anyhow::Result<String> {
    let schedules = &spec
        .deployment
        .backup
        .as_ref()
        .expect("checked by backup_spec")
        .schedules;
    if let Some((name, _)) = schedules
        .iter()
        .find(|(_, schedule)| schedule.kind == "physical")
    {
        return Ok(name.clone());
    }
    bail!(
        "--to-time and --to-lsn need a `kind: physical` schedule (base backups and continuous \
         WAL archiving); the spec's schedule(s) {} take dumps, which restore only to the time \
         they were taken: `pgspec backup restore -f SPEC [BACKUP]`. Nothing was changed",
        schedules
            .keys()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A path inside the destination, as people see it (`wal/ledger`).
fn in_destination(path: &str) -> String {
    path.strip_prefix(backup::BACKUP_MOUNT)
        .unwrap_or(path)
        .trim_start_matches('/')
        .to_owned()
}

/// What the agent finds in the deployment's WAL archive.
async fn archive_state(docker: &Docker, spec: &Desired) -> anyhow::Result<ArchiveState> {
    let name = &spec.deployment.name;
    let arguments = ["archive", "--deployment", name];
    super::restore::agent_answer(docker, spec, &arguments, "read the WAL archive").await
}

/// The whole server, recovered to `recovery` beside it and swapped in.
pub(super) async fn to_point(
    spec: &Desired,
    connections: &Connections,
    entries: &[Entry],
    args: &RestoreArgs,
    recovery: &RecoveryTarget,
) -> anyhow::Result<Exit> {
    let docker = connections.engine()?;
    let deployment = &spec.deployment.name;
    let want = server(spec);
    let schedule = physical_schedule(spec)?;
    let backup_section = spec
        .deployment
        .backup
        .as_ref()
        .expect("checked by backup_spec");
    let manifests: Vec<Manifest> = entries
        .iter()
        .filter_map(|entry| entry.manifest.clone())
        .collect();
    let state = archive_state(docker, spec).await?;
    let window = window::recoverable_window(&manifests, &state).map_err(|why| {
        anyhow::anyhow!("nothing of `{deployment}` can be recovered: {why}. Nothing was changed")
    })?;
    let base = window::base_backup_for(deployment, &manifests, &state, recovery)
        .map_err(|why| anyhow::anyhow!("{why}. Nothing was changed"))?;
    let live = live_container(docker, spec, want).await?;
    let layout = crate::engine::image::inspect(docker, &want.image)
        .await?
        .with_context(|| format!("image `{}` is not local; run `pgspec apply`", want.image))?
        .data_layout();
    let in_volume = pgdata_in_volume(&live.data_mount, &live.pgdata)?;
    if in_volume != pgdata_in_volume(&layout.mount, &layout.pgdata)? {
        bail!(
            "the server keeps its data directory at `{}` in its volume, and image `{}` at `{}`: \
             run `pgspec apply` so that the server runs the spec's image first",
            live.pgdata,
            want.image,
            layout.pgdata
        );
    }
    let stamp = stamp();
    let names = RestoreNames::new(deployment, &want.volume, &stamp);
    let archive = in_destination(&crate::model::backup::wal_directory(deployment));
    let aside = in_destination(&backup::pitr::archive_aside_name(deployment, &stamp));
    let agent = backup::container_name(deployment);
    output::stdout(&pitr_preview(&PitrPreview {
        deployment,
        target: recovery,
        base,
        window: &window,
        server: &want.name,
        volume: &want.volume,
        backup_container: &agent,
        names: &names,
        archive: &archive,
        archive_aside: &aside,
        schedule: &schedule,
    }))?;
    confirm(args.auto_approve, deployment)?;

    let mut locks = lock(spec, connections, args).await?;
    let target = backup::docker::VerifyTarget {
        deployment,
        image: &want.image,
        superuser: &want.superuser,
        destination: &backup_section.destination,
    };
    let recovered = backup::pitr::recover_beside(docker, &target, &names, recovery)
        .await
        .with_context(|| {
            format!(
                "the recovery to {} did not finish; the server and its data were not touched \
                 (recoverable window: {})",
                window::describe_target(recovery),
                window::window_phrase(&window)
            )
        })?;
    output::status(&format!(
        "recovered from base backup `{}`: timeline {}, last transaction replayed committed at \
         {}",
        recovered.prepared.backup,
        recovered.timeline,
        recovered
            .last_commit
            .as_deref()
            .unwrap_or("(none replayed)")
    ));

    output::status(&format!(
        "stopping `{agent}` and `{}` to swap the data…",
        want.name
    ));
    containers::stop(docker, &agent).await?;
    locks.release_advisory();
    containers::stop(docker, &want.name).await?;
    let swap = Swap {
        deployment,
        image: &want.image,
        volume: &want.volume,
        pgdata_in_volume: &in_volume,
        kept_pgdata_in_volume: &in_volume,
        carry_settings: true,
        names: &names,
    };
    match backup::restore::swap(docker, &swap).await {
        Ok(()) => {}
        Err(SwapError::Untouched(error)) => {
            let started = async {
                start(docker, connections, want).await?;
                containers::start(docker, &agent).await?;
                anyhow::Ok(())
            }
            .await;
            let note = match started {
                Ok(()) => "the server and the archiver run again on the data, untouched".to_owned(),
                Err(start) => {
                    format!("the server's data is untouched, but it did not start: {start:#}")
                }
            };
            return Err(error.context(format!(
                "the restore stopped before the data was replaced ({note}); the recovered copy \
                 is in volume `{}`",
                names.scratch
            )));
        }
        Err(SwapError::Midway(error)) => {
            return Err(error.context(format!(
                "the restore stopped while the data of volume `{}` was replaced; the server and \
                 `{agent}` stay stopped. Its former data is whole in volume `{}` and the \
                 recovered data in volume `{}`",
                want.volume, names.kept, names.scratch
            )));
        }
    }
    let moved = backup::pitr::set_archive_aside(
        docker,
        deployment,
        &want.image,
        &backup_section.destination,
        &stamp,
    )
    .await;
    output::status(&format!("starting `{}` on the recovered data…", want.name));
    start(docker, connections, want).await.with_context(|| {
        format!(
            "the server did not come up on the recovered data; its former data is kept in \
             volume `{}`",
            names.kept
        )
    })?;
    check_out_of_recovery(connections).await?;
    let moved = moved.with_context(|| {
        format!(
            "the server runs on the recovered data (its former data is kept in volume `{}`), \
             but the WAL archive of the old timeline could not be moved aside, so the archiver \
             `{agent}` stays stopped: move `{archive}` aside in the destination, then `docker \
             start {agent}`",
            names.kept
        )
    })?;
    containers::start(docker, &agent).await?;
    let base_backup = new_base_backup(docker, spec, connections, &schedule).await;

    let mut text = format!(
        "Restored deployment `{deployment}` to {} from base backup `{}`: `{}` runs on timeline {}{}.\n\
         The data the volume held before is kept in volume `{}`; remove it when it is no longer \
         needed (`docker volume rm {}`).\n",
        window::describe_target(recovery),
        recovered.prepared.backup,
        want.name,
        recovered.timeline,
        recovered
            .last_commit
            .as_ref()
            .map_or(String::new(), |commit| format!(
                " (last transaction replayed committed at {commit})"
            )),
        names.kept,
        names.kept
    );
    if let Some(moved) = moved {
        text.push_str(&format!(
            "The WAL archive of the old timeline is kept in the destination as `{}`.\n",
            in_destination(&moved)
        ));
    }
    match base_backup {
        Ok(id) => text.push_str(&format!(
            "New base backup `{id}` of schedule `{schedule}`: the recoverable window starts \
             there.\n"
        )),
        Err(error) => text.push_str(&format!(
            "warning: no new base backup was taken ({error:#}); nothing after the restore is \
             recoverable until one is: `pgspec backup run -f SPEC {schedule}`\n"
        )),
    }
    text.push_str("Run `pgspec plan` to see what differs from the spec now.\n");
    output::stdout(&text)?;
    Ok(Exit::Success)
}

/// The restored server must be out of recovery, with no recovery settings
/// left that a restart would act on.
async fn check_out_of_recovery(connections: &Connections) -> anyhow::Result<()> {
    let client = connections.target.connect().await?;
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), current_setting('restore_command')",
            &[],
        )
        .await
        .context("cannot ask the restored server whether it is in recovery")?;
    let (in_recovery, restore_command): (bool, String) = (row.get(0), row.get(1));
    if in_recovery || !restore_command.is_empty() {
        bail!(
            "the restored server is {}; this is a bug in pgspec, please report it",
            if in_recovery {
                "still in recovery".to_owned()
            } else {
                format!("left with restore_command `{restore_command}`")
            }
        );
    }
    Ok(())
}

/// How long the archiver may take to stream from the restored server.
const ARCHIVER_LIMIT: Duration = Duration::from_secs(120);

/// Waits for the archiver to stream from the restored server, then takes
/// a base backup of `schedule`: the first of the new timeline. Returns its
/// id.
async fn new_base_backup(
    docker: &Docker,
    spec: &Desired,
    connections: &Connections,
    schedule: &str,
) -> anyhow::Result<String> {
    let slot = crate::model::backup::slot_name(&spec.deployment.name);
    let client = connections.target.connect().await?;
    let started = Instant::now();
    loop {
        let active = client
            .query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active",
                &[&slot],
            )
            .await
            .context("cannot read pg_replication_slots")?
            .is_some();
        if active {
            break;
        }
        if started.elapsed() > ARCHIVER_LIMIT {
            bail!(
                "the archiver did not stream on slot `{slot}` within {} s",
                ARCHIVER_LIMIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    output::status(&format!(
        "taking a base backup of schedule `{schedule}` on the new timeline…"
    ));
    let output = exec_agent(docker, spec, &["once", "--schedule", schedule]).await?;
    if output.code != 0 {
        bail!("the backup agent failed (exit code {})", output.code);
    }
    let manifests: Vec<Manifest> =
        serde_json::from_str(&output.stdout).context("cannot read the backup agent's answer")?;
    match manifests.as_slice() {
        [manifest] if manifest.status == Status::Ok => Ok(manifest.id.clone()),
        [manifest] => bail!(
            "base backup `{}` failed: {}",
            manifest.id,
            manifest.error.as_deref().unwrap_or("no reason recorded")
        ),
        _ => bail!("the backup agent took no base backup"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        restore: RestoreArgs,
    }

    fn target_of(arguments: &[&str]) -> Result<Option<RecoveryTarget>, String> {
        let mut all = vec!["restore", "-f", "spec.yaml"];
        all.extend_from_slice(arguments);
        let command = Command::try_parse_from(all).map_err(|error| error.to_string())?;
        target(&command.restore).map_err(|error| error.to_string())
    }

    #[test]
    fn a_point_in_time_is_the_whole_server_and_nothing_else() {
        assert_eq!(target_of(&[]), Ok(None));
        assert!(matches!(
            target_of(&["--to-time", "2026-11-29 12:00:00+00"]),
            Ok(Some(RecoveryTarget::Time(_)))
        ));
        assert_eq!(
            target_of(&["--to-lsn", "0/3000060"]),
            Ok(Some(RecoveryTarget::Lsn("0/3000060".to_owned())))
        );
        let refused = |arguments: &[&str], words: &str| {
            let error = target_of(arguments).expect_err("refused");
            assert!(error.contains(words), "{error}");
        };
        refused(
            &["--to-time", "2026-11-29 12:00:00+00", "--database", "app"],
            "cannot be combined with --database or --into",
        );
        refused(
            &["--to-lsn", "0/3000060", "--into", "copy"],
            "cannot be combined with --database or --into",
        );
        refused(
            &[
                "--to-time",
                "2026-11-29 12:00:00+00",
                "20261129T030000Z-base",
            ],
            "choose the base backup themselves",
        );
        refused(
            &["--to-time", "2026-11-29 12:00:00"],
            "is not a time with its zone",
        );
        refused(&["--to-lsn", "3000060"], "is not an LSN");
        refused(
            &["--to-time", "2026-11-29 12:00:00+00", "--to-lsn", "0/1"],
            "not both",
        );
    }
}
