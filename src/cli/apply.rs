//! `pgspec apply -f SPEC` (plan, confirm, apply) or `pgspec apply PLANFILE`
//! (apply exactly a saved plan, refused if live state moved).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use crate::apply::hint;
use crate::apply::{self, Again, ApplyError, ApplyOptions, Approved, Pause};
use crate::cli::{Exit, load_spec, observe_and_diff, open};
use crate::lock::ApplyLock;
use crate::output::{self, Colors};
use crate::plan::Plan;
use crate::plan::render::{self, Paint, TextOptions};
use crate::plan::saved::{SavedPlan, fingerprint};

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved by `pgspec plan --out FILE`.
    #[arg(value_name = "PLANFILE", conflicts_with = "file")]
    pub plan_file: Option<PathBuf>,
    /// Plan from this spec, confirm, then apply. Give it several times, or
    /// name a directory, for a fleet of specs (with --auto-approve).
    #[arg(short = 'f', long = "file", value_name = "SPEC")]
    pub file: Vec<PathBuf>,
    /// With several specs: how many deployments are applied at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub parallelism: usize,
    /// Apply without asking (for CI).
    #[arg(long)]
    pub auto_approve: bool,
    /// How long DDL waits for a lock before it gives up and retries, in
    /// milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub lock_timeout: u64,
    /// How long to wait for another apply of the same deployment, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub lock_wait: u64,
}

pub async fn run(args: &ApplyArgs, colors: Colors) -> anyhow::Result<Exit> {
    let color = colors.stdout;
    let text_options = TextOptions {
        color,
        show_unmanaged: false,
    };
    let lock_wait = Duration::from_secs(args.lock_wait);
    let single = match args.file.as_slice() {
        [] => None,
        [file] if !file.is_dir() => Some(file),
        files => {
            if !args.auto_approve {
                bail!(
                    "applying a fleet of specs needs --auto-approve; run `pgspec plan` on the \
                     same files first to see what it does"
                );
            }
            let passed = vec![
                "--auto-approve".to_owned(),
                "--lock-timeout".to_owned(),
                args.lock_timeout.to_string(),
                "--lock-wait".to_owned(),
                args.lock_wait.to_string(),
            ];
            return super::fleet::run(
                super::fleet::Kind::Apply,
                files,
                &passed,
                args.parallelism,
                false,
                color,
            )
            .await;
        }
    };
    let (spec, connections, plan, live_fingerprint, observed, mut locks) =
        match (&args.plan_file, single) {
            (Some(path), _) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read saved plan `{}`", path.display()))?;
                let saved = SavedPlan::from_json(&text)
                    .with_context(|| format!("cannot load saved plan `{}`", path.display()))?;
                let connections = open(&saved.spec).await?;
                let locks = ApplyLock::acquire(&saved.spec, &connections, lock_wait).await?;
                // A saved plan is the approval: it is applied as it is, or not at all.
                (
                    saved.spec,
                    connections,
                    saved.plan,
                    saved.live_fingerprint,
                    None,
                    locks,
                )
            }
            (None, Some(path)) => {
                let spec = load_spec(path, colors.stderr)?;
                // The lock is held from before planning until apply has verified,
                // so a second apply waits and then plans against the result.
                let connections = open(&spec).await?;
                let locks = ApplyLock::acquire(&spec, &connections, lock_wait).await?;
                let (live, plan) = observe_and_diff(&spec, &connections).await?;
                output::stdout_with(|out| render::write_text(&plan, text_options, out))?;
                if !plan.errors.is_empty() {
                    bail!(
                        "the plan has {} error(s); nothing was applied",
                        plan.errors.len()
                    );
                }
                if !plan.has_changes() {
                    if !plan.waiting.is_empty() {
                        output::stdout(&waiting_line(&plan))?;
                    }
                    return Ok(Exit::Success);
                }
                confirm(args.auto_approve)?;
                let live_fingerprint = fingerprint(&live);
                // Observed under the locks a moment ago: with nothing waiting
                // in between, apply checks the fingerprint against it rather
                // than observing again.
                let observed = args.auto_approve.then_some(live);
                (spec, connections, plan, live_fingerprint, observed, locks)
            }
            (None, None) => bail!("give a spec with `-f SPEC` or a saved plan file"),
        };

    let options = ApplyOptions {
        lock_timeout: Duration::from_millis(args.lock_timeout),
        stop_after: std::env::var("PGSPEC_TEST_STOP_AFTER")
            .ok()
            .and_then(|value| value.parse().ok()),
        pause: Pause::from_env(),
    };
    let auto_approve = args.auto_approve;
    let ask_again = move |second: &Plan| -> anyhow::Result<()> {
        output::stdout(&format!(
            "\nThe server now answers, and the inside of PostgreSQL, planned again, holds \
             actions the plan above did not:\n\n{}",
            render::text(second, text_options)
        ))?;
        confirm(auto_approve)
    };
    let planned = plan.actions.len();
    let approved = Approved {
        plan,
        live_fingerprint,
        again: if args.plan_file.is_some() {
            // A saved plan is the approval: nothing it does not hold runs.
            Again::Refuse
        } else {
            Again::Ask(&ask_again)
        },
        observed,
    };
    let outcome = match apply::apply(&spec, &connections, approved, &options, &mut locks).await {
        Ok(outcome) => outcome,
        Err(error) => {
            let connection = hint::Connection {
                role: Some(connections.target.user.as_str()),
                runs_container: spec.deployment.container.is_some(),
            };
            return Err(explain(error, planned, connection, colors.stderr));
        }
    };

    let summary = outcome.done;
    output::stdout(&format!(
        "\nApply complete: {} added, {} changed, {} replaced, {} destroyed.\n",
        summary.add, summary.change, summary.replace, summary.destroy
    ))?;
    let waiting_for_restart: Vec<&str> = outcome
        .remaining
        .actions
        .iter()
        .filter(|action| action.risk.restart && action.steps.is_empty())
        .map(|action| action.address.as_str())
        .collect();
    if outcome.remaining.errors.is_empty()
        && !waiting_for_restart.is_empty()
        && waiting_for_restart.len() == outcome.remaining.actions.len()
    {
        // An external server is restarted by whoever runs it; what is left
        // is written and waits for that restart, and drift shows it until then.
        output::stdout(&format!(
            "\nWritten, waiting for a server restart: {}.\nRestart the server to finish; `pgspec drift` shows these until then.\n",
            waiting_for_restart.join(", ")
        ))?;
        return Ok(Exit::Success);
    }
    if !outcome.remaining.has_changes()
        && outcome.remaining.errors.is_empty()
        && !outcome.remaining.waiting.is_empty()
    {
        output::stdout(&waiting_line(&outcome.remaining))?;
        return Ok(Exit::Success);
    }
    if outcome.remaining.has_changes() || !outcome.remaining.errors.is_empty() {
        output::stdout(&format!(
            "\nLive state still differs from the spec after apply:\n\n{}",
            render::text(&outcome.remaining, text_options)
        ))?;
        bail!(
            "apply finished but the deployment has not converged; the plan above shows what remains"
        );
    }
    Ok(Exit::Success)
}

/// The last line of an apply that left indexes waiting for their tables.
fn waiting_line(plan: &crate::plan::Plan) -> String {
    format!(
        "\n{} index(es) wait for their tables; run `pgspec apply` again after the \
         application's migrations have created them.\n",
        plan.waiting.len()
    )
}

/// Asks for confirmation on a terminal; refuses to go on unconfirmed without
/// one.
fn confirm(auto_approve: bool) -> anyhow::Result<()> {
    if auto_approve {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to apply without confirmation: standard input is not a terminal; \
             pass --auto-approve to apply non-interactively"
        );
    }
    output::status("\nDo you want to perform these actions? Only `yes` is accepted.");
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    if answer.trim() != "yes" {
        bail!("apply cancelled; nothing was changed");
    }
    Ok(())
}

/// Turns an apply error into the message a user can act on: what failed,
/// why (with a `help:` line when the cause is one pgspec recognises), what
/// was done before it, what to run next.
fn explain(
    error: ApplyError,
    planned: usize,
    connection: hint::Connection<'_>,
    color: bool,
) -> anyhow::Error {
    match error {
        ApplyError::Action {
            index,
            total,
            verb,
            address,
            done,
            source,
        } => {
            let mut message = format!("action {index} of {total} failed: {verb} `{address}`");
            // tokio-postgres wraps the server's error in one that says only
            // "db error"; the server's own message follows it in the chain.
            for cause in source
                .chain()
                .filter(|cause| cause.to_string() != "db error")
            {
                message.push_str(&format!("\n  caused by: {cause}"));
            }
            if let Some(help) = hint::help(&source, connection) {
                message.push_str(&format!("\n  help: {help}"));
            }
            if done.is_empty() {
                message.push_str("\ndone before the failure: nothing");
            } else {
                let done: Vec<String> = done
                    .iter()
                    .map(|(address, kind)| format!("{address} ({})", apply::past(*kind)))
                    .collect();
                message.push_str(&format!("\ndone before the failure: {}", done.join(", ")));
            }
            match total.saturating_sub(index) {
                0 => message.push_str("\nrun `pgspec plan` to see what remains"),
                left => message.push_str(&format!(
                    "\nnot attempted: {left} action(s); run `pgspec plan` to see what remains"
                )),
            }
            anyhow::anyhow!(message)
        }
        ApplyError::Moved { changed, fresh } => {
            let paint = Paint { color };
            anyhow::anyhow!(
                "the live deployment changed since this plan was made ({changed}); nothing was applied\n\
                 the saved plan had {} action(s); a fresh plan has {}:\n\n{}",
                planned,
                fresh.actions.len(),
                render::summary_line(fresh.summary(), paint)
            )
            .context("refusing to apply a stale plan: run `pgspec plan` again and review it")
        }
        ApplyError::Unreviewed { unreviewed, second } => {
            let paint = Paint { color };
            let shown = render::text(
                &second,
                TextOptions {
                    color,
                    show_unmanaged: false,
                },
            );
            let _ = output::stdout(&format!(
                "\nThe inside of PostgreSQL, planned again after the container phase:\n\n{shown}"
            ));
            anyhow::anyhow!(
                "the saved plan did not hold {} of these action(s): {}; nothing inside PostgreSQL \
                 was changed\n{}",
                unreviewed.len(),
                unreviewed.join(", "),
                render::summary_line(second.summary(), paint)
            )
            .context(
                "refusing to run what the saved plan did not show: the server was not running \
                 (or was restarted) when the plan was made; run `pgspec plan` again and review it",
            )
        }
        other => anyhow::Error::new(other),
    }
}
