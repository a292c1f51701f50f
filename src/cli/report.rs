//! How `plan`, `drift` and `show` print a plan: text for people, JSON for
//! scripts, Markdown for pull-request comments, and the Markdown appended
//! to GitHub Actions' step summary on request.

use std::io::Write as _;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::output;
use crate::plan::Plan;
use crate::plan::markdown::markdown;
use crate::plan::render::{self, TextOptions};

/// The format of a printed plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Terraform-style text.
    #[default]
    Text,
    /// The versioned JSON document (README, "JSON").
    Json,
    /// A pull-request comment: summary table, one collapsible section per
    /// action, size-capped.
    Markdown,
}

/// Options of every command that prints a plan.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// How to print the plan.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// List live objects the spec does not mention (text format).
    #[arg(long)]
    pub show_unmanaged: bool,
    /// Also append the plan as Markdown to the GitHub Actions step summary
    /// ($GITHUB_STEP_SUMMARY).
    #[arg(long)]
    pub github: bool,
}

impl ReportArgs {
    /// The options as given, for one run of a fleet.
    pub fn passed(&self) -> Vec<String> {
        let mut passed = Vec::new();
        match self.format() {
            Format::Json => passed.push("--json".to_owned()),
            Format::Markdown => passed.extend(["--format".to_owned(), "markdown".to_owned()]),
            Format::Text => {}
        }
        if self.show_unmanaged {
            passed.push("--show-unmanaged".to_owned());
        }
        if self.github {
            passed.push("--github".to_owned());
        }
        passed
    }

    pub fn format(&self) -> Format {
        if self.json { Format::Json } else { self.format }
    }

    /// Prints the plan; `heading` goes above the text format (drift's
    /// "Drift: …" line).
    pub fn print(&self, plan: &Plan, color: bool, heading: Option<&str>) -> anyhow::Result<()> {
        match self.format() {
            Format::Json => output::stdout(&render::json(plan))?,
            Format::Markdown => output::stdout(&markdown(plan))?,
            Format::Text => {
                let options = TextOptions {
                    color,
                    show_unmanaged: self.show_unmanaged,
                };
                output::stdout_with(|out| {
                    if let Some(heading) = heading {
                        writeln!(out, "{heading}\n")?;
                    }
                    render::write_text(plan, options, out)
                })?;
            }
        }
        if self.github {
            append_step_summary(plan)?;
        }
        Ok(())
    }
}

/// Appends the Markdown plan to the file GitHub Actions names in
/// `GITHUB_STEP_SUMMARY`; outside GitHub Actions, says so and does nothing.
fn append_step_summary(plan: &Plan) -> anyhow::Result<()> {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|path| !path.is_empty()) else {
        tracing::warn!("--github: GITHUB_STEP_SUMMARY is not set, so there is no step summary");
        return Ok(());
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| {
            format!(
                "cannot open the step summary `{}`",
                std::path::Path::new(&path).display()
            )
        })?;
    writeln!(file, "{}", markdown(plan)).context("cannot write the step summary")
}

/// Whether pgspec runs in GitHub Actions.
pub fn in_github_actions() -> bool {
    std::env::var_os("GITHUB_ACTIONS").is_some_and(|value| value == "true")
}
