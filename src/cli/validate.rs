//! `pgspec validate -f SPEC`: parse and check, no I/O beyond reading files.

use clap::Args;

use crate::cli::fleet::{self, SpecsArg};
use crate::cli::{Exit, load_spec};
use crate::output::{self, Colors};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub spec: SpecsArg,
}

pub fn run(args: &ValidateArgs, colors: Colors) -> anyhow::Result<Exit> {
    let specs = match args.spec.single() {
        Some(file) => vec![load_spec(file, colors.stderr)?],
        // A fleet: every spec, then no two claiming the same objects.
        None => fleet::load(&fleet::expand(&args.spec.files)?, colors.stderr)?
            .into_iter()
            .map(|(spec, _)| spec)
            .collect(),
    };
    for spec in specs {
        output::stdout(&format!(
            "{} is valid: deployment `{}`\n",
            spec.path.display(),
            spec.deployment.name
        ))?;
    }
    Ok(Exit::Success)
}
