//! `pgspec status -f SPEC [--json] [--watch SECONDS]`: one read-only screen
//! over the deployment, each line green, yellow or red. Exit 0 when nothing
//! is red, 2 when a red threshold is crossed, 1 on error.

use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::cli::{Exit, SpecArg, load_spec, open};
use crate::diag::printable;
use crate::live::status;
use crate::model::Desired;
use crate::model::monitoring::{Level, StatusReport, evaluate};
use crate::output::{self, Colors};
use crate::plan::render::Paint;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub spec: SpecArg,
    /// Print a JSON document (`format_version` 1) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Read again every SECONDS until interrupted.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub watch: Option<u64>,
}

pub async fn run(args: &StatusArgs, colors: Colors) -> anyhow::Result<Exit> {
    let spec = load_spec(&args.spec.file, colors.stderr)?;
    let connections = open(&spec).await?;
    loop {
        let report = read(&spec, &connections).await?;
        let text = if args.json {
            let mut json = serde_json::to_string_pretty(&report)?;
            json.push('\n');
            json
        } else {
            let clear = if args.watch.is_some() && colors.stdout {
                "\x1b[2J\x1b[H"
            } else {
                ""
            };
            format!("{clear}{}", render(&report, colors.stdout))
        };
        output::stdout(&text)?;
        match args.watch {
            Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
            None => {
                return Ok(if report.level == Level::Red {
                    Exit::Changes
                } else {
                    Exit::Success
                });
            }
        }
    }
}

async fn read(
    spec: &Desired,
    connections: &crate::live::Connections,
) -> anyhow::Result<StatusReport> {
    let facts = status::read(&spec.deployment, connections)
        .await
        .with_context(|| format!("cannot read deployment `{}`", spec.deployment.name))?;
    Ok(evaluate(
        &spec.deployment.name,
        facts,
        &spec.monitoring.thresholds,
    ))
}

/// One line per item: level, what, value. Names come from the live side,
/// so control characters are shown escaped.
pub fn render(report: &StatusReport, color: bool) -> String {
    let paint = Paint { color };
    let word = |level: Level| match level {
        Level::Green => paint.green(level.as_str()),
        Level::Yellow => paint.yellow(level.as_str()),
        Level::Red => paint.red(level.as_str()),
    };
    let level = |level: Level| format!("{}{}", word(level), " ".repeat(6 - level.as_str().len()));
    let width = report
        .lines
        .iter()
        .map(|line| line.section.len() + line.item.len() + 1)
        .max()
        .unwrap_or(0);
    let mut text = format!(
        "{} {}\n",
        paint.bold(&format!("Deployment `{}`:", printable(&report.deployment))),
        word(report.level)
    );
    for line in &report.lines {
        let what = format!("{} {}", line.section, line.item);
        text.push_str(&format!(
            "  {} {:<width$}  {}\n",
            level(line.level),
            printable(&what),
            printable(&line.text),
        ));
    }
    text
}
