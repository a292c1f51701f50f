//! `pgspec backup run|list|verify`, and the hidden `pgspec backup agent`
//! that runs inside the backup container.
//!
//! `run` and `list` are `docker exec` of the agent in `<deployment>-backup`,
//! so a backup taken by hand takes the scheduled path; `verify` restores
//! into a scratch container (see `backup::docker::verify`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::{Exit, SpecArg};
use crate::backup::agent::{self, ServerAddress};
use crate::backup::manifest::{Entry, Manifest, Status, Verification};
use crate::backup::{self, AgentConfig, CONFIG_PATH};
use crate::engine::container::ExecOutput;
use crate::model::Desired;
use crate::output;

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: BackupCommand,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Take a backup now in the backup container: every schedule, or NAME.
    Run(RunArgs),
    /// List the backups in the destination, newest first.
    List(ListArgs),
    /// Restore a backup (default: the newest good one) into a scratch
    /// container and check it; exit 1 when anything does not match.
    Verify(VerifyArgs),
    /// Restore a backup: the whole server (restored and checked beside it,
    /// then swapped in after a typed confirmation, its former data kept in
    /// a new volume), one database (`--database`, the one it replaces kept
    /// under a new name), or one database into a new one (`--into`).
    Restore(super::restore::RestoreArgs),
    /// Runs inside the backup container.
    #[command(hide = true)]
    Agent(AgentArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub spec: SpecArg,
    /// The schedule whose kind, databases and retention to use.
    pub name: Option<String>,
    /// Print the manifests as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub spec: SpecArg,
    /// Print the backups as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub spec: SpecArg,
    /// The backup id, as `backup list` shows it.
    pub backup: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Run the schedules until stopped.
    Schedule {
        #[arg(long, default_value = CONFIG_PATH)]
        config: PathBuf,
    },
    /// Take backups now and print their manifests.
    Once {
        #[arg(long, default_value = CONFIG_PATH)]
        config: PathBuf,
        #[arg(long)]
        schedule: Option<String>,
    },
    /// Print the deployment's backups.
    List {
        #[arg(long)]
        deployment: String,
    },
    /// Restore one database of a backup into a new database on the server.
    RestoreDatabase {
        #[arg(long)]
        deployment: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        host: String,
        #[arg(long, default_value_t = backup::SERVER_PORT)]
        port: u16,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        database: String,
        #[arg(long)]
        into: String,
        #[arg(long)]
        owner: Option<String>,
    },
    /// Copy the server at `--from` into the local one (a major upgrade).
    UpgradeCopy {
        #[arg(long)]
        from: String,
        #[arg(long)]
        user: String,
        #[arg(long, default_value_t = backup::SERVER_PORT)]
        port: u16,
        #[arg(long, default_value = "/var/run/postgresql")]
        socket: String,
        /// Only check what can be known before writes stop.
        #[arg(long)]
        check: bool,
    },
    /// Run a schedule's restore test now (as its `verify` cron would) and
    /// record it in the tested backup's manifest; prints the report.
    VerifyNow {
        #[arg(long, default_value = CONFIG_PATH)]
        config: PathBuf,
        #[arg(long)]
        schedule: String,
    },
    /// Print the last restore test of each schedule that has one.
    RestoreTests {
        #[arg(long, default_value = CONFIG_PATH)]
        config: PathBuf,
    },
    /// Print the state of the deployment's WAL archive.
    Archive {
        #[arg(long)]
        deployment: String,
    },
    /// Restore a backup into the local server and print the report.
    Check {
        #[arg(long)]
        deployment: String,
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = backup::SERVER_PORT)]
        port: u16,
        #[arg(long, default_value = "/var/run/postgresql")]
        socket: String,
        #[arg(long)]
        id: Option<String>,
    },
    /// Record what `backup verify` found in the backup's manifest.
    Verified {
        #[arg(long)]
        deployment: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        checks: u64,
        #[arg(long)]
        failed: u64,
    },
    /// Prepare an empty data directory for point-in-time recovery from the
    /// archive and print what was prepared.
    Recover {
        #[arg(long)]
        deployment: String,
        #[arg(long)]
        pgdata: PathBuf,
        /// `latest`, `time:<RFC 3339>` or `lsn:<LSN>`.
        #[arg(long, default_value = "latest")]
        target: String,
        /// The server's operating-system user, who owns the data directory.
        #[arg(long, default_value = "postgres")]
        owner: String,
    },
}

pub fn run(args: &BackupArgs, color: bool) -> anyhow::Result<Exit> {
    let runtime = super::runtime()?;
    match &args.command {
        BackupCommand::Run(run) => runtime.block_on(run_now(run, color)),
        BackupCommand::List(list) => runtime.block_on(list_backups(list, color)),
        BackupCommand::Verify(verify) => runtime.block_on(verify_backup(verify, color)),
        BackupCommand::Restore(restore) => {
            runtime.block_on(super::restore::restore(restore, color))
        }
        BackupCommand::Agent(agent) => runtime.block_on(run_agent(&agent.command)),
    }
}

/// The spec, which must have a managed server and a `backup` section.
pub(super) fn backup_spec(file: &Path, color: bool) -> anyhow::Result<Desired> {
    let spec = super::load_spec(file, color)?;
    if spec.deployment.backup.is_none() {
        bail!("`{}` has no `backup` section", file.display());
    }
    if spec.deployment.container.is_none() {
        bail!(
            "`{}` manages no server container (`postgres.image`), so it has no backup container",
            file.display()
        );
    }
    Ok(spec)
}

/// Runs the agent in the running backup container.
async fn exec_agent(spec: &Desired, arguments: &[&str]) -> anyhow::Result<ExecOutput> {
    let docker = crate::engine::connect_to(spec.connection.engine.as_deref())
        .await
        .context("cannot connect to the Docker Engine")?
        .docker;
    let schedules = spec
        .deployment
        .backup
        .as_ref()
        .map(|backup| &backup.schedules);
    backup::docker::exec_agent(&docker, &spec.deployment.name, schedules, arguments).await
}

async fn run_now(args: &RunArgs, color: bool) -> anyhow::Result<Exit> {
    let spec = backup_spec(&args.spec.file, color)?;
    let mut arguments = vec!["once"];
    if let Some(name) = &args.name {
        arguments.extend(["--schedule", name.as_str()]);
    }
    let output = exec_agent(&spec, &arguments).await?;
    if output.code != 0 {
        bail!(
            "the backup agent in `{}` failed (exit code {})",
            backup::container_name(&spec.deployment.name),
            output.code
        );
    }
    let manifests: Vec<Manifest> =
        serde_json::from_str(&output.stdout).context("cannot read the backup agent's answer")?;
    if args.json {
        output::stdout(&output.stdout)?;
    } else {
        output::stdout(&backup::text::taken(&manifests))?;
    }
    let failed = manifests
        .iter()
        .filter(|manifest| manifest.status != Status::Ok)
        .count();
    if failed > 0 {
        bail!("{failed} backup(s) failed");
    }
    Ok(Exit::Success)
}

async fn list_backups(args: &ListArgs, color: bool) -> anyhow::Result<Exit> {
    let spec = backup_spec(&args.spec.file, color)?;
    let output = exec_agent(&spec, &["list", "--deployment", &spec.deployment.name]).await?;
    if output.code != 0 {
        bail!(
            "the backup agent could not list backups: {}",
            output.stderr.trim()
        );
    }
    let entries: Vec<Entry> =
        serde_json::from_str(&output.stdout).context("cannot read the backup agent's answer")?;
    let streams = crate::live::backup::streams_wal(&spec.deployment);
    if args.json {
        let archive = if streams {
            let (state, archiver) = archive_facts(&spec).await?;
            Some(backup::text::archive_report(
                &entries,
                &state,
                archiver.as_ref(),
            ))
        } else {
            None
        };
        print_json(&serde_json::json!({
            "format_version": 1,
            "backups": entries,
            "archive": archive,
        }))?;
        return Ok(Exit::Success);
    }
    output::stdout(&backup::text::list_table(&entries))?;
    output::stdout(&backup::text::restore_test_lines(&entries))?;
    if streams {
        let (state, archiver) = archive_facts(&spec).await?;
        output::stdout(&format!(
            "\n{}",
            backup::text::archive_text(&entries, &state, archiver.as_ref())
        ))?;
    }
    Ok(Exit::Success)
}

/// What the agent finds in the WAL archive and what the server says about
/// the archiver's slot (`None` when it cannot be read), for a spec that
/// streams WAL.
pub(super) async fn archive_facts(
    spec: &Desired,
) -> anyhow::Result<(backup::text::ArchiveState, Option<crate::model::Archiver>)> {
    let output = exec_agent(spec, &["archive", "--deployment", &spec.deployment.name]).await?;
    let state: backup::text::ArchiveState = if output.code == 0 {
        serde_json::from_str(&output.stdout).context("cannot read the backup agent's answer")?
    } else {
        Default::default()
    };
    let connections = super::open(spec).await?;
    let archiver =
        crate::live::backup::observe_archiver(&connections.target, &spec.deployment.name)
            .await
            .ok();
    Ok((state, archiver))
}

async fn verify_backup(args: &VerifyArgs, color: bool) -> anyhow::Result<Exit> {
    let spec = backup_spec(&args.spec.file, color)?;
    let (Some(container), Some(backup_section)) =
        (&spec.deployment.container, &spec.deployment.backup)
    else {
        unreachable!("checked by backup_spec");
    };
    let docker = crate::engine::connect_to(spec.connection.engine.as_deref())
        .await
        .context("cannot connect to the Docker Engine")?
        .docker;
    output::status(&format!(
        "verifying {} in a scratch container from `{}`…",
        args.backup
            .as_deref()
            .map_or("the newest good backup".to_owned(), |id| format!(
                "backup `{id}`"
            )),
        container.image
    ));
    let target = backup::docker::VerifyTarget {
        deployment: &spec.deployment.name,
        image: &container.image,
        superuser: &container.superuser,
        destination: &backup_section.destination,
    };
    let report = backup::docker::verify(&docker, &target, args.backup.as_deref()).await?;
    if args.json {
        let mut text = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
        text.push('\n');
        output::stdout(&text)?;
    } else {
        output::stdout(&backup::text::report_text(&report))?;
    }
    record_verification(&docker, &spec, &report).await;
    if !report.ok() {
        let failed = report.checks.iter().filter(|check| !check.ok).count();
        bail!(
            "backup `{}` failed verification: {failed} of {} check(s) failed",
            report.id,
            report.checks.len()
        );
    }
    Ok(Exit::Success)
}

/// Writes the result of a verification into the backup's manifest, through
/// the backup container's agent (the scratch container had the destination
/// read-only), so that `status` shows it. A backup container that cannot
/// write it is a warning: the verification itself stands.
async fn record_verification(
    docker: &crate::engine::Docker,
    spec: &crate::model::Desired,
    report: &backup::agent::Report,
) {
    let checks = report.checks.len().to_string();
    let failed = report
        .checks
        .iter()
        .filter(|check| !check.ok)
        .count()
        .to_string();
    let name = &spec.deployment.name;
    let schedules = spec
        .deployment
        .backup
        .as_ref()
        .map(|backup| &backup.schedules);
    let arguments = [
        "verified",
        "--deployment",
        name,
        "--id",
        &report.id,
        "--checks",
        &checks,
        "--failed",
        &failed,
    ];
    let outcome = match backup::docker::exec_agent(docker, name, schedules, &arguments).await {
        Ok(output) if output.code == 0 => return,
        Ok(output) => output.stderr.trim().to_owned(),
        Err(error) => format!("{error:#}"),
    };
    output::status(&format!(
        "warning: the result was not recorded in the backup's manifest ({outcome}); \
         `pgspec status` does not show it"
    ));
}

async fn run_agent(command: &AgentCommand) -> anyhow::Result<Exit> {
    let root = agent::root();
    match command {
        AgentCommand::Schedule { config } => {
            agent::schedule(&read_config(config).await?, &root).await?;
        }
        AgentCommand::Once { config, schedule } => {
            let manifests =
                agent::once(&read_config(config).await?, schedule.as_deref(), &root).await?;
            print_json(&manifests)?;
        }
        AgentCommand::List { deployment } => {
            print_json(&agent::list(&root, deployment)?)?;
        }
        AgentCommand::RestoreDatabase {
            deployment,
            user,
            host,
            port,
            id,
            database,
            into,
            owner,
        } => {
            let address = ServerAddress {
                host: host.clone(),
                port: *port,
                user: user.clone(),
            };
            let restored = agent::restore_database(
                &root,
                deployment,
                id.as_deref(),
                database,
                into,
                owner.as_deref(),
                &address,
            )
            .await?;
            print_json(&restored)?;
        }
        AgentCommand::UpgradeCopy {
            from,
            user,
            port,
            socket,
            check,
        } => {
            let old = ServerAddress {
                host: from.clone(),
                port: *port,
                user: user.clone(),
            };
            let local = ServerAddress {
                host: "127.0.0.1".to_owned(),
                port: backup::SERVER_PORT,
                user: user.clone(),
            };
            print_json(&agent::upgrade_copy(&old, &local, socket, *check).await?)?;
        }
        AgentCommand::VerifyNow { config, schedule } => {
            let config = read_config(config).await?;
            print_json(&agent::verify_now(&config, schedule, &root).await?)?;
        }
        AgentCommand::RestoreTests { config } => {
            let config = read_config(config).await?;
            print_json(&agent::restore_tests(&config, &root, chrono::Utc::now())?)?;
        }
        AgentCommand::Archive { deployment } => {
            print_json(&agent::archive_state(&root, deployment))?;
        }
        AgentCommand::Check {
            deployment,
            user,
            host,
            port,
            socket,
            id,
        } => {
            let address = ServerAddress {
                host: host.clone(),
                port: *port,
                user: user.clone(),
            };
            print_json(&agent::check(&root, deployment, id.as_deref(), &address, socket).await?)?;
        }
        AgentCommand::Verified {
            deployment,
            id,
            checks,
            failed,
        } => {
            let verification = Verification {
                verified_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ok: *failed == 0,
                checks: *checks,
                failed: *failed,
                pgspec_version: env!("CARGO_PKG_VERSION").to_owned(),
            };
            agent::record_verification(&root, deployment, id, verification)?;
        }
        AgentCommand::Recover {
            deployment,
            pgdata,
            target,
            owner,
        } => {
            let target = agent::RecoveryTarget::parse_argument(target)?;
            print_json(&agent::prepare_recovery(&root, deployment, pgdata, &target, owner).await?)?;
        }
    }
    Ok(Exit::Success)
}

async fn read_config(path: &Path) -> anyhow::Result<AgentConfig> {
    let text = tokio::fs::read(path)
        .await
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("cannot parse `{}`", path.display()))
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    text.push('\n');
    output::stdout(&text).context("cannot write to stdout")
}
