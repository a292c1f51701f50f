//! The `pgspec` binary: parse arguments, start tracing, run the command,
//! map the outcome to an exit code (0 done / in sync, 1 error, 2 changes).

// Only `output` writes to stdout, and logs go through tracing.
#![warn(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use pgspec::cli::{self, Cli};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // A usage error exits 1, like every other error: 2 means changes
    // pending, and a typo in a CI gate must not read as drift. `--help`
    // and `--version` exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(u8::from(error.use_stderr()));
        }
    };
    let colors = cli.color.resolve();
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("pgspec={level},warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colors.stderr)
        .init();

    match cli::run(cli) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(error) => {
            let mut err = std::io::stderr().lock();
            // Errors quote names from the spec and the live side; an escape
            // sequence in one is shown, not sent to the terminal.
            let shown = |text: String| pgspec::diag::printable_lines(&text).into_owned();
            if let Some(reported) = error.downcast_ref::<cli::Reported>() {
                // Rendered diagnostics carry their own `error:` lines.
                let _ = writeln!(err, "{reported}");
                return ExitCode::from(1);
            }
            let _ = writeln!(err, "error: {}", shown(error.to_string()));
            for cause in error.chain().skip(1) {
                let _ = writeln!(err, "  caused by: {}", shown(cause.to_string()));
            }
            if let Some(help) = error
                .chain()
                .find_map(|cause| cause.downcast_ref::<pgspec::live::ObserveError>())
                .and_then(pgspec::live::ObserveError::help)
            {
                let _ = writeln!(err, "  help: {help}");
            }
            ExitCode::from(1)
        }
    }
}
