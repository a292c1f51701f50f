//! `pgspec show PLANFILE`: a saved plan, printed again as text, JSON or
//! Markdown. Reads only the file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::cli::Exit;
use crate::cli::report::ReportArgs;
use crate::output::Colors;
use crate::plan::saved::SavedPlan;

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A plan saved by `pgspec plan --out FILE`.
    #[arg(value_name = "PLANFILE")]
    pub plan: PathBuf,
    #[command(flatten)]
    pub report: ReportArgs,
}

pub fn run(args: &ShowArgs, colors: Colors) -> anyhow::Result<Exit> {
    let text = std::fs::read_to_string(&args.plan)
        .with_context(|| format!("cannot read saved plan `{}`", args.plan.display()))?;
    let saved = SavedPlan::from_json(&text)
        .with_context(|| format!("cannot load saved plan `{}`", args.plan.display()))?;
    args.report.print(&saved.plan, colors.stdout, None)?;
    Ok(Exit::Success)
}
