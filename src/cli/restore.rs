//! `pgspec backup restore`: a backup brought back, never over what exists
//! without a kept copy.
//!
//! - Whole: the backup is restored and checked beside the live server
//!   (`backup::restore`), then, after a typed confirmation, swapped in for
//!   its data while the server is stopped; the data the volume held is kept
//!   in a new volume named in the output, so the restore can be undone.
//! - `--database NAME`: that database alone, on the live server; the
//!   database it replaces is kept under a new name.
//! - `--into NAME`: one database restored into a new database beside the
//!   existing ones, which are not touched.

use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use super::{Exit, SpecArg};
use crate::backup::manifest::{Entry, Manifest, Status};
use crate::backup::restore::{RestoreNames, Swap, SwapError, pgdata_in_volume};
use crate::backup::{self, agent};
use crate::engine::Docker;
use crate::live::{Connections, Target};
use crate::lock::ApplyLock;
use crate::model::{Container, ContainerState, Desired};
use crate::output;
use crate::sql::quote_ident;

/// PostgreSQL's longest identifier, in bytes.
const MAX_IDENTIFIER: usize = 63;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub spec: SpecArg,
    /// The backup id, as `backup list` shows it (default: the newest good
    /// one that holds what is restored).
    pub backup: Option<String>,
    /// Restore this database alone, on the live server; the database of
    /// that name is kept under a new name.
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,
    /// Restore one database (`--database`, or the backup's only one) into
    /// this new database, beside the existing ones.
    #[arg(long, value_name = "NAME")]
    pub into: Option<String>,
    /// Restore the whole server to this point in time
    /// (`2026-11-29 12:00:00+00`), from a `physical` schedule's newest
    /// base backup before it and the archived WAL.
    #[arg(long, value_name = "TIME")]
    pub to_time: Option<String>,
    /// Restore the whole server to this WAL position (`0/3000060`), as
    /// --to-time does.
    #[arg(long, value_name = "LSN")]
    pub to_lsn: Option<String>,
    /// Restore without asking for the typed confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// How long to wait for another apply of the same deployment, in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub lock_wait: u64,
}

pub async fn restore(args: &RestoreArgs, color: bool) -> anyhow::Result<Exit> {
    let recovery = super::pitr::target(args)?;
    let spec = super::backup::backup_spec(&args.spec.file, color)?;
    let connections = Connections::open(&spec).await?;
    let docker = connections.engine()?;
    let entries = list(docker, &spec).await?;
    if let Some(recovery) = recovery {
        return super::pitr::to_point(&spec, &connections, &entries, args, &recovery).await;
    }
    match (&args.database, &args.into) {
        (database, Some(into)) => {
            let database = match database {
                Some(database) => database.clone(),
                None => only_database(&entries, args.backup.as_deref())?,
            };
            into_new(&spec, docker, &entries, args, &database, into).await
        }
        (Some(database), None) => {
            let locks = lock(&spec, &connections, args).await?;
            let result = replace_database(&spec, &connections, &entries, args, database).await;
            drop(locks);
            result
        }
        (None, None) => whole(&spec, &connections, &entries, args).await,
    }
}

pub(super) async fn lock(
    spec: &Desired,
    connections: &Connections,
    args: &RestoreArgs,
) -> anyhow::Result<ApplyLock> {
    Ok(ApplyLock::acquire(spec, connections, Duration::from_secs(args.lock_wait)).await?)
}

/// The deployment's backups, newest first, as the agent lists them.
async fn list(docker: &Docker, spec: &Desired) -> anyhow::Result<Vec<Entry>> {
    let name = &spec.deployment.name;
    agent_answer(
        docker,
        spec,
        &["list", "--deployment", name],
        "list backups",
    )
    .await
}

/// The backup agent's JSON answer to `arguments`; `doing` says what was
/// asked when the agent fails.
pub(super) async fn agent_answer<T: serde::de::DeserializeOwned>(
    docker: &Docker,
    spec: &Desired,
    arguments: &[&str],
    doing: &str,
) -> anyhow::Result<T> {
    let output = exec_agent(docker, spec, arguments).await?;
    if output.code != 0 {
        // Its messages were shown as it ran.
        bail!(
            "the backup agent could not {doing} (exit code {}, output above)",
            output.code
        );
    }
    serde_json::from_str(&output.stdout).context("cannot read the backup agent's answer")
}

pub(super) async fn exec_agent(
    docker: &Docker,
    spec: &Desired,
    arguments: &[&str],
) -> anyhow::Result<crate::engine::container::ExecOutput> {
    let schedules = spec
        .deployment
        .backup
        .as_ref()
        .map(|backup| &backup.schedules);
    backup::docker::exec_agent(docker, &spec.deployment.name, schedules, arguments).await
}

/// The one database of the backup restored with `--into` alone.
fn only_database(entries: &[Entry], id: Option<&str>) -> anyhow::Result<String> {
    let manifest = match id {
        Some(id) => entries
            .iter()
            .find(|entry| entry.id == id)
            .and_then(|entry| entry.manifest.as_ref())
            .with_context(|| format!("no finished backup `{id}` in the destination"))?,
        None => {
            newest_good(entries).context("the destination holds no successful backup to restore")?
        }
    };
    match manifest.databases.as_slice() {
        [only] => Ok(only.name.clone()),
        [] => bail!("backup `{}` holds no database", manifest.id),
        several => bail!(
            "backup `{}` holds {} databases ({}); say which with --database",
            manifest.id,
            several.len(),
            several
                .iter()
                .map(|entry| format!("`{}`", entry.name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn newest_good(entries: &[Entry]) -> Option<&Manifest> {
    entries
        .iter()
        .filter(|entry| entry.status == Status::Ok)
        .find_map(|entry| entry.manifest.as_ref())
}

fn describe(manifest: &Manifest) -> String {
    format!(
        "backup `{}` (taken {}, {}, {} format)",
        manifest.id,
        manifest.started_at,
        backup::human_size(manifest.size_bytes),
        manifest.format
    )
}

/// One database into a new one: nothing existing is touched.
async fn into_new(
    spec: &Desired,
    docker: &Docker,
    entries: &[Entry],
    args: &RestoreArgs,
    database: &str,
    into: &str,
) -> anyhow::Result<Exit> {
    let manifest = agent::pick_for_database(entries, args.backup.as_deref(), database)?;
    output::status(&format!(
        "restoring database `{database}` from {} into the new database `{into}`; nothing \
         that exists is touched…",
        describe(manifest)
    ));
    let restored = restore_database(docker, spec, &manifest.id, database, into, None).await?;
    output::stdout(&format!(
        "Restored database `{}` from backup `{}` into `{}`: {}.\n",
        restored.database, restored.id, restored.into, restored.detail
    ))?;
    Ok(Exit::Success)
}

/// Runs the agent's database restore in the backup container.
async fn restore_database(
    docker: &Docker,
    spec: &Desired,
    id: &str,
    database: &str,
    into: &str,
    owner: Option<&str>,
) -> anyhow::Result<agent::Restored> {
    let container = server(spec);
    let mut arguments = vec![
        "restore-database",
        "--deployment",
        &spec.deployment.name,
        "--user",
        &container.superuser,
        "--host",
        &container.name,
        "--id",
        id,
        "--database",
        database,
        "--into",
        into,
    ];
    if let Some(owner) = owner {
        arguments.extend(["--owner", owner]);
    }
    let output = exec_agent(docker, spec, &arguments).await?;
    if output.code != 0 {
        bail!(
            "the backup agent could not restore database `{database}` (exit code {}, output \
             above)",
            output.code
        );
    }
    serde_json::from_str(&output.stdout).context("cannot read the backup agent's answer")
}

pub(super) fn server(spec: &Desired) -> &Container {
    spec.deployment
        .container
        .as_ref()
        .expect("checked by backup_spec")
}

/// One database on the live server, the one it replaces kept under a new
/// name.
async fn replace_database(
    spec: &Desired,
    connections: &Connections,
    entries: &[Entry],
    args: &RestoreArgs,
    database: &str,
) -> anyhow::Result<Exit> {
    let docker = connections.engine()?;
    let manifest = agent::pick_for_database(entries, args.backup.as_deref(), database)?;
    let client = connections.target.connect().await?;
    let owner: Option<String> = client
        .query_opt(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .context("cannot read pg_database")?
        .map(|row| row.get(0));
    let kept = kept_database_name(database, &stamp());
    let mut preview = format!(
        "pgspec will restore database `{database}` of deployment `{}` from {}.\n",
        spec.deployment.name,
        describe(manifest)
    );
    match &owner {
        Some(owner) => preview.push_str(&format!(
            "  kept: the database `{database}` now has is renamed `{kept}` (its sessions are \
             ended first); the restored one is owned by `{owner}`, as it is\n"
        )),
        None => preview.push_str(&format!(
            "  the live server has no database `{database}`: it is created\n"
        )),
    }
    output::stdout(&preview)?;
    confirm(args.auto_approve, database)?;
    if owner.is_some() {
        set_aside(&client, database, &kept).await?;
    }
    let restored = restore_database(
        docker,
        spec,
        &manifest.id,
        database,
        database,
        owner.as_deref(),
    )
    .await;
    match restored {
        Ok(restored) => {
            let mut text = format!(
                "Restored database `{database}` from backup `{}`: {}.\n",
                restored.id, restored.detail
            );
            if owner.is_some() {
                text.push_str(&format!(
                    "The database it replaced is kept as `{kept}`; drop it when it is no longer \
                     needed (`DROP DATABASE {}`).\n",
                    quote_ident(&kept)
                ));
            }
            output::stdout(&text)?;
            Ok(Exit::Success)
        }
        Err(error) if owner.is_some() => {
            let back = client
                .batch_execute(&format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    quote_ident(&kept),
                    quote_ident(database)
                ))
                .await;
            let note = match back {
                Ok(()) => format!("database `{database}` is back as it was"),
                Err(rename) => format!(
                    "database `{database}` is kept as `{kept}`: renaming it back failed \
                     ({rename})"
                ),
            };
            Err(error.context(note))
        }
        Err(error) => Err(error),
    }
}

/// Renames `database` to `kept`: no new sessions, the existing ones ended,
/// then the rename, then it takes connections again.
async fn set_aside(
    client: &tokio_postgres::Client,
    database: &str,
    kept: &str,
) -> anyhow::Result<()> {
    let name = quote_ident(database);
    client
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await
        .with_context(|| format!("cannot close database `{database}` to new sessions"))?;
    let renamed = async {
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&database],
            )
            .await?;
        client
            .batch_execute(&format!(
                "ALTER DATABASE {name} RENAME TO {}",
                quote_ident(kept)
            ))
            .await
    }
    .await;
    let reopen = |target: &str| {
        format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            quote_ident(target)
        )
    };
    match renamed {
        Ok(()) => {
            client
                .batch_execute(&reopen(kept))
                .await
                .with_context(|| format!("cannot open the kept database `{kept}` again"))?;
            Ok(())
        }
        Err(error) => {
            let _ = client.batch_execute(&reopen(database)).await;
            Err(error).with_context(|| {
                format!("cannot set database `{database}` aside as `{kept}`; nothing was changed")
            })
        }
    }
}

/// `<database>_before_restore_<time>`, cut to PostgreSQL's identifier
/// length at a character boundary.
fn kept_database_name(database: &str, stamp: &str) -> String {
    let suffix = format!("_before_restore_{}", stamp.to_ascii_lowercase());
    let mut base = database.to_owned();
    while base.len() + suffix.len() > MAX_IDENTIFIER {
        base.pop();
    }
    format!("{base}{suffix}")
}

/// The restore's time, as backup ids spell it.
pub(super) fn stamp() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string()
}

/// Asks for `word` to be typed on a terminal; refuses without one unless
/// `auto_approve`.
pub(super) fn confirm(auto_approve: bool, word: &str) -> anyhow::Result<()> {
    if auto_approve {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to restore without confirmation: standard input is not a terminal; pass \
             --auto-approve to restore non-interactively. Nothing was changed"
        );
    }
    output::status(&format!(
        "\nType `{word}` to restore; anything else cancels."
    ));
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    if answer.trim() != word {
        bail!("restore cancelled; nothing was changed");
    }
    Ok(())
}

/// The whole backup, restored beside the server and swapped in for its
/// data.
async fn whole(
    spec: &Desired,
    connections: &Connections,
    entries: &[Entry],
    args: &RestoreArgs,
) -> anyhow::Result<Exit> {
    let docker = connections.engine()?;
    let want = server(spec);
    let backup_section = spec
        .deployment
        .backup
        .as_ref()
        .expect("checked by backup_spec");
    let manifest = match args.backup.as_deref() {
        Some(id) => entries
            .iter()
            .find(|entry| entry.id == id)
            .and_then(|entry| entry.manifest.as_ref())
            .with_context(|| format!("no finished backup `{id}` in the destination"))?,
        None => entries
            .iter()
            .filter(|entry| entry.status == Status::Ok)
            .filter_map(|entry| entry.manifest.as_ref())
            .find(|manifest| manifest.kind == "full")
            .context("the destination holds no successful full backup to restore")?,
    };
    if manifest.status != Status::Ok || manifest.kind != "full" {
        bail!(
            "backup `{}` is not a successful full backup (kind {}, {:?}): only one with every \
             database's schema and data and the roles can replace the server's data; restore \
             a database of it with --database",
            manifest.id,
            manifest.kind,
            manifest.status
        );
    }
    let live = live_container(docker, spec, want).await?;
    let layout = crate::engine::image::inspect(docker, &want.image)
        .await?
        .with_context(|| format!("image `{}` is not local; run `pgspec apply`", want.image))?
        .data_layout();
    let pgdata_in_volume = pgdata_in_volume(&live.data_mount, &live.pgdata)?;
    if pgdata_in_volume != crate::backup::restore::pgdata_in_volume(&layout.mount, &layout.pgdata)?
    {
        bail!(
            "the server keeps its data directory at `{}` in its volume, and image `{}` at `{}`: \
             run `pgspec apply` so that the server runs the spec's image first",
            live.pgdata,
            want.image,
            layout.pgdata
        );
    }
    let live_databases = if live.state == ContainerState::Running {
        databases(&connections.target).await?
    } else {
        Vec::new()
    };
    let missing: Vec<String> = live_databases
        .iter()
        .filter(|name| !manifest.databases.iter().any(|entry| &entry.name == *name))
        .map(|name| format!("`{name}`"))
        .collect();
    let names = RestoreNames::new(&spec.deployment.name, &want.volume, &stamp());
    let mut preview = format!(
        "pgspec will restore deployment `{}` from {}.\n  databases: {}\n  restored first into \
         the new volume `{}` and checked there, while the server runs\n  then the server \
         `{}` stops, the data volume `{}` is copied whole into the new volume `{}` (kept), and \
         its data is replaced by the restored data; the server's configuration files stay\n",
        spec.deployment.name,
        describe(manifest),
        manifest
            .databases
            .iter()
            .map(|entry| format!("`{}`", entry.name))
            .collect::<Vec<_>>()
            .join(", "),
        names.scratch,
        want.name,
        want.volume,
        names.kept,
    );
    if !missing.is_empty() {
        preview.push_str(&format!(
            "  the server has databases the backup does not: {} (they stay only in `{}`)\n",
            missing.join(", "),
            names.kept
        ));
    }
    output::stdout(&preview)?;
    confirm(args.auto_approve, &spec.deployment.name)?;

    let mut locks = lock(spec, connections, args).await?;
    output::status(&format!(
        "restoring backup `{}` into a scratch server from `{}`…",
        manifest.id, want.image
    ));
    let target = backup::docker::VerifyTarget {
        deployment: &spec.deployment.name,
        image: &want.image,
        superuser: &want.superuser,
        destination: &backup_section.destination,
    };
    let report =
        backup::restore::restore_beside(docker, &target, &names, Some(&manifest.id)).await?;
    output::stdout(&backup::text::report_text(&report))?;
    if !report.ok() {
        bail!(
            "backup `{}` did not restore cleanly; the server and its data were not touched",
            manifest.id
        );
    }

    output::status(&format!("stopping `{}` to swap its data…", want.name));
    locks.release_advisory();
    crate::engine::container::stop(docker, &want.name).await?;
    let swap = Swap {
        deployment: &spec.deployment.name,
        image: &want.image,
        volume: &want.volume,
        pgdata_in_volume: &pgdata_in_volume,
        kept_pgdata_in_volume: &pgdata_in_volume,
        carry_settings: true,
        names: &names,
    };
    match backup::restore::swap(docker, &swap).await {
        Ok(()) => {}
        Err(SwapError::Untouched(error)) => {
            let started = start(docker, connections, want).await;
            let note = match started {
                Ok(()) => "the server runs again on its data, untouched".to_owned(),
                Err(start) => {
                    format!("the server's data is untouched, but it did not start: {start:#}")
                }
            };
            return Err(error.context(format!(
                "the restore stopped before the data was replaced ({note}); the restored copy is \
                 in volume `{}`",
                names.scratch
            )));
        }
        Err(SwapError::Midway(error)) => {
            return Err(error.context(format!(
                "the restore stopped while the data of volume `{}` was replaced; the server \
                 stays stopped. Its former data is whole in volume `{}` and the restored data in \
                 volume `{}`",
                want.volume, names.kept, names.scratch
            )));
        }
    }
    output::status(&format!("starting `{}` on the restored data…", want.name));
    start(docker, connections, want).await.with_context(|| {
        format!(
            "the server did not come up on the restored data; its former data is kept in \
             volume `{}`",
            names.kept
        )
    })?;
    let now = databases(&connections.target).await?;
    let absent: Vec<&str> = manifest
        .databases
        .iter()
        .map(|entry| entry.name.as_str())
        .filter(|name| !now.iter().any(|have| have == name))
        .collect();
    if !absent.is_empty() {
        bail!(
            "the restored server lacks database(s) {}; its former data is kept in volume `{}`",
            absent.join(", "),
            names.kept
        );
    }
    output::stdout(&format!(
        "Restored deployment `{}` from backup `{}`: `{}` runs on the restored data.\nThe data \
         the volume held before is kept in volume `{}`; remove it when it is no longer needed \
         (`docker volume rm {}`).\nRun `pgspec plan` to see what differs from the spec now.\n",
        spec.deployment.name, manifest.id, want.name, names.kept, names.kept
    ))?;
    Ok(Exit::Success)
}

/// The live server container, which must be the spec's, on the spec's
/// volume, running the spec's image.
pub(super) async fn live_container(
    docker: &Docker,
    spec: &Desired,
    want: &Container,
) -> anyhow::Result<Container> {
    let observed = crate::live::docker::observe(docker, &spec.deployment.name, want).await?;
    let live = observed
        .container
        .filter(|live| live.state != ContainerState::Missing)
        .with_context(|| {
            format!(
                "there is no server container `{}` to restore into; run `pgspec apply` first",
                want.name
            )
        })?;
    if let Some(reason) = live.data_home().unproven(&want.volume, None) {
        bail!(
            "the data of `{}` is not proven to be on volume `{}` ({reason}); nothing was changed",
            want.name,
            want.volume
        );
    }
    if live.image != want.image {
        bail!(
            "`{}` runs image `{}` and the spec says `{}`: run `pgspec apply` first, so the \
             backup is restored with the image the server runs",
            want.name,
            live.image,
            want.image
        );
    }
    Ok(live)
}

pub(super) async fn start(
    docker: &Docker,
    connections: &Connections,
    want: &Container,
) -> anyhow::Result<()> {
    crate::engine::container::start(docker, &want.name).await?;
    crate::apply::docker::wait_ready(docker, &want.name, &connections.target).await
}

/// The server's databases, templates aside.
async fn databases(target: &Target) -> anyhow::Result<Vec<String>> {
    let client = target.connect().await?;
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname",
            &[],
        )
        .await
        .context("cannot read pg_database")?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_database_name_fits_an_identifier() {
        assert_eq!(
            kept_database_name("app", "20261130T061500Z"),
            "app_before_restore_20261130t061500z"
        );
        let long = "d".repeat(63);
        let kept = kept_database_name(&long, "20261130T061500Z");
        assert_eq!(kept.len(), MAX_IDENTIFIER);
        assert!(kept.ends_with("_before_restore_20261130t061500z"));
        let wide = "é".repeat(31);
        assert!(kept_database_name(&wide, "20261130T061500Z").len() <= MAX_IDENTIFIER);
    }
}
