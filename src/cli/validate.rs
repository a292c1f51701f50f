//! `pgspec validate -f SPEC`: parse and check, no I/O beyond reading files.

use clap::Args;

use crate::cli::{Exit, SpecArg, load_spec};
use crate::output::{self, Colors};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub spec: SpecArg,
}

pub fn run(args: &ValidateArgs, colors: Colors) -> anyhow::Result<Exit> {
    let spec = load_spec(&args.spec.file, colors.stderr)?;
    output::stdout(&format!(
        "{} is valid: deployment `{}`\n",
        args.spec.file.display(),
        spec.deployment.name
    ))?;
    Ok(Exit::Success)
}
