//! `pgspec drift -f SPEC`: the CI gate. Exit 0 in sync, 2 drift, 1 error.

use clap::Args;

use crate::cli::report::ReportArgs;
use crate::cli::{Exit, SpecArg, load_spec, plan_now};
use crate::output::Colors;

#[derive(Debug, Args)]
pub struct DriftArgs {
    #[command(flatten)]
    pub spec: SpecArg,
    #[command(flatten)]
    pub report: ReportArgs,
}

pub async fn run(args: &DriftArgs, colors: Colors) -> anyhow::Result<Exit> {
    let color = colors.stdout;
    let spec = load_spec(&args.spec.file, colors.stderr)?;
    let (_live, plan) = plan_now(&spec).await?;
    let heading = plan.is_pending().then(|| {
        format!(
            "Drift: the live deployment `{}` differs from {}.",
            plan.deployment,
            args.spec.file.display()
        )
    });
    args.report.print(&plan, color, heading.as_deref())?;
    if !plan.errors.is_empty() {
        anyhow::bail!("the plan has {} error(s)", plan.errors.len());
    }
    Ok(if plan.is_pending() {
        Exit::Changes
    } else {
        Exit::Success
    })
}
