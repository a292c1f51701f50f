//! `pgspec plan -f SPEC`: read live state, print what apply would change.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::cli::{Exit, SpecArg, load_spec, plan_now};
use crate::output::{self, Colors};
use crate::plan::render::{self, TextOptions};
use crate::plan::saved::SavedPlan;

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub spec: SpecArg,
    /// Save the plan to this file for `pgspec apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the plan as JSON (format documented in README).
    #[arg(long)]
    pub json: bool,
    /// Exit 2 when the plan has changes, 0 when it has none.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// List live objects the spec does not mention.
    #[arg(long)]
    pub show_unmanaged: bool,
}

pub async fn run(args: &PlanArgs, colors: Colors) -> anyhow::Result<Exit> {
    let color = colors.stdout;
    let spec = load_spec(&args.spec.file, colors.stderr)?;
    let (live, plan) = plan_now(&spec).await?;
    if args.json {
        output::stdout(&render::json(&plan))?;
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
    if let Some(path) = &args.out {
        let saved = SavedPlan::new(spec.clone(), &live, plan.clone());
        std::fs::write(path, saved.to_json())
            .with_context(|| format!("cannot write saved plan `{}`", path.display()))?;
        output::status(&format!(
            "Saved the plan to {}; run `pgspec apply {}` to apply exactly this plan.",
            path.display(),
            path.display()
        ));
    }
    Ok(if args.detailed_exitcode && plan.is_pending() {
        Exit::Changes
    } else {
        Exit::Success
    })
}
