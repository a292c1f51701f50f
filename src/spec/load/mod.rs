//! Reading a spec file: parse it, remember where every key sits, and check
//! its shape against the JSON Schema of [`SpecFile`].
//!
//! Loading reports every independent problem in one run. YAML syntax errors
//! stop it at the parser's line and column. Otherwise the document is walked
//! against the schema that `schemars` generates, so that every unknown
//! field, missing field and type mismatch is reported with its key path and
//! span; the offending nodes are stripped and the rest is deserialized. When
//! the shape was wrong but the rest still makes a `SpecFile`, the semantic
//! checks of `spec::validate` run on it too, so that a user fixes everything
//! in one round.
//!
//! Reading the spec file is the only I/O here; no secret or environment
//! variable is read.
//!
//! `spans` records where each key and value sits, `schema` walks the
//! document against the schema; this module ties them together.

mod schema;
mod spans;
#[cfg(test)]
mod tests;
mod tree;

use std::path::{Path, PathBuf};

use serde_yaml::Value as Yaml;

pub use crate::diag::did_you_mean;
use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::spec::file::SpecFile;
use schema::Shape;
pub(crate) use schema::backticked;
use spans::collect_spans;
pub use spans::{SpanMap, join_index, join_key};

/// A spec file that parsed and has the shape of [`SpecFile`], with the text
/// it came from and where each key and value sits in it. Call
/// `validate()` (in `spec::validate`) to check its meaning and lower it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file as named on the command line.
    pub path: PathBuf,
    pub source: String,
    pub file: SpecFile,
    pub spans: SpanMap,
}

impl Loaded {
    /// Where the value at `path` sits, or the nearest enclosing node that has
    /// a known place.
    pub fn span(&self, path: &str) -> Option<Span> {
        self.spans.value(path)
    }

    /// Where the key of `path` sits (for "unknown field"-style findings).
    pub fn key_span(&self, path: &str) -> Option<Span> {
        self.spans.key(path)
    }

    /// An empty set of diagnostics for this file.
    pub fn diagnostics(&self) -> Diagnostics {
        Diagnostics::new(self.path.clone(), self.source.clone())
    }
}

/// Reads and loads a spec file. An unreadable file is a diagnostic naming
/// the file.
pub fn load(path: &Path) -> Result<Loaded, Diagnostics> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(path, &text),
        Err(error) => {
            let mut diagnostics = Diagnostics::new(path, String::new());
            diagnostics.push(Diagnostic::error(format!(
                "cannot read spec file `{}`: {error}",
                path.display()
            )));
            Err(diagnostics)
        }
    }
}

/// Loads a spec from text; `path` names it in diagnostics and is the base
/// for relative file references.
pub fn load_str(path: &Path, text: &str) -> Result<Loaded, Diagnostics> {
    // Editors on Windows may start a UTF-8 file with a byte order mark;
    // serde_yaml would take it for the start of a second document.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut diagnostics = Diagnostics::new(path, text);

    // Spans first: that pass also refuses a document nested too deep
    // before serde_yaml, whose scanner slows down with the depth, reads it.
    let (spans, tree) = match collect_spans(text) {
        Ok(found) => found,
        Err(too_deep) => {
            diagnostics.push(*too_deep);
            return Err(diagnostics);
        }
    };

    // The tree built in the same pass; serde_yaml reads the text only when
    // the builder gave up (see `tree`), so its errors stay as they were.
    let parsed = match tree {
        Some(document) => Ok(document),
        None => serde_yaml::from_str(text),
    };
    let mut document: Yaml = match parsed {
        Ok(document) => document,
        Err(error) => {
            diagnostics.push(super::syntax::syntax_error(&error, text));
            return Err(diagnostics);
        }
    };
    if let Err(error) = document.apply_merge() {
        diagnostics.push(super::syntax::syntax_error(&error, text));
        return Err(diagnostics);
    }

    let schema = match serde_json::to_value(schemars::schema_for!(SpecFile)) {
        Ok(schema) => schema,
        Err(error) => {
            diagnostics.push(Diagnostic::error(format!(
                "cannot build the spec schema: {error}; this is a bug in pgspec, please report it"
            )));
            return Err(diagnostics);
        }
    };
    let Shape {
        found,
        removed_elements,
    } = schema::check_shape(&schema, &mut document, &spans, text);
    let shape_errors = !found.is_empty();
    // A finding without a path is about the whole document.
    let reported: Vec<String> = found
        .iter()
        .map(|item| item.path.clone().unwrap_or_default())
        .collect();
    diagnostics.items.extend(found);

    let file = match serde_path_to_error::deserialize::<_, SpecFile>(document) {
        Ok(file) => Some(file),
        Err(error) => {
            let path = serde_path(error.path());
            // After a shape error, a failure here is usually its echo (a
            // stripped required field); report only what is new.
            let echo = reported
                .iter()
                .any(|seen| related_paths(seen, &path) || related_paths(&path, seen));
            if !shape_errors || !echo {
                let message = serde_message(&error.inner().to_string());
                diagnostics.push(
                    Diagnostic::error(message)
                        .at(path.clone())
                        .with_span(spans.value(&path)),
                );
            }
            None
        }
    };

    if let Some(file) = file {
        let loaded = Loaded {
            path: path.to_path_buf(),
            source: text.to_owned(),
            file,
            spans,
        };
        if !diagnostics.has_errors() {
            return Ok(loaded);
        }
        // Semantic checks still make sense when only whole fields were
        // stripped; when list elements were dropped, indices moved and the
        // checks would point at the wrong entries.
        if !removed_elements {
            diagnostics
                .items
                .extend(crate::spec::validate::check(&loaded));
        }
    }
    diagnostics.sort();
    Err(diagnostics)
}

/// `a` is `b` or encloses it.
fn related_paths(a: &str, b: &str) -> bool {
    a.is_empty()
        || b == a
        || b.strip_prefix(a)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// A serde path in pgspec's notation.
fn serde_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path {
        out = match segment {
            serde_path_to_error::Segment::Seq { index } => join_index(&out, *index),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => join_key(&out, key),
            serde_path_to_error::Segment::Unknown => join_key(&out, "?"),
        };
    }
    out
}

/// A serde message in pgspec's style: no " at line …" suffix.
fn serde_message(text: &str) -> String {
    match text.find(" at line ") {
        Some(start) => text[..start].to_owned(),
        None => text.to_owned(),
    }
}
