//! Where every key and value of a spec sits: a pass over the text with
//! yaml-rust2's marked events records a span by key path, so that a
//! finding about `databases[0].owner` points at its line and column.
//!
//! The pass also refuses a document nested deeper than [`MAX_DEPTH`]
//! before any YAML scanner spends minutes on it.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use serde_yaml::Value as Yaml;

use super::tree::TreeBuilder;
use crate::diag::{Diagnostic, Span};

/// Spans of keys and values by key path (`databases[0].extensions[1].name`).
///
/// A large spec has hundreds of thousands of paths, so a path is kept as a
/// 64-bit hash of its text (a collision would at worst point a finding at
/// another node), with a span in twelve bytes: one record of 24 bytes for a
/// key and one for its value, instead of the path's text in a tree.
/// Recorded in document order, then sorted in place once; the first span
/// recorded of each kind for a path wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanMap {
    /// Sorted by hash, kind and order once collection is done; then at
    /// most one key and one value record per hash.
    records: Vec<Record>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    hash: u64,
    /// Document order in the low 31 bits; the top bit set for a value.
    order: u32,
    span: CompactSpan,
}

/// The bit of `Record::order` that marks a value's span.
const VALUE: u32 = 1 << 31;

impl Record {
    fn is_value(&self) -> bool {
        self.order & VALUE != 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CompactSpan {
    line: u32,
    column: u32,
    length: u32,
}

impl CompactSpan {
    fn new(span: Span) -> Self {
        let narrow = |value: usize| u32::try_from(value).unwrap_or(u32::MAX);
        CompactSpan {
            line: narrow(span.line),
            column: narrow(span.column),
            length: narrow(span.length),
        }
    }

    fn span(self) -> Span {
        Span {
            line: self.line as usize,
            column: self.column as usize,
            length: self.length as usize,
        }
    }
}

fn path_hash(path: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    // Fixed keys: the same path hashes the same in every run.
    let mut hasher = std::hash::DefaultHasher::new();
    path.hash(&mut hasher);
    hasher.finish()
}

impl SpanMap {
    /// The value's span, else the key's, else the nearest ancestor's value.
    pub fn value(&self, path: &str) -> Option<Span> {
        let mut current = Some(path);
        while let Some(path) = current {
            if let Some(span) = self.get(path).and_then(|spans| spans.value.or(spans.key)) {
                return Some(span.span());
            }
            current = parent(path);
        }
        None
    }

    /// The key's span, else the value's, else the nearest ancestor's.
    pub fn key(&self, path: &str) -> Option<Span> {
        match self.get(path).and_then(|spans| spans.key) {
            Some(span) => Some(span.span()),
            None => self.value(path),
        }
    }

    fn get(&self, path: &str) -> Option<Spans> {
        let hash = path_hash(path);
        let start = self.records.partition_point(|record| record.hash < hash);
        let mut spans = Spans::default();
        for record in self.records[start..]
            .iter()
            .take_while(|record| record.hash == hash)
        {
            if record.is_value() {
                spans.value = Some(record.span);
            } else {
                spans.key = Some(record.span);
            }
        }
        (spans.key.is_some() || spans.value.is_some()).then_some(spans)
    }

    fn record(&mut self, path: &str, span: Span, kind: u32) {
        // Document order past 2^31 records only makes the order of later
        // duplicates arbitrary.
        let order = u32::try_from(self.records.len()).unwrap_or(VALUE - 1) & !VALUE;
        self.records.push(Record {
            hash: path_hash(path),
            order: order | kind,
            span: CompactSpan::new(span),
        });
    }

    fn record_key(&mut self, path: &str, span: Span) {
        self.record(path, span, 0);
    }

    fn record_value(&mut self, path: &str, span: Span) {
        self.record(path, span, VALUE);
    }

    /// Sorts in place by hash, kind and document order, and keeps the first
    /// record of each kind for each path.
    fn seal(&mut self) {
        self.records
            .sort_unstable_by_key(|record| (record.hash, record.order));
        self.records
            .dedup_by_key(|record| (record.hash, record.is_value()));
        self.records.shrink_to_fit();
    }
}

/// The spans found for one path.
#[derive(Debug, Clone, Copy, Default)]
struct Spans {
    key: Option<CompactSpan>,
    value: Option<CompactSpan>,
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
pub(super) fn parent(path: &str) -> Option<&str> {
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
pub(super) fn flow_too_deep(text: &str) -> Option<(usize, usize)> {
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
pub(super) fn collect_spans(text: &str) -> Result<(SpanMap, Option<Yaml>), Box<Diagnostic>> {
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
    let mut tree = TreeBuilder::default();
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    // A syntax error stops the pass; serde_yaml reports it. Should the two
    // parsers disagree, spans recorded so far are still right and the rest
    // fall back to their ancestors. Events after the first document only
    // tell the tree builder that there is more than one.
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(next) => next,
            Err(_) => {
                tree.syntax_error();
                break;
            }
        };
        tree.event(&event);
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
    collector.spans.seal();
    Ok((collector.spans, tree.finish()))
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
                        self.spans.record_key(&key_path, span);
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
        self.spans.record_value(&value_path, span);
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
