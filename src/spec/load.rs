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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value as Schema;
use serde_yaml::Value as Yaml;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

pub use crate::diag::did_you_mean;
use crate::diag::{Diagnostic, Diagnostics, Span};
use crate::spec::file::SpecFile;

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

/// Spans of keys and values by key path (`databases[0].extensions[1].name`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanMap {
    /// One entry per path, holding both spans: a mapping entry's key and
    /// value share their path, and a large spec has hundreds of thousands.
    paths: BTreeMap<String, Spans>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Spans {
    key: Option<Span>,
    value: Option<Span>,
}

impl SpanMap {
    /// The value's span, else the key's, else the nearest ancestor's value.
    pub fn value(&self, path: &str) -> Option<Span> {
        let mut current = Some(path);
        while let Some(path) = current {
            if let Some(span) = self
                .paths
                .get(path)
                .and_then(|spans| spans.value.or(spans.key))
            {
                return Some(span);
            }
            current = parent(path);
        }
        None
    }

    /// The key's span, else the value's, else the nearest ancestor's.
    pub fn key(&self, path: &str) -> Option<Span> {
        match self.paths.get(path).and_then(|spans| spans.key) {
            Some(span) => Some(span),
            None => self.value(path),
        }
    }

    /// Every key path that has a key span, in order.
    pub fn key_paths(&self) -> impl Iterator<Item = &str> {
        self.paths
            .iter()
            .filter(|(_, spans)| spans.key.is_some())
            .map(|(path, _)| path.as_str())
    }

    fn record_key(&mut self, path: String, span: Span) {
        self.paths.entry(path).or_default().key.get_or_insert(span);
    }

    fn record_value(&mut self, path: String, span: Span) {
        self.paths
            .entry(path)
            .or_default()
            .value
            .get_or_insert(span);
    }
}

/// The path of a mapping entry: `parent.key`, or `parent["odd key"]` when
/// the key is not a plain word (setting names such as
/// `pg_stat_statements.track` contain dots).
pub fn join_key(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|character| character.is_alphanumeric() || character == '_' || character == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{key:?}]"),
    }
}

/// The path of a sequence element: `parent[index]`.
pub fn join_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The enclosing path, `None` for the root (`""`).
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with("\"]") {
        return path.rfind("[\"").map(|start| &path[..start]);
    }
    if path.ends_with(']') {
        return path.rfind('[').map(|start| &path[..start]);
    }
    Some(path.rfind('.').map_or("", |dot| &path[..dot]))
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
    let spans = match collect_spans(text) {
        Ok(spans) => spans,
        Err(too_deep) => {
            diagnostics.push(*too_deep);
            return Err(diagnostics);
        }
    };

    let mut document: Yaml = match serde_yaml::from_str(text) {
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
    let mut walker = SchemaWalker {
        root: &schema,
        spans: &spans,
        source: text,
        found: Vec::new(),
        removed_elements: false,
    };
    walker.walk_root(&mut document);
    let SchemaWalker {
        found,
        removed_elements,
        ..
    } = walker;
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

    match file {
        Some(file) if !diagnostics.has_errors() => Ok(Loaded {
            path: path.to_path_buf(),
            source: text.to_owned(),
            file,
            spans,
        }),
        Some(file) => {
            // Semantic checks still make sense when only whole fields were
            // stripped; when list elements were dropped, indices moved and
            // the checks would point at the wrong entries.
            if !removed_elements {
                let loaded = Loaded {
                    path: path.to_path_buf(),
                    source: text.to_owned(),
                    file,
                    spans,
                };
                diagnostics
                    .items
                    .extend(crate::spec::validate::check(&loaded));
            }
            diagnostics.sort();
            Err(diagnostics)
        }
        None => {
            diagnostics.sort();
            Err(diagnostics)
        }
    }
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

// ---------------------------------------------------------------------------
// Spans: a second pass over the text with yaml-rust2's marked events.

/// Records the span of every key and value by key path.
/// How deep mappings and sequences may nest. A spec nests about eight
/// levels; serde_yaml gives up at 128, and both YAML scanners take time in
/// proportion to the depth for every token, so a document nested a hundred
/// thousand levels deep would take minutes to be refused.
const MAX_DEPTH: usize = 64;

/// Where the text opens more than [`MAX_DEPTH`] flow collections (`[`,
/// `{`) that are not yet closed, as a 1-based line and column.
///
/// Both YAML scanners look ahead through every nested flow collection
/// before they return the first event, so a hundred thousand `[` must be
/// refused before either parser sees them. Brackets in quoted or plain
/// scalars and comments count too: a spec would need dozens of unclosed
/// ones in its text for this to refuse it wrongly.
fn flow_too_deep(text: &str) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut line = 1;
    let mut column = 0;
    for character in text.chars() {
        column += 1;
        match character {
            '\n' => {
                line += 1;
                column = 0;
            }
            '[' | '{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some((line, column));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// The error for a document nested deeper than [`MAX_DEPTH`].
fn too_deep(line: usize, column: usize) -> Diagnostic {
    Diagnostic::error(format!("the spec nests deeper than {MAX_DEPTH} levels"))
        .with_span(Some(Span {
            line,
            column,
            length: 1,
        }))
        .with_help("a spec nests a few levels; check the brackets and indentation")
}

/// Records the span of every key and value of the first document, or
/// refuses a document nested deeper than [`MAX_DEPTH`]. Events are read one
/// at a time (yaml-rust2's own loader recurses once per level).
fn collect_spans(text: &str) -> Result<SpanMap, Box<Diagnostic>> {
    if let Some((line, column)) = flow_too_deep(text) {
        return Err(Box::new(too_deep(line, column)));
    }
    let mut collector = SpanCollector {
        lines: text.lines().collect(),
        line_chars: (usize::MAX, Vec::new()),
        stack: Vec::new(),
        spans: SpanMap::default(),
        done: false,
    };
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    // A syntax error stops the pass; serde_yaml reports it. Should the two
    // parsers disagree, spans recorded so far are still right and the rest
    // fall back to their ancestors.
    while !collector.done
        && let Ok((event, mark)) = parser.next_token()
    {
        match event {
            Event::StreamEnd => break,
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Box::new(too_deep(mark.line(), mark.col() + 1)));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
        collector.on_event(event, mark);
    }
    Ok(collector.spans)
}

enum Frame {
    /// A mapping; `key` is set while its value is awaited.
    Map {
        path: String,
        key: Option<String>,
    },
    Sequence {
        path: String,
        index: usize,
    },
}

enum Node<'a> {
    Scalar(&'a str, TScalarStyle),
    Mapping,
    Sequence,
    Alias,
}

struct SpanCollector<'a> {
    lines: Vec<&'a str>,
    /// The characters of the line last looked at, by index: nodes arrive in
    /// line order, so each line is decoded about once.
    line_chars: (usize, Vec<char>),
    stack: Vec<Frame>,
    spans: SpanMap,
    /// The first document has ended; later ones are ignored.
    done: bool,
}

impl MarkedEventReceiver for SpanCollector<'_> {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.done {
            return;
        }
        match event {
            Event::Scalar(ref value, style, _, _) => self.node(Node::Scalar(value, style), mark),
            Event::SequenceStart(..) => self.node(Node::Sequence, mark),
            Event::MappingStart(..) => self.node(Node::Mapping, mark),
            Event::Alias(_) => self.node(Node::Alias, mark),
            Event::SequenceEnd | Event::MappingEnd => {
                self.stack.pop();
                self.finish();
            }
            Event::DocumentEnd => self.done = true,
            _ => {}
        }
    }
}

impl SpanCollector<'_> {
    fn node(&mut self, node: Node<'_>, mark: Marker) {
        let span = self.span_at(mark, &node);
        // Where this node sits: a mapping key, or a value at some path.
        let value_path = match self.stack.last_mut() {
            None => String::new(),
            Some(Frame::Map { path, key: None }) => {
                let parent = path.clone();
                match node {
                    Node::Scalar(text, _) => {
                        let key_path = join_key(&parent, text);
                        self.spans.record_key(key_path, span);
                        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                            *key = Some(text.to_owned());
                        }
                    }
                    // A complex key: its insides have no useful path.
                    Node::Mapping => self.stack.push(Frame::Map {
                        path: join_key(&parent, "?key"),
                        key: None,
                    }),
                    Node::Sequence => self.stack.push(Frame::Sequence {
                        path: join_key(&parent, "?key"),
                        index: 0,
                    }),
                    Node::Alias => {
                        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                            *key = Some("?".to_owned());
                        }
                    }
                }
                return;
            }
            Some(Frame::Map {
                path,
                key: Some(key),
            }) => join_key(path, key),
            Some(Frame::Sequence { path, index }) => join_index(path, *index),
        };
        self.spans.record_value(value_path.clone(), span);
        match node {
            Node::Mapping => self.stack.push(Frame::Map {
                path: value_path,
                key: None,
            }),
            Node::Sequence => self.stack.push(Frame::Sequence {
                path: value_path,
                index: 0,
            }),
            Node::Scalar(..) | Node::Alias => self.finish(),
        }
    }

    /// A value is complete: its mapping awaits the next key, its sequence
    /// the next element.
    fn finish(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => {
                *key = match key {
                    // A complex key just ended; its value comes next.
                    None => Some("?".to_owned()),
                    Some(_) => None,
                };
            }
            Some(Frame::Sequence { index, .. }) => *index += 1,
            None => {}
        }
    }

    /// The span of the node starting at `mark`: a scalar (plain or quoted),
    /// a flow collection up to its closing bracket, an alias, or the first
    /// key of a block mapping.
    fn span_at(&mut self, mark: Marker, node: &Node<'_>) -> Span {
        let line_index = mark.line().saturating_sub(1);
        let (cached_index, line) = &mut self.line_chars;
        if *cached_index != line_index {
            line.clear();
            line.extend(self.lines.get(line_index).copied().unwrap_or("").chars());
            *cached_index = line_index;
        }
        let line = &*line;
        let mut start = mark.col().min(line.len());
        // Anchors and tags come before the node itself.
        while start < line.len() && (line[start] == '&' || line[start] == '!') {
            while start < line.len() && !line[start].is_whitespace() {
                start += 1;
            }
            while start < line.len() && line[start].is_whitespace() {
                start += 1;
            }
        }
        // A block mapping starts at its first key's `:`; point at the key.
        if matches!(node, Node::Mapping) && line.get(start) == Some(&':') {
            let mut key_start = 0;
            loop {
                while key_start < start && line[key_start].is_whitespace() {
                    key_start += 1;
                }
                let entry_marker = line.get(key_start) == Some(&'-')
                    && line.get(key_start + 1).is_none_or(|c| c.is_whitespace());
                if key_start < start && entry_marker {
                    key_start += 1;
                } else {
                    break;
                }
            }
            start = key_start;
        }
        let rest = &line[start..];
        let length = match (rest.first(), node) {
            (None, _) => 1,
            (Some('"'), _) => quoted_length(rest, '"'),
            (Some('\''), _) => quoted_length(rest, '\''),
            (Some('{'), _) | (Some('['), _) => bracket_length(rest),
            (Some('*'), _) | (Some('|'), _) | (Some('>'), _) => rest
                .iter()
                .take_while(|character| !character.is_whitespace())
                .count(),
            (Some('-'), Node::Sequence) if rest.get(1).is_none_or(|c| c.is_whitespace()) => 1,
            (_, Node::Scalar(value, TScalarStyle::Plain))
                if !value.is_empty() && rest.starts_with(&value.chars().collect::<Vec<_>>()) =>
            {
                value.chars().count()
            }
            _ => plain_length(rest),
        };
        Span {
            line: mark.line(),
            column: start + 1,
            length: length.max(1),
        }
    }
}

/// Length of a quoted scalar on its line, closing quote included.
fn quoted_length(rest: &[char], quote: char) -> usize {
    let mut position = 1;
    while position < rest.len() {
        let character = rest[position];
        if quote == '"' && character == '\\' {
            position += 2;
            continue;
        }
        if character == quote {
            if quote == '\'' && rest.get(position + 1) == Some(&'\'') {
                position += 2;
                continue;
            }
            return position + 1;
        }
        position += 1;
    }
    rest.len()
}

/// Length of a flow collection on its line, closing bracket included; 1 when
/// it continues on later lines.
fn bracket_length(rest: &[char]) -> usize {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for (position, character) in rest.iter().enumerate() {
        match (quote, character) {
            (Some(open), _) if *character == open => quote = None,
            (Some(_), _) => {}
            (None, '"') | (None, '\'') => quote = Some(*character),
            (None, '{') | (None, '[') => depth += 1,
            (None, '}') | (None, ']') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return position + 1;
                }
            }
            _ => {}
        }
    }
    1
}

/// Length of a plain scalar (or a block mapping's first key): up to `: `,
/// ` #` or the end of the line, trailing blanks dropped.
fn plain_length(rest: &[char]) -> usize {
    let mut end = rest.len();
    for position in 0..rest.len() {
        let next = rest.get(position + 1);
        if rest[position] == ':' && next.is_none_or(|c| c.is_whitespace()) {
            end = position;
            break;
        }
        if rest[position].is_whitespace() && next == Some(&'#') {
            end = position;
            break;
        }
    }
    while end > 0 && rest[end - 1].is_whitespace() {
        end -= 1;
    }
    end
}

// ---------------------------------------------------------------------------
// Shape: the document against the JSON Schema of `SpecFile`.

/// Field lists longer than this go into the help rather than the label.
const MAX_LABEL_FIELDS: usize = 6;

/// The text a single-line span covers.
fn span_text(source: &str, span: Span) -> Option<String> {
    let line = source.lines().nth(span.line.checked_sub(1)?)?;
    let text: String = line
        .chars()
        .skip(span.column.checked_sub(1)?)
        .take(span.length)
        .collect();
    Some(text)
}

/// What to do with a node after checking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Keep,
    /// Strip it: it was reported and would only make deserializing fail.
    Remove,
}

struct SchemaWalker<'a> {
    root: &'a Schema,
    spans: &'a SpanMap,
    source: &'a str,
    found: Vec<Diagnostic>,
    /// A list element was stripped, so later indices no longer match the
    /// file.
    removed_elements: bool,
}

/// The JSON Schema type names a YAML node satisfies, most specific first.
fn node_types(node: &Yaml) -> &'static [&'static str] {
    match node {
        Yaml::Null => &["null"],
        Yaml::Bool(_) => &["boolean"],
        Yaml::Number(number) if number.is_i64() || number.is_u64() => &["integer", "number"],
        Yaml::Number(_) => &["number"],
        Yaml::String(_) => &["string"],
        Yaml::Sequence(_) => &["array"],
        Yaml::Mapping(_) => &["object"],
        Yaml::Tagged(_) => &["tagged"],
    }
}

/// "a string", "an integer" … for messages.
fn describe_type(name: &str) -> &'static str {
    match name {
        "null" => "null",
        "boolean" => "a boolean",
        "integer" => "an integer",
        "number" => "a number",
        "string" => "a string",
        "array" => "a list",
        "object" => "a mapping",
        "tagged" => "a tagged value",
        _ => "a value",
    }
}

/// "a string", "a string or a list", "a string, a mapping or null".
fn describe_alternatives(names: &[String]) -> String {
    let mut described: Vec<&str> = Vec::new();
    for name in names {
        let text = describe_type(name);
        if !described.contains(&text) {
            described.push(text);
        }
    }
    match described.split_last() {
        None => "a value".to_owned(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// `a`, `b`, `c` for messages.
fn backticked<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl<'a> SchemaWalker<'a> {
    fn resolve(&self, mut schema: &'a Schema) -> &'a Schema {
        // Bounded, so that a cyclic reference cannot hang the loader.
        for _ in 0..32 {
            let Some(reference) = schema.get("$ref").and_then(Schema::as_str) else {
                break;
            };
            let name = reference.trim_start_matches("#/$defs/");
            match self.root.get("$defs").and_then(|defs| defs.get(name)) {
                Some(target) => schema = target,
                None => break,
            }
        }
        schema
    }

    fn error(&mut self, diagnostic: Diagnostic) {
        self.found.push(diagnostic);
    }

    fn walk_root(&mut self, document: &mut Yaml) {
        if !document.is_mapping() {
            let found = describe_type(node_types(document)[0]);
            let message = if document.is_null() {
                "the spec is empty".to_owned()
            } else {
                format!("expected a mapping at the top of the spec, found {found}")
            };
            self.error(
                Diagnostic::error(message)
                    .with_span(self.spans.value(""))
                    .with_help("a spec starts with `version: 1` and `name: <deployment>`"),
            );
            return;
        }
        let root = self.root;
        self.walk(root, document, "");
    }

    /// Checks `node` at `path` against `schema`, reporting what is wrong.
    fn walk(&mut self, schema: &'a Schema, node: &mut Yaml, path: &str) -> Verdict {
        let schema = self.resolve(schema);
        if let Some(branches) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Schema::as_array)
        {
            return self.walk_alternatives(branches, node, path);
        }
        if let Yaml::Tagged(tagged) = node {
            let tag = tagged.tag.to_string();
            self.error(
                Diagnostic::error(format!("unexpected YAML tag `{tag}`"))
                    .at(path)
                    .with_span(self.spans.value(path))
                    .with_help("pgspec specs use no tags; remove it"),
            );
            return Verdict::Remove;
        }
        if let Some(allowed) = schema_types(schema) {
            let found = node_types(node);
            if !found
                .iter()
                .any(|name| allowed.iter().any(|allowed| allowed == name))
            {
                self.type_mismatch(&allowed, node, path);
                return Verdict::Remove;
            }
        }
        if let Some(values) = schema.get("enum").and_then(Schema::as_array) {
            return self.check_enum(values, node, path);
        }
        if let Some(value) = schema.get("const") {
            return self.check_enum(std::slice::from_ref(value), node, path);
        }
        match node {
            Yaml::Number(number) => self.check_range(schema, number, path),
            Yaml::Sequence(items) => {
                let Some(item_schema) = schema.get("items") else {
                    return Verdict::Keep;
                };
                let verdicts: Vec<Verdict> = items
                    .iter_mut()
                    .enumerate()
                    .map(|(index, item)| self.walk(item_schema, item, &join_index(path, index)))
                    .collect();
                // Stripped in one pass: removing elements one at a time
                // moves the rest each time, quadratic in a list of tens of
                // thousands of bad entries.
                if verdicts.contains(&Verdict::Remove) {
                    self.removed_elements = true;
                    let mut verdicts = verdicts.into_iter();
                    items.retain(|_| verdicts.next() == Some(Verdict::Keep));
                }
                Verdict::Keep
            }
            Yaml::Mapping(mapping) => self.walk_mapping(schema, mapping, path),
            _ => Verdict::Keep,
        }
    }

    fn type_mismatch(&mut self, allowed: &[String], node: &Yaml, path: &str) {
        let expected: Vec<String> = allowed
            .iter()
            .filter(|name| name.as_str() != "null")
            .cloned()
            .collect();
        let expected = if expected.is_empty() {
            allowed.to_vec()
        } else {
            expected
        };
        let found = describe_type(node_types(node)[0]);
        let mut diagnostic = Diagnostic::error(format!(
            "expected {}, found {found}",
            describe_alternatives(&expected)
        ))
        .at(path)
        .with_span(self.spans.value(path));
        // A version such as 1.10 read as a number loses its trailing zero,
        // so the hint quotes the text as written.
        if expected.iter().any(|name| name == "string")
            && let Yaml::Number(number) = node
        {
            let written = self
                .spans
                .value(path)
                .and_then(|span| span_text(self.source, span))
                .filter(|text| text.parse::<f64>().is_ok())
                .unwrap_or_else(|| number.to_string());
            diagnostic = diagnostic.with_help(format!("quote it: \"{written}\""));
        }
        if node.is_null() {
            diagnostic = diagnostic.with_help("give it a value, or remove the key");
        }
        self.error(diagnostic);
    }

    fn check_enum(&mut self, values: &[Schema], node: &Yaml, path: &str) -> Verdict {
        let names: Vec<&str> = values.iter().filter_map(Schema::as_str).collect();
        let given = match node {
            Yaml::String(text) => text.clone(),
            Yaml::Bool(value) => value.to_string(),
            Yaml::Number(number) => number.to_string(),
            _ => String::new(),
        };
        if names.contains(&given.as_str()) {
            return Verdict::Keep;
        }
        let expected = if names.len() == 1 {
            format!("expected {}", backticked(names.iter().copied()))
        } else {
            format!("expected one of {}", backticked(names.iter().copied()))
        };
        let mut diagnostic = Diagnostic::error(format!("unknown value `{given}`"))
            .at(path)
            .with_span(self.spans.value(path))
            .with_label(expected);
        if let Some(suggestion) = did_you_mean(&given, names.iter().copied()) {
            diagnostic = diagnostic.with_help(format!("did you mean `{suggestion}`?"));
        }
        self.error(diagnostic);
        Verdict::Remove
    }

    fn check_range(&mut self, schema: &Schema, number: &serde_yaml::Number, path: &str) -> Verdict {
        let Some(value) = number.as_f64() else {
            return Verdict::Keep;
        };
        let format_bounds = match schema.get("format").and_then(Schema::as_str) {
            Some("uint32") => Some((0.0, f64::from(u32::MAX))),
            Some("uint16") => Some((0.0, f64::from(u16::MAX))),
            Some("int32") => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
            _ => None,
        };
        let minimum = schema
            .get("minimum")
            .and_then(Schema::as_f64)
            .or(format_bounds.map(|(low, _)| low));
        let maximum = schema
            .get("maximum")
            .and_then(Schema::as_f64)
            .or(format_bounds.map(|(_, high)| high));
        let message = match (minimum, maximum) {
            (Some(minimum), _) if value < minimum => {
                Some(format!("`{number}` is below the minimum of {minimum}"))
            }
            (_, Some(maximum)) if value > maximum => {
                Some(format!("`{number}` is above the maximum of {maximum}"))
            }
            _ => None,
        };
        match message {
            Some(message) => {
                self.error(
                    Diagnostic::error(message)
                        .at(path)
                        .with_span(self.spans.value(path)),
                );
                Verdict::Remove
            }
            None => Verdict::Keep,
        }
    }

    fn walk_mapping(
        &mut self,
        schema: &'a Schema,
        mapping: &mut serde_yaml::Mapping,
        path: &str,
    ) -> Verdict {
        let properties = schema.get("properties").and_then(Schema::as_object);
        let additional = schema.get("additionalProperties");
        let names: Vec<&str> = properties
            .map(|properties| properties.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let mut present = BTreeSet::new();
        let mut stripped_required = false;
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Schema::as_array)
            .map(|required| required.iter().filter_map(Schema::as_str).collect())
            .unwrap_or_default();

        let keys: Vec<Yaml> = mapping.keys().cloned().collect();
        for key in keys {
            let Some(name) = key.as_str().map(str::to_owned) else {
                let shown = serde_yaml::to_string(&key).unwrap_or_default();
                self.error(
                    Diagnostic::error(format!("key `{}` is not a string", shown.trim()))
                        .at(path)
                        .with_span(self.spans.value(path)),
                );
                mapping.remove(&key);
                continue;
            };
            let entry_path = join_key(path, &name);
            present.insert(name.clone());
            let value_schema = properties
                .and_then(|properties| properties.get(&name))
                .or(additional.filter(|additional| additional.is_object()));
            let verdict = match value_schema {
                Some(value_schema) => match mapping.get_mut(&key) {
                    Some(value) => self.walk(value_schema, value, &entry_path),
                    None => Verdict::Keep,
                },
                None if additional == Some(&Schema::Bool(false)) => {
                    self.unknown_field(&name, &names, &entry_path);
                    Verdict::Remove
                }
                None => Verdict::Keep,
            };
            if verdict == Verdict::Remove {
                mapping.remove(&key);
                if required.contains(&name.as_str()) {
                    stripped_required = true;
                }
            }
        }

        let mut missing = false;
        for name in &required {
            if !present.contains(*name) {
                missing = true;
                self.error(
                    Diagnostic::error(format!("missing field `{name}`"))
                        .at(path)
                        .with_span(self.spans.value(path)),
                );
            }
        }
        if missing || stripped_required {
            Verdict::Remove
        } else {
            Verdict::Keep
        }
    }

    fn unknown_field(&mut self, name: &str, expected: &[&str], path: &str) {
        let mut diagnostic = Diagnostic::error(format!("unknown field `{name}`"))
            .at(path)
            .with_span(self.spans.key(path));
        let listed = format!("expected one of {}", backticked(expected.iter().copied()));
        let suggestion = did_you_mean(name, expected.iter().copied());
        // A short list fits after the carets; a long one goes into the help
        // unless a suggestion says more.
        if expected.len() <= MAX_LABEL_FIELDS {
            if !expected.is_empty() {
                diagnostic = diagnostic.with_label(listed);
            }
            if let Some(suggestion) = suggestion {
                diagnostic = diagnostic.with_help(format!("did you mean `{suggestion}`?"));
            }
        } else {
            diagnostic = diagnostic.with_label("unknown field");
            diagnostic = match suggestion {
                Some(suggestion) => diagnostic.with_help(format!("did you mean `{suggestion}`?")),
                None => diagnostic.with_help(listed),
            };
        }
        self.error(diagnostic);
    }

    /// `anyOf`/`oneOf`: an optional value, an untagged enum or an externally
    /// tagged one. The branch is picked by the node's YAML type.
    fn walk_alternatives(
        &mut self,
        branches: &'a [Schema],
        node: &mut Yaml,
        path: &str,
    ) -> Verdict {
        let resolved: Vec<&'a Schema> =
            branches.iter().map(|branch| self.resolve(branch)).collect();
        let found = node_types(node);
        // Most specific type first: an integer picks an integer branch over
        // a number branch.
        for found_type in found {
            let matching: Vec<&'a Schema> = resolved
                .iter()
                .copied()
                .filter(|branch| {
                    self.branch_types(branch)
                        .iter()
                        .any(|name| name == found_type)
                })
                .collect();
            match matching.as_slice() {
                [] => continue,
                [branch] => return self.walk(branch, node, path),
                several => {
                    let Yaml::Mapping(mapping) = node else {
                        return self.walk(several[0], node, path);
                    };
                    let verdict = self.walk_object_branches(several, mapping, path);
                    if verdict == Verdict::Keep
                        && several.iter().all(|branch| is_tag_branch(branch))
                    {
                        // serde_yaml reads an externally tagged enum from a
                        // `Value` only in its tagged form (`!env NAME`).
                        if let Some((key, value)) = mapping.iter().next()
                            && let Some(tag) = key.as_str()
                        {
                            let tagged = serde_yaml::value::TaggedValue {
                                tag: serde_yaml::value::Tag::new(tag),
                                value: value.clone(),
                            };
                            *node = Yaml::Tagged(Box::new(tagged));
                        }
                    }
                    return verdict;
                }
            }
        }
        let mut allowed: Vec<String> = Vec::new();
        for branch in &resolved {
            for name in self.branch_types(branch) {
                if !allowed.contains(&name) {
                    allowed.push(name);
                }
            }
        }
        self.type_mismatch(&allowed, node, path);
        Verdict::Remove
    }

    /// Several mapping branches: an externally tagged enum such as a secret
    /// reference (`{ env: NAME }` or `{ file: PATH }`), or structs told
    /// apart by their fields.
    fn walk_object_branches(
        &mut self,
        branches: &[&'a Schema],
        mapping: &mut serde_yaml::Mapping,
        path: &str,
    ) -> Verdict {
        let branch_fields = |branch: &Schema| -> Vec<String> {
            branch
                .get("properties")
                .and_then(Schema::as_object)
                .map(|properties| properties.keys().cloned().collect())
                .unwrap_or_default()
        };
        let keys: Vec<String> = mapping
            .keys()
            .filter_map(|key| key.as_str().map(str::to_owned))
            .collect();
        let tagged = branches
            .iter()
            .all(|branch| branch_fields(branch).len() == 1);
        if tagged {
            let tags: Vec<String> = branches
                .iter()
                .flat_map(|branch| branch_fields(branch))
                .collect();
            let chosen = match keys.as_slice() {
                [key] => branches
                    .iter()
                    .find(|branch| branch_fields(branch).contains(key)),
                _ => None,
            };
            if let Some(branch) = chosen {
                return self.walk_mapping_node(branch, mapping, path);
            }
            let mut diagnostic = Diagnostic::error(format!(
                "expected exactly one of {}",
                backticked(tags.iter().map(String::as_str))
            ))
            .at(path)
            .with_span(self.spans.value(path));
            if let [key] = keys.as_slice()
                && let Some(suggestion) = did_you_mean(key, tags.iter().map(String::as_str))
            {
                diagnostic = diagnostic.with_help(format!("did you mean `{suggestion}`?"));
            }
            self.error(diagnostic);
            return Verdict::Remove;
        }
        let best = branches
            .iter()
            .max_by_key(|branch| {
                let fields = branch_fields(branch);
                keys.iter().filter(|key| fields.contains(key)).count()
            })
            .copied();
        match best {
            Some(branch) => self.walk_mapping_node(branch, mapping, path),
            None => Verdict::Keep,
        }
    }

    /// Walks a mapping that is borrowed as a `Mapping` rather than a node.
    fn walk_mapping_node(
        &mut self,
        schema: &'a Schema,
        mapping: &mut serde_yaml::Mapping,
        path: &str,
    ) -> Verdict {
        let mut node = Yaml::Mapping(std::mem::take(mapping));
        let verdict = self.walk(schema, &mut node, path);
        if let Yaml::Mapping(walked) = node {
            *mapping = walked;
        }
        verdict
    }

    /// The type names a schema branch accepts; an `enum` of strings is a
    /// string.
    fn branch_types(&self, schema: &'a Schema) -> Vec<String> {
        let schema = self.resolve(schema);
        if let Some(types) = schema_types(schema) {
            return types;
        }
        if let Some(branches) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Schema::as_array)
        {
            let mut types = Vec::new();
            for branch in branches {
                for name in self.branch_types(branch) {
                    if !types.contains(&name) {
                        types.push(name);
                    }
                }
            }
            return types;
        }
        if schema.get("enum").is_some() || schema.get("const").is_some() {
            return vec!["string".to_owned()];
        }
        Vec::new()
    }
}

/// A branch of an externally tagged enum: a mapping with exactly one
/// property.
fn is_tag_branch(schema: &Schema) -> bool {
    schema
        .get("properties")
        .and_then(Schema::as_object)
        .is_some_and(|properties| properties.len() == 1)
}

/// The `type` of a schema as a list, when it has one.
fn schema_types(schema: &Schema) -> Option<Vec<String>> {
    match schema.get("type")? {
        Schema::String(name) => Some(vec![name.clone()]),
        Schema::Array(names) => Some(
            names
                .iter()
                .filter_map(Schema::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match load_str(Path::new("spec.yaml"), text) {
            Ok(_) => Vec::new(),
            Err(diagnostics) => diagnostics
                .items
                .iter()
                .map(|item| {
                    let place = item
                        .span
                        .map(|span| format!("{}:{}", span.line, span.column))
                        .unwrap_or_default();
                    format!(
                        "{place} {} {}",
                        item.path.as_deref().unwrap_or(""),
                        item.message
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn paths_quote_keys_that_are_not_plain_words() {
        assert_eq!(join_key("", "postgres"), "postgres");
        assert_eq!(join_key("postgres", "settings"), "postgres.settings");
        assert_eq!(
            join_key("postgres.settings", "pg_stat_statements.track"),
            r#"postgres.settings["pg_stat_statements.track"]"#
        );
        assert_eq!(join_index("databases", 2), "databases[2]");
        assert_eq!(parent(r#"a.b["c.d"]"#), Some("a.b"));
        assert_eq!(parent("a.b[3]"), Some("a.b"));
        assert_eq!(parent("a.b"), Some("a"));
        assert_eq!(parent("a"), Some(""));
        assert_eq!(parent(""), None);
    }

    #[test]
    fn spans_cover_keys_and_values() {
        let text = "version: 1\nname: ledger\ndatabases:\n  - name: \"somali_nlp\"\n    extensions: [pg_trgm, { name: vector }]\npostgres:\n  settings:\n    pg_stat_statements.track: all\n";
        let spans = collect_spans(text).expect("spans");
        let span = |line, column, length| {
            Some(Span {
                line,
                column,
                length,
            })
        };
        assert_eq!(spans.key("name"), span(2, 1, 4));
        assert_eq!(spans.value("name"), span(2, 7, 6));
        assert_eq!(spans.value("databases[0].name"), span(4, 11, 12));
        assert_eq!(spans.value("databases[0].extensions[0]"), span(5, 18, 7));
        assert_eq!(spans.value("databases[0].extensions[1]"), span(5, 27, 16));
        assert_eq!(
            spans.value("databases[0].extensions[1].name"),
            span(5, 35, 6)
        );
        assert_eq!(
            spans.value(r#"postgres.settings["pg_stat_statements.track"]"#),
            span(8, 31, 3)
        );
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(spans.value("databases[0].name.nothing"), span(4, 11, 12));
    }

    #[test]
    fn anchors_aliases_and_merge_keys_load() {
        let text = "version: 1\nname: ledger\nroles:\n  - &base { name: a, login: true }\n  - <<: *base\n    name: b\n  - *base\n";
        let loaded = load_str(Path::new("spec.yaml"), text);
        let loaded = loaded.expect("anchors are fine");
        let names: Vec<&str> = loaded
            .file
            .roles
            .iter()
            .map(|role| role.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "a"]);
    }

    #[test]
    fn nesting_is_limited_and_a_byte_order_mark_is_dropped() {
        let deep = format!(
            "version: 1\nname: x\nroles: {}{}\n",
            "[".repeat(70),
            "]".repeat(70)
        );
        assert_eq!(
            errors(&deep),
            ["3:72  the spec nests deeper than 64 levels".to_owned()]
        );
        // Closed brackets do not add up.
        let wide = format!("version: 1\nname: x\nroles: [{}]\n", "[], ".repeat(100));
        assert_eq!(flow_too_deep(&wide), None);
        assert!(load_str(Path::new("bom.yaml"), "\u{feff}version: 1\nname: bom\n").is_ok());
    }

    #[test]
    fn empty_and_non_mapping_documents() {
        assert_eq!(errors(""), ["  the spec is empty"]);
        assert_eq!(
            errors("- a\n"),
            ["1:1  expected a mapping at the top of the spec, found a list"]
        );
    }

    #[test]
    fn missing_and_mistyped_fields_are_all_reported() {
        assert_eq!(
            errors("name: x\nroles:\n  - login: true\n  - name: [b]\nprune: maybe\n"),
            [
                "1:1  missing field `version`",
                "3:5 roles[0] missing field `name`",
                "4:11 roles[1].name expected a string, found a list",
                "5:8 prune expected a boolean, found a string",
            ]
        );
    }

    #[test]
    fn suggestions_are_close_matches_only() {
        let candidates = ["owner", "extensions", "schemas"];
        assert_eq!(did_you_mean("ownr", candidates), Some("owner"));
        assert_eq!(did_you_mean("Owner", candidates), Some("owner"));
        assert_eq!(did_you_mean("extensoins", candidates), Some("extensions"));
        assert_eq!(did_you_mean("zzz", candidates), None);
    }
}
