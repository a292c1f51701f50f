//! `pgspec completions SHELL` and `pgspec man`: shell completion scripts
//! and the manual page, both generated from the clap definitions, so they
//! never disagree with the commands.

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::{Cli, Exit};
use crate::output;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for (bash, zsh, fish, elvish, powershell).
    #[arg(value_enum)]
    pub shell: Shell,
}

pub fn completions(args: &CompletionsArgs) -> anyhow::Result<Exit> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "pgspec", &mut script);
    output::stdout(&String::from_utf8_lossy(&script))?;
    Ok(Exit::Success)
}

/// The manual page (roff), for `man -l -` or to install as `pgspec.1`.
pub fn man() -> anyhow::Result<Exit> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .context("cannot render the manual page")?;
    output::stdout(&String::from_utf8_lossy(&page))?;
    Ok(Exit::Success)
}
