//! A fleet: `plan`, `drift` and `apply` on several specs at once (`-f`
//! given several times, or naming a directory of `*.yaml`/`*.yml` files).
//!
//! Every spec is loaded and validated first, and two specs that claim the
//! same container, volume, deployment name or host port on the same engine
//! stop the run before anything is read. Then each deployment runs in its
//! own pgspec process (the same command with one `-f`), at most
//! `--parallelism` at a time, its output captured so that the sections
//! never interleave: one section per deployment in the order given, then
//! one summary line per deployment. The exit code is the worst of them:
//! an error (1) over changes (2) over success (0). With `--json` the output
//! is one document with one entry per deployment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use futures_util::StreamExt;

use crate::cli::{Exit, Reported, load_spec};
use crate::engine::endpoint::{self, Environment};
use crate::model::Desired;
use crate::output;

/// The spec files of `plan` and `drift`: one, several, or a directory.
#[derive(Debug, Args)]
pub struct SpecsArg {
    /// Path of the spec file, or `-` for standard input. Give it several
    /// times, or name a directory, for a fleet of specs.
    #[arg(short = 'f', long = "file", value_name = "SPEC", required = true)]
    pub files: Vec<PathBuf>,
    /// With several specs: how many deployments are worked on at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub parallelism: usize,
}

impl SpecsArg {
    /// The one spec file, when the arguments name exactly one file.
    pub fn single(&self) -> Option<&Path> {
        match self.files.as_slice() {
            [file] if !file.is_dir() => Some(file),
            _ => None,
        }
    }
}

/// Which command a fleet runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Plan,
    Drift,
    Apply,
}

impl Kind {
    fn command(self) -> &'static str {
        match self {
            Kind::Plan => "plan",
            Kind::Drift => "drift",
            Kind::Apply => "apply",
        }
    }

    fn outcome(self, code: i32) -> &'static str {
        match (self, code) {
            (_, 1) => "error",
            (Kind::Plan, 0) => "ok",
            (Kind::Plan, 2) => "changes pending",
            (Kind::Drift, 0) => "in sync",
            (Kind::Drift, 2) => "drift",
            (Kind::Apply, 0) => "applied",
            (Kind::Apply, 2) => "changes remain",
            _ => "error",
        }
    }
}

/// The spec files named: files as given, directories as their `*.yaml`
/// and `*.yml` files in name order.
pub fn expand(files: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for file in files {
        if file.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(file)
                .with_context(|| format!("cannot read directory `{}`", file.display()))?
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| {
                    path.is_file()
                        && path
                            .extension()
                            .is_some_and(|extension| extension == "yaml" || extension == "yml")
                })
                .collect();
            found.sort();
            if found.is_empty() {
                bail!(
                    "directory `{}` holds no *.yaml or *.yml spec",
                    file.display()
                );
            }
            out.extend(found);
        } else if file == Path::new("-") {
            bail!("`-f -` (standard input) cannot be part of a fleet");
        } else {
            out.push(file.clone());
        }
    }
    Ok(out)
}

/// What one spec claims on its engine.
fn claims(spec: &Desired) -> Vec<(&'static str, String)> {
    let deployment = &spec.deployment;
    let mut claims = vec![("deployment", deployment.name.clone())];
    if let Some(container) = &deployment.container {
        claims.push(("container", container.name.clone()));
        if !container.volume.is_empty() {
            claims.push(("volume", container.volume.clone()));
        }
        if container.port != 0 {
            claims.push(("port", container.port.to_string()));
        }
        if let Some(pooler) = &deployment.pooler
            && pooler.port != 0
        {
            claims.push(("port", pooler.port.to_string()));
        }
    }
    claims
}

/// The engine a spec runs on, as an address (`None`: no container).
fn engine_of(spec: &Desired, environment: &Environment) -> anyhow::Result<Option<String>> {
    if spec.deployment.container.is_none() {
        return Ok(None);
    }
    let chosen = endpoint::choose(spec.connection.engine.as_deref(), environment)
        .with_context(|| format!("{}: cannot choose the engine", spec.path.display()))?;
    Ok(Some(chosen.host))
}

/// Two specs claiming the same container, volume, deployment name or host
/// port on the same engine, one message per clash naming both files.
pub fn conflicts(specs: &[(Desired, Option<String>)]) -> Vec<String> {
    let mut owners: BTreeMap<(String, &'static str, String), &Path> = BTreeMap::new();
    let mut found = Vec::new();
    for (spec, engine) in specs {
        let Some(engine) = engine else { continue };
        for (what, value) in claims(spec) {
            let key = (engine.clone(), what, value.clone());
            match owners.get(&key) {
                Some(first) if *first != spec.path.as_path() => found.push(format!(
                    "{} and {} both claim {what} `{value}` on engine {engine}",
                    first.display(),
                    spec.path.display()
                )),
                Some(_) => {}
                None => {
                    owners.insert(key, spec.path.as_path());
                }
            }
        }
    }
    found
}

/// Loads, validates and checks a fleet's specs for clashes; the specs
/// with their engines.
pub fn load(files: &[PathBuf], color: bool) -> anyhow::Result<Vec<(Desired, Option<String>)>> {
    let environment = Environment::current();
    let mut specs = Vec::new();
    let mut failed = Vec::new();
    for file in files {
        match load_spec(file, color) {
            Ok(spec) => {
                let engine = engine_of(&spec, &environment)?;
                specs.push((spec, engine));
            }
            Err(error) => {
                if let Some(reported) = error.downcast_ref::<Reported>() {
                    output::status(reported.0.trim_end());
                } else {
                    output::status(&format!("{}: {error:#}", file.display()));
                }
                failed.push(file.display().to_string());
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} spec(s) are not valid: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    let clashes = conflicts(&specs);
    if !clashes.is_empty() {
        bail!("specs of the fleet clash:\n  {}", clashes.join("\n  "));
    }
    Ok(specs)
}

/// One deployment's run.
struct Outcome {
    file: PathBuf,
    deployment: String,
    engine: Option<String>,
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `kind` on every spec of the fleet, `passed` being the options
/// each single run gets, `parallelism` at a time; prints the sections and
/// the summary, and returns the worst exit.
pub async fn run(
    kind: Kind,
    files: &[PathBuf],
    passed: &[String],
    parallelism: usize,
    json: bool,
    color: bool,
) -> anyhow::Result<Exit> {
    let files = expand(files)?;
    let specs = load(&files, color)?;
    let program = std::env::current_exe().context("cannot find pgspec's own executable")?;
    let runs = specs.into_iter().map(|(spec, engine)| {
        let program = program.clone();
        let mut arguments = vec![
            "--color".to_owned(),
            if color { "always" } else { "never" }.to_owned(),
            kind.command().to_owned(),
            "-f".to_owned(),
            spec.path.display().to_string(),
        ];
        arguments.extend(passed.iter().cloned());
        async move {
            let result = tokio::process::Command::new(&program)
                .args(&arguments)
                .stdin(std::process::Stdio::null())
                .output()
                .await;
            let (code, stdout, stderr) = match result {
                Ok(output) => (
                    output.status.code().unwrap_or(1),
                    String::from_utf8_lossy(&output.stdout).into_owned(),
                    String::from_utf8_lossy(&output.stderr).into_owned(),
                ),
                Err(error) => (1, String::new(), format!("cannot run pgspec: {error}\n")),
            };
            Outcome {
                file: spec.path.clone(),
                deployment: spec.deployment.name.clone(),
                engine,
                code,
                stdout,
                stderr,
            }
        }
    });
    let outcomes: Vec<Outcome> = futures_util::stream::iter(runs)
        .buffered(parallelism.max(1))
        .collect()
        .await;
    if json {
        output::stdout(&json_document(kind, &outcomes))?;
    } else {
        output::stdout(&text_report(kind, &outcomes))?;
    }
    let worst = worst(outcomes.iter().map(|outcome| outcome.code));
    match worst {
        0 => Ok(Exit::Success),
        2 => Ok(Exit::Changes),
        _ => {
            let failed = outcomes
                .iter()
                .filter(|outcome| outcome.code != 0 && outcome.code != 2);
            bail!(
                "{} of {} deployments failed",
                failed.count(),
                outcomes.len()
            )
        }
    }
}

/// The worst exit code: an error over changes over success.
pub fn worst(codes: impl IntoIterator<Item = i32>) -> i32 {
    codes
        .into_iter()
        .map(|code| match code {
            0 => (0, 0),
            2 => (1, 2),
            other => (2, other.max(1)),
        })
        .max()
        .map_or(0, |(_, code)| if code == 0 || code == 2 { code } else { 1 })
}

fn text_report(kind: Kind, outcomes: &[Outcome]) -> String {
    let mut text = String::new();
    for outcome in outcomes {
        text.push_str(&format!(
            "=== {} ({}) ===\n",
            outcome.deployment,
            outcome.file.display()
        ));
        text.push_str(&outcome.stdout);
        if outcome.code != 0 && outcome.code != 2 && !outcome.stderr.trim().is_empty() {
            text.push_str(outcome.stderr.trim_end());
            text.push('\n');
        }
        text.push('\n');
    }
    text.push_str(&format!("Summary ({} deployments):\n", outcomes.len()));
    for outcome in outcomes {
        text.push_str(&format!(
            "  {:<24} {:<16} {} ({})\n",
            outcome.deployment,
            kind.outcome(outcome.code),
            outcome.file.display(),
            outcome.engine.as_deref().unwrap_or("no engine"),
        ));
    }
    text
}

fn json_document(kind: Kind, outcomes: &[Outcome]) -> String {
    let deployments: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|outcome| {
            let plan = serde_json::from_str::<serde_json::Value>(&outcome.stdout)
                .unwrap_or(serde_json::Value::Null);
            serde_json::json!({
                "deployment": outcome.deployment,
                "file": outcome.file.display().to_string(),
                "engine": outcome.engine,
                "exit_code": outcome.code,
                "outcome": kind.outcome(outcome.code),
                "output": plan.is_null().then(|| outcome.stdout.clone()),
                "plan": plan,
                "error": (outcome.code != 0 && outcome.code != 2)
                    .then(|| outcome.stderr.trim_end().to_owned()),
            })
        })
        .collect();
    let document = serde_json::json!({
        "command": kind.command(),
        "exit_code": worst(outcomes.iter().map(|outcome| outcome.code)),
        "deployments": deployments,
    });
    format!(
        "{}\n",
        serde_json::to_string_pretty(&document).unwrap_or_default()
    )
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
