//! A declared major version upgrade by dump and restore (`UpgradeData`):
//! the data of the container's volume moves to the new image's major
//! version while the old server keeps it readable, and the old data stays
//! in a volume of its own for rollback.
//!
//! 1. A scratch server of the new image on a new volume
//!    (`<deployment>-upgrade`), initialised like pgspec's servers, on the
//!    deployment's network so it reaches the old server by name.
//! 2. The extensions the old server has must be available in the new image;
//!    if not, the scratch goes and nothing else was touched.
//! 3. With a pooler, PgBouncer is paused (`PAUSE`) so that its clients
//!    wait; the old server becomes read-only (`default_transaction_read_only`,
//!    reloaded; the sessions of clients, not pgspec's, are ended so they
//!    come back read-only) and the agent copies the roles, then the
//!    databases, two at a time, with the new image's tools, then compares
//!    row counts and sequence values. On any failure the old server is
//!    writable again and PgBouncer resumed; on success it resumes after
//!    the replace that follows (`ResumePooler`).
//! 4. Both servers stop; the swap keeps the volume's data in the volume
//!    `kept` and replaces it with the new server's, carrying over the
//!    client authentication files and `postgresql.auto.conf`.
//!
//! The replace that follows in the plan creates the new container on the
//! upgraded volume. Invariant: the old data is never written to after the
//! swap, and no volume holding it is removed.

use anyhow::{Context, bail};

use crate::backup::docker::{
    Scratch, VerifyTarget, create_scratch, exec_agent_json, remove_scratch,
};
use crate::backup::restore::{RestoreNames, Swap, SwapError, pgdata_in_volume};
use crate::engine::container as containers;
use crate::engine::{Docker, objects};
use crate::live::Target;
use crate::model::{BackupDestination, Container};

/// `org.pgspec.role` of the upgrade's scratch server and volume.
const UPGRADE_ROLE: &str = "upgrade";

/// One `UpgradeData` step.
pub struct Upgrade<'a> {
    pub deployment: &'a str,
    /// The desired container (the new image).
    pub want: &'a Container,
    pub from_major: u32,
    /// The volume the old data is kept in.
    pub kept: &'a str,
    /// The pooler container paused for the copy.
    pub pooler: Option<&'a str>,
}

/// How long `PAUSE` may take before the old server's client sessions are
/// ended (which releases PgBouncer's server connections too).
const PAUSE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `UpgradeData`.
pub async fn upgrade_data(
    docker: &Docker,
    upgrade: &Upgrade<'_>,
    target: &Target,
) -> anyhow::Result<()> {
    let Upgrade {
        deployment,
        want,
        from_major,
        kept,
        pooler,
    } = *upgrade;
    if objects::volume_exists(docker, kept).await? {
        bail!(
            "volume `{kept}` exists: an earlier upgrade kept PostgreSQL {from_major}'s data \
             there. pgspec never writes into it; rename or remove it yourself once it is no \
             longer needed, and apply again. Nothing was changed"
        );
    }
    let scratch = format!("{deployment}-upgrade");
    match objects::volume_role(docker, &scratch).await? {
        None => {}
        Some(role) if role == UPGRADE_ROLE => remove_scratch(docker, &scratch).await?,
        Some(_) => bail!(
            "volume `{scratch}` exists and is not an upgrade's scratch volume; pgspec will not \
             remove it. Nothing was changed"
        ),
    }
    let old = crate::live::docker::observe(docker, deployment, want)
        .await?
        .container
        .filter(|old| old.state != crate::model::ContainerState::Missing)
        .with_context(|| format!("container `{}` is gone; nothing was changed", want.name))?;
    if old.state != crate::model::ContainerState::Running {
        containers::start(docker, &want.name).await?;
        super::docker::wait_ready(docker, &want.name, target).await?;
    }
    enough_space(docker, &want.name, &old.pgdata, target).await?;
    let new = super::data::with_image_layout(docker, want).await?;
    let password = match &want.superuser_password {
        Some(secret) => secret
            .resolve()
            .context("cannot read the superuser password")?,
        None => bail!(
            "a dump-and-restore upgrade needs the superuser's password \
             (`postgres.superuser.password`) to reach the old server from the new one"
        ),
    };
    let destination = BackupDestination::default();
    let scratch_target = VerifyTarget {
        deployment,
        image: &want.image,
        superuser: &want.superuser,
        destination: &destination,
    };
    crate::output::status(&format!(
        "starting a scratch server of `{}` for the upgrade…",
        want.image
    ));
    create_scratch(
        docker,
        &Scratch {
            target: &scratch_target,
            name: &scratch,
            role: UPGRADE_ROLE,
            network: Some(&want.network),
            password: password.expose(),
            mount_destination: false,
        },
    )
    .await?;
    let copied = copy(docker, &scratch, want, pooler, target).await;
    if let Err(error) = copied {
        let writable = writable_again(target, true).await;
        resume(docker, pooler, target).await;
        remove_scratch(docker, &scratch).await?;
        return Err(error.context(match writable {
            Ok(()) => {
                "the upgrade stopped before the switch; the old server runs on, writable".to_owned()
            }
            Err(reset) => format!(
                "the upgrade stopped before the switch; the old server runs on, but making it \
                 writable again failed: {reset:#} (run `ALTER SYSTEM RESET \
                 default_transaction_read_only; SELECT pg_reload_conf();`)"
            ),
        }));
    }
    // Written to the old data as it stops, so that it starts writable if it
    // is ever rolled back to; the running server stays read-only.
    writable_again(target, false).await?;
    containers::stop_and_remove(docker, &scratch).await?;
    containers::stop(docker, &want.name).await?;
    let names = RestoreNames {
        scratch: scratch.clone(),
        kept: kept.to_owned(),
    };
    let kept_pgdata = pgdata_in_volume(&old.data_mount, &old.pgdata)?;
    let new_pgdata = pgdata_in_volume(&new.data_mount, &new.pgdata)?;
    let swap = Swap {
        deployment,
        image: &want.image,
        volume: &want.volume,
        pgdata_in_volume: &new_pgdata,
        kept_pgdata_in_volume: &kept_pgdata,
        carry_settings: false,
        names: &names,
    };
    match crate::backup::restore::swap(docker, &swap).await {
        Ok(()) => Ok(()),
        Err(SwapError::Untouched(error)) => {
            let started = containers::start(docker, &want.name).await;
            resume(docker, pooler, target).await;
            Err(error.context(format!(
                "the upgrade stopped before the data was replaced; the old data on volume `{}` \
                 is untouched ({}); the copy is in volume `{scratch}`",
                want.volume,
                match started {
                    Ok(()) => "the old server starts again".to_owned(),
                    Err(start) => format!("the old server did not start: {start}"),
                }
            )))
        }
        Err(SwapError::Midway(error)) => Err(error.context(format!(
            "the upgrade stopped while the data of volume `{}` was replaced; both servers are \
             stopped. PostgreSQL {from_major}'s data is whole in volume `{kept}`, the new \
             server's in volume `{scratch}`",
            want.volume
        ))),
    }
}

/// The upgrade writes the databases twice more on the engine's volume
/// storage (the new server's copy, and the old data kept): refuse before
/// anything changes when the file system of the data directory has less
/// room than that.
async fn enough_space(
    docker: &Docker,
    container: &str,
    pgdata: &str,
    target: &Target,
) -> anyhow::Result<()> {
    let client = target.connect().await?;
    let size: i64 = client
        .query_one(
            "SELECT coalesce(sum(pg_database_size(oid)), 0)::int8 FROM pg_database",
            &[],
        )
        .await
        .context("cannot read the databases' sizes")?
        .get(0);
    let command = ["df", "-Pk", pgdata].map(str::to_owned);
    let output = containers::exec(docker, container, &command, false).await?;
    let available = free_kib(&output.stdout).map(|kib| kib.saturating_mul(1024));
    let Some(available) = available.filter(|_| output.code == 0) else {
        tracing::warn!(
            container,
            "cannot read the free space of the data directory; the upgrade goes on without \
             that check"
        );
        return Ok(());
    };
    let needed = u64::try_from(size).unwrap_or_default().saturating_mul(2);
    if available < needed {
        bail!(
            "the upgrade needs about {} free on the file system of the data volume (the new \
             server's copy and the old data kept, twice the databases' {}), and {} is free; \
             nothing was changed",
            crate::model::notation::human_size(needed),
            crate::model::notation::human_size(needed / 2),
            crate::model::notation::human_size(available)
        );
    }
    Ok(())
}

/// The available KiB in `df -P` output.
fn free_kib(df: &str) -> Option<u64> {
    df.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

/// `RESUME` on the pooler, if one was paused; a failure is logged, as the
/// apply fails already.
async fn resume(docker: &Docker, pooler: Option<&str>, target: &Target) {
    if let Some(name) = pooler
        && let Err(error) = super::pooler::resume(docker, name, target).await
    {
        tracing::warn!(
            pooler = name,
            "{error:#}; run `RESUME` on its admin console"
        );
    }
}

/// Pauses the pooler and makes the old server read-only: `PAUSE` first, so
/// that PgBouncer holds its clients' new queries, given [`PAUSE_GRACE`] for
/// the transactions under way; then the server, which ends the sessions
/// left (PgBouncer's too, so the pause completes).
async fn stop_writes(docker: &Docker, pooler: Option<&str>, target: &Target) -> anyhow::Result<()> {
    let pausing = match pooler {
        Some(name) => {
            crate::output::status(&format!("pausing PgBouncer in `{name}` for the copy…"));
            Some(super::pooler::pause(docker, name, target).await?)
        }
        None => None,
    };
    let mut pausing = match pausing {
        Some(mut handle) => match tokio::time::timeout(PAUSE_GRACE, &mut handle).await {
            Ok(outcome) => {
                paused(outcome)?;
                None
            }
            Err(_) => Some(handle),
        },
        None => None,
    };
    crate::output::status("making the old server read-only for the copy…");
    read_only(target).await?;
    if let Some(handle) = pausing.take() {
        match tokio::time::timeout(crate::live::pooler::CONSOLE_TIMEOUT, handle).await {
            Ok(outcome) => paused(outcome)?,
            Err(_) => tracing::warn!(
                "PgBouncer has not finished pausing; the old server is read-only, so writes \
                 are stopped all the same"
            ),
        }
    }
    Ok(())
}

fn paused(outcome: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    outcome.map_err(|error| anyhow::anyhow!("pausing PgBouncer failed: {error}"))?
}

/// The checks, the read-only switch and the copy.
async fn copy(
    docker: &Docker,
    scratch: &str,
    want: &Container,
    pooler: Option<&str>,
    target: &Target,
) -> anyhow::Result<()> {
    let check: crate::backup::agent::Report = exec_agent_json(
        docker,
        scratch,
        &[
            "upgrade-copy",
            "--from",
            &want.name,
            "--user",
            &want.superuser,
            "--check",
        ],
        "the upgrade's checks",
    )
    .await?;
    failed(
        &check,
        "the new image cannot take the old server's data; nothing was changed",
    )?;
    stop_writes(docker, pooler, target).await?;
    let report: crate::backup::agent::Report = exec_agent_json(
        docker,
        scratch,
        &[
            "upgrade-copy",
            "--from",
            &want.name,
            "--user",
            &want.superuser,
        ],
        "the upgrade's copy",
    )
    .await?;
    crate::output::status(crate::backup::text::report_text(&report).trim_end());
    failed(&report, "the copy does not match the old server")
}

fn failed(report: &crate::backup::agent::Report, what: &str) -> anyhow::Result<()> {
    let problems: Vec<String> = report
        .checks
        .iter()
        .filter(|check| !check.ok)
        .map(|check| format!("{}: {}", check.subject, check.detail))
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    bail!("{what}: {}", problems.join("; "))
}

/// Every new transaction of the old server read-only, and the sessions of
/// its clients ended so that they come back read-only; pgspec's own
/// sessions (its lock, the backup agent) stay.
async fn read_only(target: &Target) -> anyhow::Result<()> {
    let client = target.connect().await?;
    // One statement each: ALTER SYSTEM cannot run in the implicit
    // transaction of a multi-statement query.
    for statement in [
        "ALTER SYSTEM SET default_transaction_read_only = on",
        "SELECT pg_reload_conf()",
    ] {
        client
            .batch_execute(statement)
            .await
            .context("cannot make the old server read-only")?;
    }
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
               AND application_name NOT LIKE 'pgspec%'",
            &[],
        )
        .await
        .context("cannot end the old server's client sessions")?;
    Ok(())
}

/// Undoes [`read_only`] in the configuration; with `reload`, at once.
async fn writable_again(target: &Target, reload: bool) -> anyhow::Result<()> {
    let client = target.connect().await?;
    client
        .batch_execute("SET default_transaction_read_only = off")
        .await
        .context("cannot make this session writable")?;
    client
        .batch_execute("ALTER SYSTEM RESET default_transaction_read_only")
        .await
        .context("cannot reset default_transaction_read_only")?;
    if reload {
        client
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .context("cannot reload the old server's configuration")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read_from_df() {
        let df = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n\
                  /dev/vda         263174212 48213312 201533292      20% /var/lib/postgresql/data\n";
        assert_eq!(free_kib(df), Some(201_533_292));
        assert_eq!(free_kib("nothing"), None);
    }
}
