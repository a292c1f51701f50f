//! The command line: one file per command, each thin. Commands return an
//! `Exit`; `main` maps errors to exit code 1.

mod apply;
mod backup;
mod completions;
mod drift;
mod fleet;
mod import;
mod monitoring;
mod pitr;
mod plan;
mod report;
mod restore;
mod schema;
mod show;
mod status;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::live::{self, Connections};
use crate::lock;
use crate::model::Deployment;
use crate::model::Desired;
use crate::output::{self, ColorChoice};
use crate::plan::Plan;
use crate::spec;

/// Declarative reconciliation of PostgreSQL deployments in Docker.
#[derive(Debug, Parser)]
#[command(name = "pgspec", version, about)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less log output on stderr (errors only).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Colour in human output.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a spec file without touching anything.
    Validate(validate::ValidateArgs),
    /// Read live state and print what apply would change.
    Plan(plan::PlanArgs),
    /// Make live state match the spec (or a saved plan).
    Apply(apply::ApplyArgs),
    /// Exit 2 when live state differs from the spec (CI gate).
    Drift(drift::DriftArgs),
    /// Print the JSON Schema of the spec format.
    Schema,
    /// Print a saved plan again (`plan --out FILE`).
    Show(show::ShowArgs),
    /// Take, list and verify backups.
    Backup(backup::BackupArgs),
    /// Write the spec of a live deployment (adopt an existing one).
    Import(import::ImportArgs),
    /// Show the live deployment, each line green, yellow or red (exit 2 on red).
    Status(status::StatusArgs),
    /// Monitoring: Prometheus alert rules from the spec's thresholds.
    Monitoring(monitoring::MonitoringArgs),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
    /// Print the manual page (roff).
    Man,
}

/// The spec file argument shared by commands.
#[derive(Debug, Args)]
pub struct SpecArg {
    /// Path of the spec file, or `-` for standard input.
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    pub file: PathBuf,
}

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// In sync, or done.
    Success,
    /// Changes pending (plan with --detailed-exitcode, drift), or a red
    /// line in `status`.
    Changes,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Changes => 2,
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    let colors = cli.color.resolve();
    match cli.command {
        Command::Validate(args) => validate::run(&args, colors),
        Command::Plan(args) => runtime()?.block_on(plan::run(&args, colors)),
        Command::Apply(args) => runtime()?.block_on(apply::run(&args, colors)),
        Command::Drift(args) => runtime()?.block_on(drift::run(&args, colors)),
        Command::Schema => schema::run(),
        Command::Show(args) => show::run(&args, colors),
        Command::Backup(args) => backup::run(&args, colors.stderr),
        Command::Status(args) => runtime()?.block_on(status::run(&args, colors)),
        Command::Import(args) => runtime()?.block_on(import::run(&args)),
        Command::Monitoring(args) => monitoring::run(&args, colors.stderr),
        Command::Completions(args) => completions::completions(&args),
        Command::Man => completions::man(),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// An error whose text is already rendered in full (the diagnostics of a
/// spec, each with its own `error:` line): `main` prints it as it is,
/// without a prefix of its own.
#[derive(Debug)]
pub struct Reported(pub String);

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.trim_end())
    }
}

impl std::error::Error for Reported {}

/// Loads and validates a spec, printing warnings; validation errors become
/// the command's error with every diagnostic rendered (for stderr, coloured
/// when `color`).
pub(crate) fn load_spec(path: &Path, color: bool) -> anyhow::Result<Desired> {
    let loaded = if path == Path::new("-") {
        // `-f -`: the spec on standard input; relative file references
        // resolve against the working directory.
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read the spec from standard input")?;
        spec::load_str(Path::new("<stdin>"), &text)
    } else {
        spec::load(path)
    };
    let validated = loaded
        .and_then(|loaded| loaded.validate())
        .map_err(|diagnostics| {
            if report::in_github_actions() {
                // Best effort: the rendered error below says it all anyway.
                let _ = output::stdout(&diagnostics.github_annotations());
            }
            Reported(diagnostics.render(color))
        })?;
    if validated.warnings.has_errors() || !validated.warnings.items.is_empty() {
        output::status(validated.warnings.render(color).trim_end());
    }
    let mut desired = validated.spec;
    // Test hook: a lower limit for plain index builds, so that a test sees
    // both kinds of build without filling a megabyte-sized table.
    if let Some(bytes) = std::env::var("PGSPEC_TEST_PLAIN_INDEX_MAX_BYTES")
        .ok()
        .and_then(|value| value.parse().ok())
    {
        desired.options.plain_index_max_bytes = Some(bytes);
    }
    Ok(desired)
}

/// How long plan and drift wait for an apply in progress.
const SHARED_LOCK_WAIT: Duration = Duration::from_secs(600);

/// Observes and diffs while holding the shared advisory lock, so a plan or
/// drift check never sees an apply half-way.
pub(crate) async fn plan_now(spec: &Desired) -> anyhow::Result<(Deployment, Plan)> {
    let connections = open(spec).await?;
    let lock = lock::shared(spec, &connections, SHARED_LOCK_WAIT).await?;
    let observed = observe_and_diff(spec, &connections).await;
    drop(lock);
    observed
}

/// Resolves the connection and reaches the engine, once per command.
pub(crate) async fn open(spec: &Desired) -> anyhow::Result<Connections> {
    Connections::open(spec)
        .await
        .context("cannot resolve the connection")
}

/// Observes and diffs without taking a lock (the caller holds one).
pub(crate) async fn observe_and_diff(
    spec: &Desired,
    connections: &Connections,
) -> anyhow::Result<(Deployment, Plan)> {
    let live = live::observe(spec, connections)
        .await
        .with_context(|| format!("cannot observe deployment `{}`", spec.deployment.name))?;
    let mut plan = crate::plan::diff(&spec.deployment, &live, &spec.options);
    // A remote engine: the plan says which, and how PostgreSQL on it is
    // reached.
    if let Some(endpoint) = &connections.endpoint
        && let Some(route) = connections.target.route.describe()
    {
        plan.notes.push(crate::plan::Note {
            address: "engine".to_owned(),
            message: format!("{endpoint}: {route}"),
        });
    }
    Ok((live, plan))
}
