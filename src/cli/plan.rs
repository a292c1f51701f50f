//! `pgspec plan -f SPEC`: read live state, print what apply would change.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::cli::fleet::{self, SpecsArg};
use crate::cli::report::Format;
use crate::cli::report::ReportArgs;
use crate::cli::{Exit, load_spec, plan_now};
use crate::output::{self, Colors};
use crate::plan::saved::SavedPlan;

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub spec: SpecsArg,
    /// Save the plan to this file for `pgspec apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 2 when the plan has changes, 0 when it has none.
    #[arg(long)]
    pub detailed_exitcode: bool,
    #[command(flatten)]
    pub report: ReportArgs,
}

pub async fn run(args: &PlanArgs, colors: Colors) -> anyhow::Result<Exit> {
    let color = colors.stdout;
    let Some(file) = args.spec.single() else {
        if args.out.is_some() {
            anyhow::bail!("--out saves one plan; a fleet of specs has one plan each");
        }
        let mut passed = args.report.passed();
        if args.detailed_exitcode {
            passed.push("--detailed-exitcode".to_owned());
        }
        let json = args.report.format() == Format::Json;
        return fleet::run(
            fleet::Kind::Plan,
            &args.spec.files,
            &passed,
            args.spec.parallelism,
            json,
            color,
        )
        .await;
    };
    let spec = load_spec(file, colors.stderr)?;
    let (live, plan) = plan_now(&spec).await?;
    args.report.print(&plan, color, None)?;
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
