//! Diagnostics about a spec file and their rustc-style rendering.
//!
//! A [`Diagnostic`] is one finding (an error or a warning) with the key path
//! it is about and, when known, the span in the file. [`Diagnostics`] holds
//! every finding for one file together with its text, so it can render the
//! offending lines. Rendering is pure: it returns a string and never writes
//! anywhere; `output` decides where it goes and whether colour is on.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use unicode_width::UnicodeWidthChar;

/// `text` with every control character escaped (`\n`, `\u{1b}`), so that a
/// name read from a spec or from the live side stays data on a terminal: an
/// escape sequence in a role's name cannot recolour, move the cursor or
/// rewrite what the user reads, and a newline cannot forge a line.
pub fn printable(text: &str) -> Cow<'_, str> {
    escape_controls(text, |_| true)
}

/// Like [`printable`], but keeps newlines (and tabs) for text that is shown
/// over several lines.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    escape_controls(text, |character| !matches!(character, '\n' | '\t'))
}

fn escape_controls(text: &str, escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    let needs = |character: char| character.is_control() && escape(character);
    if !text.chars().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for character in text.chars() {
        if needs(character) {
            shown.extend(character.escape_default());
        } else {
            shown.push(character);
        }
    }
    Cow::Owned(shown)
}

/// How bad a finding is. Errors stop the pipeline; warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A place in the file: 1-based line and column, length in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub line: usize,
    pub column: usize,
    pub length: usize,
}

/// One finding about a spec file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Lowercase, no trailing period, names in backticks.
    pub message: String,
    /// Key path such as `databases[0].owner`.
    pub path: Option<String>,
    pub span: Option<Span>,
    /// Short text printed after the carets (`expected one of …`).
    pub label: Option<String>,
    /// What the user can do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            path: None,
            span: None,
            label: None,
            help: None,
        }
    }

    pub fn warning(message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(message)
        }
    }

    /// Sets the key path the finding is about.
    pub fn at(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    pub fn with_span(mut self, span: Option<Span>) -> Self {
        self.span = span;
        self
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Every finding about one file, with the file's text for rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    /// The file as named on the command line.
    pub file: PathBuf,
    pub source: String,
    pub items: Vec<Diagnostic>,
}

/// How many findings are rendered; the summary counts the rest. A spec with
/// tens of thousands of broken entries would otherwise print a screen per
/// entry, and the first hundred say what is wrong.
pub const MAX_RENDERED: usize = 100;

/// ANSI styles, or nothing when colour is off.
struct Palette {
    color: bool,
}

impl Palette {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color && !text.is_empty() {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn severity(&self, severity: Severity) -> String {
        self.marker(severity, severity.as_str())
    }

    fn marker(&self, severity: Severity, text: &str) -> String {
        match severity {
            Severity::Error => self.paint("1;31", text),
            Severity::Warning => self.paint("1;33", text),
        }
    }

    fn gutter(&self, text: &str) -> String {
        self.paint("1;34", text)
    }

    fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }
}

impl Diagnostics {
    pub fn new(file: impl Into<PathBuf>, source: impl Into<String>) -> Self {
        Diagnostics {
            file: file.into(),
            source: source.into(),
            items: Vec::new(),
        }
    }

    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    /// Number of errors.
    pub fn errors(&self) -> usize {
        self.items.iter().filter(|item| item.is_error()).count()
    }

    /// Number of warnings.
    pub fn warnings(&self) -> usize {
        self.items.len() - self.errors()
    }

    /// Orders the findings by where they are in the file; findings without a
    /// span keep their relative order and come first.
    pub fn sort(&mut self) {
        self.items
            .sort_by_key(|item| item.span.map(|span| (span.line, span.column)));
    }

    /// Renders the first [`MAX_RENDERED`] findings rustc-style, says how
    /// many more there are, then a summary line when there is more than
    /// one. ANSI colour only when `color` is true.
    pub fn render(&self, color: bool) -> String {
        let palette = Palette { color };
        let lines: Vec<&str> = self.source.lines().collect();
        let mut out = String::new();
        for (position, item) in self.items.iter().take(MAX_RENDERED).enumerate() {
            if position > 0 {
                out.push('\n');
            }
            self.render_one(&mut out, item, &lines, &palette);
        }
        if let Some(more) = self
            .items
            .len()
            .checked_sub(MAX_RENDERED)
            .filter(|more| *more > 0)
        {
            out.push_str(&format!("\n… and {more} more not shown\n"));
        }
        let errors = self.errors();
        let warnings = self.warnings();
        if errors + warnings > 1 {
            let file = self.file.display();
            let counted = |count: usize, noun: &str| {
                if count == 1 {
                    format!("1 {noun}")
                } else {
                    format!("{count} {noun}s")
                }
            };
            let summary = match (errors, warnings) {
                (0, warnings) => format!("{} in {file}", counted(warnings, "warning")),
                (errors, 0) => format!("{} in {file}", counted(errors, "error")),
                (errors, warnings) => format!(
                    "{} and {} in {file}",
                    counted(errors, "error"),
                    counted(warnings, "warning")
                ),
            };
            let severity = if errors > 0 {
                Severity::Error
            } else {
                Severity::Warning
            };
            out.push('\n');
            out.push_str(&format!(
                "{}{}\n",
                palette.severity(severity),
                palette.bold(&format!(": {summary}"))
            ));
        }
        out
    }

    /// Every finding as a GitHub Actions workflow command
    /// (`::error file=…,line=…,col=…::message`), one per line, so that the
    /// pull request shows it on the line it is about.
    pub fn github_annotations(&self) -> String {
        let mut out = String::new();
        let file = escape_property(&self.file.display().to_string());
        for item in &self.items {
            let command = match item.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let mut properties = format!("file={file}");
            if let Some(span) = item.span {
                properties.push_str(&format!(",line={},col={}", span.line, span.column));
            }
            let mut message = item.message.clone();
            if let Some(path) = &item.path {
                message.push_str(&format!(" ({path})"));
            }
            if let Some(help) = &item.help {
                message.push_str(&format!("\nhelp: {help}"));
            }
            out.push_str(&format!(
                "::{command} {properties}::{}\n",
                escape_data(&message)
            ));
        }
        out
    }

    fn render_one(&self, out: &mut String, item: &Diagnostic, lines: &[&str], palette: &Palette) {
        out.push_str(&format!(
            "{}{}\n",
            palette.severity(item.severity),
            palette.bold(&format!(": {}", printable(&item.message)))
        ));
        // The source line is shown only when the span points into the file.
        let shown = item
            .span
            .and_then(|span| Some((span, *lines.get(span.line.checked_sub(1)?)?)));
        let width = shown.map_or(1, |(span, _)| span.line.to_string().len());
        let pad = " ".repeat(width);

        let mut location = self.file.display().to_string();
        if let Some(span) = item.span {
            location.push_str(&format!(":{}:{}", span.line, span.column));
        }
        if let Some(path) = item.path.as_deref().filter(|path| !path.is_empty()) {
            location.push_str(&format!("  ({path})"));
        }
        out.push_str(&format!("{pad}{} {location}\n", palette.gutter("-->")));

        if let Some((span, text)) = shown {
            let text = printable_lines(text.trim_end_matches('\r'));
            let text = text.as_ref();
            out.push_str(&format!("{pad} {}\n", palette.gutter("|")));
            out.push_str(&format!(
                "{} {}",
                palette.gutter(&format!("{:>width$}", span.line)),
                palette.gutter("|")
            ));
            // An empty source line leaves no trailing blank after the gutter.
            if !text.is_empty() {
                out.push(' ');
                out.push_str(text);
            }
            out.push('\n');
            let line_length = text.chars().count();
            let start = span.column.max(1) - 1;
            let length = span
                .length
                .max(1)
                .min(line_length.saturating_sub(start).max(1));
            // Columns count characters; a terminal shows a wide character
            // (CJK, most emoji) in two cells. Keep tabs so the carets line
            // up under tab-indented text, and pad each other character by
            // its width.
            let indent: String = text
                .chars()
                .take(start)
                .map(|character| match character {
                    '\t' => "\t".to_owned(),
                    other => " ".repeat(UnicodeWidthChar::width(other).unwrap_or(0)),
                })
                .collect();
            let marked: usize = text
                .chars()
                .skip(start)
                .take(length)
                .map(|character| UnicodeWidthChar::width(character).unwrap_or(0))
                .sum();
            let mut marker_line = format!(
                "{pad} {} {indent}{}",
                palette.gutter("|"),
                palette.marker(item.severity, &"^".repeat(marked.max(1)))
            );
            if let Some(label) = &item.label {
                marker_line.push(' ');
                marker_line.push_str(&palette.marker(item.severity, &printable(label)));
            }
            out.push_str(&marker_line);
            out.push('\n');
        }
        if let Some(help) = &item.help {
            let help = printable(help);
            out.push_str(&format!(
                "{pad} {} {}: {help}\n",
                palette.gutter("="),
                palette.bold("help")
            ));
        }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for Diagnostics {}

/// The candidate closest to `given`, when one is close enough to be a typo.
pub fn did_you_mean<'a>(
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let given_lower = given.to_lowercase();
    let limit = (given.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|candidate| {
            let distance = if candidate.to_lowercase() == given_lower {
                0
            } else {
                strsim::damerau_levenshtein(&given_lower, &candidate.to_lowercase())
            };
            (distance, candidate)
        })
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// A workflow command's message: `%`, CR and LF escaped, as the runner
/// expects.
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: also `:` and `,`.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Diagnostics {
        let source =
            "version: 1\nname: ledger\ndatabases:\n  - name: somali_nlp\n    ownr: somali\n";
        let mut diagnostics = Diagnostics::new("specs/prod.yaml", source);
        diagnostics.push(
            Diagnostic::error("unknown field `ownr`")
                .at("databases[0].ownr")
                .with_span(Some(Span {
                    line: 5,
                    column: 5,
                    length: 4,
                }))
                .with_label("expected one of `name`, `owner`")
                .with_help("did you mean `owner`?"),
        );
        diagnostics
    }

    #[test]
    fn renders_like_rustc() {
        assert_eq!(
            sample().render(false),
            "error: unknown field `ownr`\n \
             --> specs/prod.yaml:5:5  (databases[0].ownr)\n  \
             |\n\
             5 |     ownr: somali\n  \
             |     ^^^^ expected one of `name`, `owner`\n  \
             = help: did you mean `owner`?\n"
        );
    }

    #[test]
    fn wide_line_numbers_widen_the_gutter() {
        let source = "x\n".repeat(13) + "    ownr: somali\n";
        let mut diagnostics = Diagnostics::new("specs/prod.yaml", source);
        diagnostics.push(
            Diagnostic::error("unknown field `ownr`").with_span(Some(Span {
                line: 14,
                column: 5,
                length: 4,
            })),
        );
        assert_eq!(
            diagnostics.render(false),
            "error: unknown field `ownr`\n  \
             --> specs/prod.yaml:14:5\n   \
             |\n\
             14 |     ownr: somali\n   \
             |     ^^^^\n"
        );
    }

    #[test]
    fn summary_counts_errors_and_warnings() {
        let mut diagnostics = sample();
        diagnostics.push(Diagnostic::error("`version` must be 1").at("version"));
        diagnostics.push(Diagnostic::warning("pool may exceed `max_connections`"));
        assert_eq!(diagnostics.errors(), 2);
        assert_eq!(diagnostics.warnings(), 1);
        assert!(diagnostics.has_errors());
        let text = diagnostics.to_string();
        assert!(text.contains("\n\nerror: `version` must be 1\n --> specs/prod.yaml  (version)\n"));
        assert!(
            text.ends_with("\nerror: 2 errors and 1 warning in specs/prod.yaml\n"),
            "{text}"
        );
    }

    #[test]
    fn only_the_first_hundred_findings_are_rendered() {
        let mut diagnostics = Diagnostics::new("f.yaml", "name: x\n");
        for index in 0..MAX_RENDERED + 5 {
            diagnostics.push(Diagnostic::error(format!("finding {index}")));
        }
        let text = diagnostics.render(false);
        assert!(text.contains("error: finding 99\n"), "{text}");
        assert!(!text.contains("finding 100"), "{text}");
        assert!(
            text.ends_with("\n… and 5 more not shown\n\nerror: 105 errors in f.yaml\n"),
            "{text}"
        );
    }

    #[test]
    fn colour_only_when_asked() {
        assert!(!sample().render(false).contains('\x1b'));
        let coloured = sample().render(true);
        assert!(coloured.starts_with("\x1b[1;31merror\x1b[0m"));
        assert!(coloured.contains("\x1b[1;34m-->\x1b[0m"));
    }

    #[test]
    fn span_past_the_end_of_the_line_is_clamped() {
        let mut diagnostics = Diagnostics::new("f.yaml", "name: x\n");
        diagnostics.push(Diagnostic::warning("odd").with_span(Some(Span {
            line: 1,
            column: 7,
            length: 40,
        })));
        assert!(
            diagnostics
                .render(false)
                .contains("1 | name: x\n  |       ^\n")
        );
    }

    /// Issue 15: a spec line or message with an escape sequence or a
    /// newline in it stays data on the terminal.
    #[test]
    fn control_characters_are_printed_escaped() {
        assert_eq!(printable("plain `name`"), "plain `name`");
        assert_eq!(printable("a\u{1b}[2Jb\nc\0"), "a\\u{1b}[2Jb\\nc\\u{0}");
        assert_eq!(printable_lines("a\u{7}\n\tb"), "a\\u{7}\n\tb");
        let mut diagnostics = Diagnostics::new("spec.yaml", "name: \"x\u{1b}[31m\"\n");
        diagnostics.push(
            Diagnostic::error("bad name `x\u{1b}[31m`")
                .at("name")
                .with_span(Some(Span {
                    line: 1,
                    column: 7,
                    length: 3,
                }))
                .with_help("rename `x\u{1b}[31m`"),
        );
        let rendered = diagnostics.render(false);
        assert!(!rendered.contains('\u{1b}'), "{rendered:?}");
        assert!(rendered.contains("bad name `x\\u{1b}[31m`"), "{rendered}");
    }
}
