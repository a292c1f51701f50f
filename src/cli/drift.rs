//! `pgspec drift -f SPEC`: the CI gate. Exit 0 in sync, 2 drift, 1 error.

use clap::Args;

use crate::cli::{Exit, SpecArg, load_spec, plan_now};
use crate::output::{self, Colors};
use crate::plan::render::{self, TextOptions};

#[derive(Debug, Args)]
pub struct DriftArgs {
    #[command(flatten)]
    pub spec: SpecArg,
    /// Print the drift as JSON (the plan format).
    #[arg(long)]
    pub json: bool,
    /// List live objects the spec does not mention.
    #[arg(long)]
    pub show_unmanaged: bool,
}

pub async fn run(args: &DriftArgs, colors: Colors) -> anyhow::Result<Exit> {
    let color = colors.stdout;
    let spec = load_spec(&args.spec.file, colors.stderr)?;
    let (_live, plan) = plan_now(&spec).await?;
    if args.json {
        output::stdout(&render::json(&plan))?;
    } else if plan.is_pending() {
        output::stdout(&format!(
            "Drift: the live deployment `{}` differs from {}.\n\n{}",
            plan.deployment,
            args.spec.file.display(),
            render::text(
                &plan,
                TextOptions {
                    color,
                    show_unmanaged: args.show_unmanaged,
                }
            )
        ))?;
    } else {
        output::stdout(&render::text(
            &plan,
            TextOptions {
                color,
                show_unmanaged: args.show_unmanaged,
            },
        ))?;
    }
    if !plan.errors.is_empty() {
        anyhow::bail!("the plan has {} error(s)", plan.errors.len());
    }
    Ok(if plan.is_pending() {
        Exit::Changes
    } else {
        Exit::Success
    })
}
