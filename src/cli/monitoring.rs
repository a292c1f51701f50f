//! `pgspec monitoring rules -f SPEC [--selector LABELS]`: the spec's
//! thresholds as a Prometheus alert rules file, on stdout. Reads the spec
//! only.

use clap::{Args, Subcommand};

use crate::cli::{Exit, SpecArg, load_spec};
use crate::model::monitoring::rules::alert_rules;
use crate::output;

#[derive(Debug, Args)]
pub struct MonitoringArgs {
    #[command(subcommand)]
    pub command: MonitoringCommand,
}

#[derive(Debug, Subcommand)]
pub enum MonitoringCommand {
    /// Print Prometheus alert rules with the spec's thresholds.
    Rules(RulesArgs),
}

#[derive(Debug, Args)]
pub struct RulesArgs {
    #[command(flatten)]
    pub spec: SpecArg,
    /// Label matchers put in every metric selector (`job="ledger"`), so the
    /// rules see this deployment's series only.
    #[arg(long, value_name = "MATCHERS", default_value = "")]
    pub selector: String,
}

pub fn run(args: &MonitoringArgs, color: bool) -> anyhow::Result<Exit> {
    match &args.command {
        MonitoringCommand::Rules(rules) => {
            if rules.selector.contains(['{', '}', '\n']) {
                anyhow::bail!(
                    "--selector takes label matchers without braces, such as `job=\"ledger\"`"
                );
            }
            let spec = load_spec(&rules.spec.file, color)?;
            output::stdout(&alert_rules(
                &spec.deployment,
                &spec.monitoring.thresholds,
                &rules.selector,
            ))?;
            Ok(Exit::Success)
        }
    }
}
