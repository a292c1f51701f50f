//! `pgspec drift -f SPEC`: the CI gate. Exit 0 in sync, 2 drift, 1 error.

use clap::Args;

use crate::cli::fleet::{self, SpecsArg};
use crate::cli::report::Format;
use crate::cli::report::ReportArgs;
use crate::cli::{Exit, load_spec, plan_now};
use crate::output::Colors;

#[derive(Debug, Args)]
pub struct DriftArgs {
    #[command(flatten)]
    pub spec: SpecsArg,
    #[command(flatten)]
    pub report: ReportArgs,
}

pub async fn run(args: &DriftArgs, colors: Colors) -> anyhow::Result<Exit> {
    let color = colors.stdout;
    let Some(file) = args.spec.single() else {
        let json = args.report.format() == Format::Json;
        return fleet::run(
            fleet::Kind::Drift,
            &args.spec.files,
            &args.report.passed(),
            args.spec.parallelism,
            json,
            color,
        )
        .await;
    };
    let spec = load_spec(file, colors.stderr)?;
    let (_live, plan) = plan_now(&spec).await?;
    let heading = plan.is_pending().then(|| {
        format!(
            "Drift: the live deployment `{}` differs from {}.",
            plan.deployment,
            file.display()
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
