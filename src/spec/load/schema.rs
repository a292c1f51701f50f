//! The shape of a spec: the document walked against the JSON Schema that
//! `schemars` generates for `SpecFile`, so that every unknown field,
//! missing field and type mismatch is reported with its key path and span
//! in one run. The offending nodes are stripped, so that the rest can
//! still be deserialized.

use std::collections::BTreeSet;

use serde_json::Value as Schema;
use serde_yaml::Value as Yaml;

use super::spans::{SpanMap, join_index, join_key};
use crate::diag::{Diagnostic, Span, did_you_mean};

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

/// What the walk of a document found.
pub(super) struct Shape {
    /// Every unknown field, missing field and type mismatch.
    pub(super) found: Vec<Diagnostic>,
    /// A list element was stripped, so later indices no longer match the
    /// file.
    pub(super) removed_elements: bool,
}

/// Walks `document` against `schema` (the JSON Schema of `SpecFile`),
/// reporting every mismatch with the span `spans` has for it in `source`,
/// and strips the nodes it reported.
pub(super) fn check_shape(
    schema: &Schema,
    document: &mut Yaml,
    spans: &SpanMap,
    source: &str,
) -> Shape {
    let mut walker = SchemaWalker {
        root: schema,
        spans,
        source,
        found: Vec::new(),
        removed_elements: false,
    };
    walker.walk_root(document);
    Shape {
        found: walker.found,
        removed_elements: walker.removed_elements,
    }
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
pub(crate) fn backticked<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
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
