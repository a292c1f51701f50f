//! The only writer to stdout: plan text, JSON, schema. Status lines and
//! logs go to stderr.

use std::io::{IsTerminal, Write};

/// Whether to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour on each stream that is a terminal, unless NO_COLOR is set.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Resolves `auto` for each stream on its own: a stream gets colour
    /// only when it is a terminal, and neither does with NO_COLOR.
    pub fn resolve(self) -> Colors {
        let auto = |terminal: bool| {
            terminal && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
        };
        match self {
            ColorChoice::Always => Colors {
                stdout: true,
                stderr: true,
            },
            ColorChoice::Never => Colors::default(),
            ColorChoice::Auto => Colors {
                stdout: auto(std::io::stdout().is_terminal()),
                stderr: auto(std::io::stderr().is_terminal()),
            },
        }
    }
}

/// Whether each output stream gets colour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Colors {
    /// Plans and reports.
    pub stdout: bool,
    /// Diagnostics, errors, logs and progress.
    pub stderr: bool,
}

/// Writes text to stdout as is.
pub fn stdout(text: &str) -> std::io::Result<()> {
    stdout_with(|out| out.write_all(text.as_bytes()))
}

/// Writes to stdout through `write`, which may write a large report piece
/// by piece.
pub fn stdout_with(
    write: impl FnOnce(&mut std::io::StdoutLock<'static>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    write(&mut out)?;
    out.flush()
}

/// Writes one status line to stderr (progress of an apply, prompts).
pub fn status(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}
