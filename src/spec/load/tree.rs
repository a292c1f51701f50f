//! The document tree, built from the parser events the span pass reads
//! anyway, so a spec is parsed once.
//!
//! serde_yaml builds the same tree by first buffering every event of the
//! document (tens of megabytes for a spec of forty thousand objects) and
//! then replaying them. This builder keeps only the tree it is building and
//! the anchored nodes. It mirrors serde_yaml's resolution of untagged
//! scalars (YAML 1.2 core schema: null, booleans, integers in four bases,
//! floats, else a string; quoted and block scalars are strings).
//!
//! Whatever it does not mirror exactly — a tag, a duplicate key, an alias it
//! cannot resolve, an integer too large for 64 bits, more than one document,
//! an alias expansion larger than [`EXPANSION_LIMIT`] nodes, a syntax error
//! — makes it give up, and the loader asks serde_yaml, whose answer (often
//! an error) is then the same as it always was.
//!
//! Invariant: no I/O.

use std::collections::HashMap;

use serde_yaml::{Mapping, Number, Value as Yaml};
use yaml_rust2::parser::Event;
use yaml_rust2::scanner::TScalarStyle;

/// How many nodes aliases may add in all, beyond the document's own. A
/// document of nested aliases doubles at every level; serde_yaml refuses
/// such a document, so this builder leaves it to serde_yaml.
const EXPANSION_LIMIT: usize = 100_000;

/// Builds a [`Yaml`] tree from one document's events.
#[derive(Default)]
pub(super) struct TreeBuilder {
    stack: Vec<Open>,
    /// Anchored nodes by anchor id, with their node counts.
    anchors: HashMap<usize, (Yaml, usize)>,
    root: Option<Yaml>,
    documents: usize,
    /// Nodes added by alias expansion so far.
    expanded: usize,
    gave_up: bool,
}

enum Open {
    Sequence {
        anchor: usize,
        items: Vec<Yaml>,
        nodes: usize,
    },
    Mapping {
        anchor: usize,
        entries: Mapping,
        key: Option<Yaml>,
        nodes: usize,
    },
}

impl TreeBuilder {
    /// Takes one event of the stream.
    pub(super) fn event(&mut self, event: &Event) {
        if self.gave_up {
            return;
        }
        match event {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.gave_up = true;
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                if tag.is_some() {
                    self.gave_up = true;
                    return;
                }
                match scalar(value, *style) {
                    Some(node) => self.complete(node, *anchor, 1),
                    None => self.gave_up = true,
                }
            }
            Event::Alias(id) => match self.anchors.get(id) {
                Some((node, nodes)) => {
                    let (node, nodes) = (node.clone(), *nodes);
                    self.expanded += nodes;
                    if self.expanded > EXPANSION_LIMIT {
                        self.gave_up = true;
                        return;
                    }
                    self.complete(node, 0, nodes);
                }
                None => self.gave_up = true,
            },
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) => {
                if tag.is_some() {
                    self.gave_up = true;
                    return;
                }
                self.stack
                    .push(if matches!(event, Event::SequenceStart(..)) {
                        Open::Sequence {
                            anchor: *anchor,
                            items: Vec::new(),
                            nodes: 1,
                        }
                    } else {
                        Open::Mapping {
                            anchor: *anchor,
                            entries: Mapping::new(),
                            key: None,
                            nodes: 1,
                        }
                    });
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                // Shrunk to size: most mappings of a spec hold a few
                // entries, and an index map grows in steps of its own.
                Some(Open::Sequence {
                    anchor,
                    mut items,
                    nodes,
                }) => {
                    items.shrink_to_fit();
                    self.complete(Yaml::Sequence(items), anchor, nodes);
                }
                Some(Open::Mapping {
                    anchor,
                    mut entries,
                    key: None,
                    nodes,
                }) => {
                    entries.shrink_to_fit();
                    self.complete(Yaml::Mapping(entries), anchor, nodes);
                }
                _ => self.gave_up = true,
            },
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }

    /// The parser stopped with a syntax error.
    pub(super) fn syntax_error(&mut self) {
        self.gave_up = true;
    }

    /// The document, or `None` when serde_yaml must read it instead.
    pub(super) fn finish(self) -> Option<Yaml> {
        if self.gave_up || !self.stack.is_empty() {
            return None;
        }
        self.root
    }

    /// A node is complete: it goes into its parent, or is the document.
    fn complete(&mut self, node: Yaml, anchor: usize, nodes: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), nodes));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_some() {
                    self.gave_up = true;
                } else {
                    self.root = Some(node);
                }
            }
            Some(Open::Sequence {
                items,
                nodes: total,
                ..
            }) => {
                items.push(node);
                *total += nodes;
            }
            Some(Open::Mapping {
                entries,
                key,
                nodes: total,
                ..
            }) => {
                *total += nodes;
                match key.take() {
                    None => *key = Some(node),
                    Some(key) => {
                        if entries.insert(key, node).is_some() {
                            // serde_yaml reports a duplicate key; let it.
                            self.gave_up = true;
                        }
                    }
                }
            }
        }
    }
}

/// A scalar as serde_yaml resolves it without a tag; `None` for an integer
/// that fits no 64-bit type (serde_yaml refuses those).
fn scalar(text: &str, style: TScalarStyle) -> Option<Yaml> {
    if style != TScalarStyle::Plain {
        return Some(Yaml::String(text.to_owned()));
    }
    if text.is_empty() || matches!(text, "~" | "null" | "Null" | "NULL") {
        return Some(Yaml::Null);
    }
    match text {
        "true" | "True" | "TRUE" => return Some(Yaml::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Yaml::Bool(false)),
        _ => {}
    }
    if let Some(int) = unsigned_int(text, u64::from_str_radix) {
        return Some(Yaml::Number(Number::from(int)));
    }
    if let Some(int) = negative_int(text, i64::from_str_radix) {
        return Some(Yaml::Number(Number::from(int)));
    }
    if unsigned_int(text, u128::from_str_radix).is_some()
        || negative_int(text, i128::from_str_radix).is_some()
    {
        return None;
    }
    if !digits_but_not_number(text)
        && let Some(float) = float(text)
    {
        return Some(Yaml::Number(Number::from(float)));
    }
    Some(Yaml::String(text.to_owned()))
}

type Radix<T> = fn(&str, u32) -> Result<T, std::num::ParseIntError>;

fn unsigned_int<T>(text: &str, from_str_radix: Radix<T>) -> Option<T> {
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = unsigned.strip_prefix(prefix) {
            if rest.starts_with(['+', '-']) {
                return None;
            }
            if let Ok(int) = from_str_radix(rest, radix) {
                return Some(int);
            }
        }
    }
    if unsigned.starts_with(['+', '-']) || digits_but_not_number(text) {
        return None;
    }
    from_str_radix(unsigned, 10).ok()
}

fn negative_int<T>(text: &str, from_str_radix: Radix<T>) -> Option<T> {
    for (prefix, radix) in [("-0x", 16), ("-0o", 8), ("-0b", 2)] {
        if let Some(rest) = text.strip_prefix(prefix)
            && let Ok(int) = from_str_radix(&format!("-{rest}"), radix)
        {
            return Some(int);
        }
    }
    if digits_but_not_number(text) {
        return None;
    }
    from_str_radix(text, 10).ok()
}

fn float(text: &str) -> Option<f64> {
    let unsigned = match text.strip_prefix('+') {
        Some(rest) if rest.starts_with(['+', '-']) => return None,
        Some(rest) => rest,
        None => text,
    };
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
        return Some(f64::INFINITY);
    }
    if matches!(text, "-.inf" | "-.Inf" | "-.INF") {
        return Some(f64::NEG_INFINITY);
    }
    if matches!(text, ".nan" | ".NaN" | ".NAN") {
        return Some(f64::NAN.copysign(1.0));
    }
    unsigned
        .parse::<f64>()
        .ok()
        .filter(|float| float.is_finite())
}

/// Leading zeros followed by digits: a string in YAML 1.2.
fn digits_but_not_number(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    digits.len() > 1 && digits.starts_with('0') && digits[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yaml_rust2::parser::Parser;

    fn build(text: &str) -> Option<Yaml> {
        let mut builder = TreeBuilder::default();
        let mut parser = Parser::new_from_str(text);
        loop {
            match parser.next_token() {
                Ok((Event::StreamEnd, _)) => break,
                Ok((event, _)) => builder.event(&event),
                Err(_) => {
                    builder.syntax_error();
                    break;
                }
            }
        }
        builder.finish()
    }

    /// Where the builder answers, it answers as serde_yaml does.
    fn same_as_serde_yaml(text: &str) -> bool {
        let Some(ours) = build(text) else {
            return false;
        };
        let mut theirs: Yaml = serde_yaml::from_str(text).expect("serde_yaml reads it");
        let mut ours = ours;
        ours.apply_merge().expect("merge");
        theirs.apply_merge().expect("merge");
        // NaN is not equal to itself; compare the printed trees.
        assert_eq!(
            serde_yaml::to_string(&ours).unwrap(),
            serde_yaml::to_string(&theirs).unwrap(),
            "{text}"
        );
        true
    }

    #[test]
    fn scalars_resolve_as_serde_yaml_resolves_them() {
        for value in [
            "",
            "~",
            "null",
            "Null",
            "NULL",
            "nULL",
            "true",
            "True",
            "TRUE",
            "tRUE",
            "false",
            "yes",
            "no",
            "on",
            "off",
            "0",
            "1",
            "-1",
            "+1",
            "007",
            "-007",
            "0x1F",
            "-0x1F",
            "0o17",
            "-0o17",
            "0b101",
            "-0b101",
            "0x",
            "0x-1",
            "+-1",
            "1.5",
            "-1.5",
            "+1.5",
            "1e3",
            "1E-3",
            ".5",
            "5.",
            ".inf",
            "-.inf",
            "+.inf",
            ".nan",
            ".NaN",
            "inf",
            "nan",
            "1_000",
            "8MB",
            "10min",
            "0.9",
            "1.1",
            "18446744073709551615",
            "-9223372036854775808",
            "12:30:00",
            "2026-11-29",
            "\"quoted 1\"",
            "'single 2'",
            "'true'",
            "\"null\"",
            "c > 0",
            "[1, x, '2']",
            "{a: 1, b: [2, 3]}",
        ] {
            let text = format!("key: {value}\n");
            assert!(same_as_serde_yaml(&text), "builder gave up on {text:?}");
        }
    }

    #[test]
    fn documents_like_specs_build_as_serde_yaml_builds_them() {
        for text in [
            "version: 1\nname: x\nroles:\n  - name: a\n    login: true\n  - { name: b }\n",
            "base: &base\n  login: true\n  connection_limit: 5\nroles:\n  - <<: *base\n    name: a\n  - name: b\n    <<: *base\n",
            "list: &l [a, b]\nagain: *l\n",
            "text: |\n  line one\n  line two\nfolded: >\n  one\n  two\n",
            "---\na: 1\n...\n",
            "\"quoted key\": 1\n? complex\n: 2\n",
            "empty:\nnested:\n  deeper:\n    - - 1\n      - 2\n",
            "unicode: \"caf\\u00e9 \\t tab\"\nsingle: 'it''s'\n",
        ] {
            assert!(same_as_serde_yaml(text), "builder gave up on {text:?}");
        }
    }

    /// Every spec the repository ships, and every fixture the tests read.
    #[test]
    fn shipped_specs_build_as_serde_yaml_builds_them() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut pending = vec![
            root.join("specs"),
            root.join("examples"),
            root.join("tests/fixtures"),
        ];
        let mut checked = 0;
        while let Some(directory) = pending.pop() {
            for entry in std::fs::read_dir(&directory).expect("read directory") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    pending.push(path);
                } else if path
                    .extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
                {
                    let text = std::fs::read_to_string(&path).expect("read spec");
                    if serde_yaml::from_str::<Yaml>(&text).is_ok() && build(&text).is_some() {
                        assert!(same_as_serde_yaml(&text), "{}", path.display());
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked >= 10, "only {checked} specs checked");
    }

    #[test]
    fn what_it_does_not_mirror_is_left_to_serde_yaml() {
        for text in [
            "a: 1\na: 2\n",
            "a: !custom 1\n",
            "a: !!str 1\n",
            "a: 99999999999999999999\n",
            "a: -99999999999999999999\n",
            "a: *missing\n",
            "a: 1\n---\nb: 2\n",
            "a: [1, 2\n",
            "",
        ] {
            assert!(build(text).is_none(), "builder answered {text:?}");
        }
    }

    #[test]
    fn nested_aliases_beyond_the_limit_are_left_to_serde_yaml() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..8 {
            let previous = level - 1;
            text.push_str(&format!(
                "a{level}: &a{level} [*a{previous}, *a{previous}, *a{previous}, *a{previous}, \
                 *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}]\n"
            ));
        }
        assert!(build(&text).is_none());
    }
}
