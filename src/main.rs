//! The `pgspec` binary: parse arguments, start tracing, run the command,
//! map the outcome to an exit code (0 done / in sync, 1 error, 2 changes).

// Only `output` writes to stdout, and logs go through tracing.
#![warn(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use pgspec::cli::{self, Cli};
use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

fn main() -> ExitCode {
    one_malloc_arena();
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
        .finish()
        .with(tracing_subscriber::filter::filter_fn(is_safe_to_log))
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
            if let Some(help) = error.chain().find_map(pgspec::live::help_for) {
                let _ = writeln!(err, "  help: {help}");
            }
            ExitCode::from(1)
        }
    }
}

/// Whether a log event or span may reach stderr, whatever `RUST_LOG` says:
/// pgspec's own at every level, other crates' only at INFO and above.
///
/// The crates pgspec talks through log what they send at DEBUG and TRACE:
/// bollard the body of every request (the archives that carry the
/// superuser's password file and the backup agent's pgpass), tokio-postgres
/// and postgres-protocol every statement (`ALTER ROLE … PASSWORD` with its
/// SCRAM verifier), hyper what it reads and writes. Redacting those
/// messages cannot be made reliable (a tar archive or a byte dump hides a
/// secret in any shape), and a new dependency would bring new leaks, so
/// their DEBUG and TRACE output is dropped outright; what they report at
/// INFO and above (warnings, errors) is about failures, not payloads.
fn is_safe_to_log(metadata: &tracing::Metadata<'_>) -> bool {
    let target = metadata.target();
    let ours = target == "pgspec" || target.starts_with("pgspec::");
    ours || *metadata.level() <= Level::INFO
}

/// Keeps glibc's allocator to one arena. By default each thread that
/// allocates gets an arena of its own: the observe that verifies an apply
/// runs on the runtime's worker threads, and memory the plan freed on the
/// main thread cannot serve it, so the process grows by what verify reads.
/// Measured on the benchmark's apply at N = 10 000: 104 MiB peak with an
/// arena per thread, 99 MiB with one, in the same time. pgspec's threads
/// mostly wait on the network; the allocator's lock is not contended.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; it is called
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
