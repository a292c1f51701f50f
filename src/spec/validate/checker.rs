//! The shared plumbing of the semantic checks: the `Checker` that gathers
//! every finding with its key path and span, and the checks of names,
//! numbers and ports that every section of the spec uses. Each section's
//! checks live in the sibling module named after it.

use std::collections::BTreeMap;

use crate::diag::Diagnostic;
use crate::spec::expression;
use crate::spec::file::SpecFile;
use crate::spec::load::{Loaded, backticked, did_you_mean};

/// PostgreSQL keeps NAMEDATALEN - 1 bytes of an identifier.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Docker object names must match `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub(super) fn is_docker_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric())
        && characters.all(|character| {
            character.is_ascii_alphanumeric() || matches!(character, '_' | '.' | '-')
        })
}

/// Every semantic finding about a loaded spec, errors and warnings alike.
pub(crate) fn check(loaded: &Loaded) -> Vec<Diagnostic> {
    let mut checker = Checker {
        loaded,
        found: Vec::new(),
    };
    checker.check_all(&loaded.file);
    checker.found
}

/// Gathers the findings about one loaded spec; every section's checks are
/// its methods.
pub(super) struct Checker<'a> {
    loaded: &'a Loaded,
    /// Errors and warnings, in the order they were found.
    pub(super) found: Vec<Diagnostic>,
}

impl Checker<'_> {
    pub(super) fn error(&mut self, path: &str, message: impl Into<String>) -> &mut Diagnostic {
        self.push(path, Diagnostic::error(message))
    }

    pub(super) fn warning(&mut self, path: &str, message: impl Into<String>) -> &mut Diagnostic {
        self.push(path, Diagnostic::warning(message))
    }

    /// Records a finding about `path`, where the spec has it.
    fn push(&mut self, path: &str, diagnostic: Diagnostic) -> &mut Diagnostic {
        let diagnostic = diagnostic.at(path).with_span(self.loaded.span(path));
        self.found.push(diagnostic);
        self.found.last_mut().expect("just pushed")
    }

    /// `given` is none of `choices`: an error whose label lists them and
    /// whose help names the close one among `spellings`, if one is close.
    pub(super) fn error_with_choices<'a>(
        &mut self,
        path: &str,
        message: String,
        given: &str,
        choices: &[&str],
        spellings: impl IntoIterator<Item = &'a str>,
    ) {
        let suggestion = did_you_mean(given, spellings).map(str::to_owned);
        let diagnostic = self.error(path, message);
        diagnostic.label = Some(format!(
            "expected one of {}",
            backticked(choices.iter().copied())
        ));
        if let Some(suggestion) = suggestion {
            diagnostic.help = Some(format!("did you mean `{suggestion}`?"));
        }
    }

    pub(super) fn check_all(&mut self, file: &SpecFile) {
        if file.version != 1 {
            self.error(
                "version",
                format!("unsupported spec version `{}`", file.version),
            )
            .help = Some("only version 1 exists".to_owned());
        }
        if !is_docker_name(&file.name) {
            let message = if file.name.is_empty() {
                "deployment name is empty".to_owned()
            } else {
                format!("deployment name `{}` is not a valid Docker name", file.name)
            };
            self.error("name", message).help = Some(
                "use letters, digits, `_`, `.` and `-`, starting with a letter or digit; \
                 the name prefixes container and volume names"
                    .to_owned(),
            );
        }

        let known_roles = self.known_roles(file);
        self.check_postgres(file);
        self.check_roles(file, &known_roles);
        self.check_databases(file, &known_roles);
        self.check_preload(file);
        if let Some(pooler) = &file.pooler {
            self.check_pooler(file, pooler);
        }
        if let Some(backup) = &file.backup {
            self.check_backup(file, backup);
        }
        if let Some(monitoring) = &file.monitoring {
            self.check_monitoring(file, monitoring);
        }
        self.check_access(file);
        self.check_replicas(file);
    }

    /// Empty names, names PostgreSQL would truncate, and names with
    /// control characters.
    pub(super) fn check_identifier(&mut self, path: &str, name: &str, what: &str) {
        if name.is_empty() {
            self.error(path, format!("{what} name is empty"));
            return;
        }
        if !self.check_no_control(path, name, what) {
            return;
        }
        if name.len() > MAX_IDENTIFIER_BYTES {
            let mut cut = MAX_IDENTIFIER_BYTES;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            self.error(
                path,
                format!(
                    "{what} name `{name}` is {} bytes long; PostgreSQL keeps at most {MAX_IDENTIFIER_BYTES}",
                    name.len()
                ),
            )
            .help = Some(format!(
                "shorten it; PostgreSQL would silently truncate it to `{}`",
                &name[..cut]
            ));
        }
    }

    /// A name with a NUL, a newline or an escape sequence would break the
    /// lines of `pgbouncer.ini`, the auth file, logs and the terminal
    /// (PostgreSQL cannot store NUL at all). Returns whether `name` is clean.
    pub(super) fn check_no_control(&mut self, path: &str, name: &str, what: &str) -> bool {
        let Some(character) = expression::control_character(name) else {
            return true;
        };
        self.error(
            path,
            format!(
                "{what} name `{}` holds the control character {}",
                name.escape_default(),
                expression::escape_char(character)
            ),
        )
        .help = Some(
            "names may not contain NUL, newlines, escapes or other control characters".to_owned(),
        );
        false
    }

    /// A name a list declares: a valid identifier, and not declared before
    /// in the same list (`seen`).
    pub(super) fn check_name(
        &mut self,
        seen: &mut BTreeMap<String, String>,
        path: &str,
        name: &str,
        what: &str,
    ) {
        self.check_identifier(path, name, what);
        self.check_duplicate(seen, path, name, what);
    }

    pub(super) fn check_duplicate(
        &mut self,
        seen: &mut BTreeMap<String, String>,
        path: &str,
        name: &str,
        what: &str,
    ) {
        if name.is_empty() {
            return;
        }
        if let Some(first) = seen.get(name) {
            let first = first.clone();
            self.error(path, format!("duplicate {what} `{name}`")).help =
                Some(format!("`{name}` is already declared at {first}"));
        } else {
            seen.insert(name.to_owned(), path.to_owned());
        }
    }

    pub(super) fn check_port(&mut self, path: &str, port: Option<i64>) {
        if let Some(port) = port
            && !(1..=65535).contains(&port)
        {
            self.error(path, format!("port `{port}` is out of range"))
                .label = Some("expected 1 to 65535".to_owned());
        }
    }

    pub(super) fn check_at_least(
        &mut self,
        path: &str,
        value: Option<i64>,
        minimum: i64,
        what: &str,
    ) {
        if let Some(value) = value
            && value < minimum
        {
            self.error(path, format!("{what} `{value}` is below {minimum}"));
        }
    }
}
