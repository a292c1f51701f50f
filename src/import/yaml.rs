//! Tidy YAML, the way a person writes a spec: block mappings, one list
//! item per line, short items in flow style (`{ name: x, table: y }`,
//! `[a, b]`), scalars quoted only when they must be, and comments above the
//! key or list item they are about.
//!
//! serde_yaml writes correct YAML but neither flow style nor comments, so
//! this walks the `serde_yaml::Value` of a spec file and writes it itself.
//! A unit test reads every rendering back and compares.

use std::collections::BTreeMap;

use serde_yaml::Value;

/// Lines longer than this are written in block style.
const WIDTH: usize = 100;

/// Comment lines by key path (`roles[2]`, `databases[0].indexes`), written
/// above the key or item at that path. The empty path is the header.
pub type Comments = BTreeMap<String, Vec<String>>;

/// Key paths whose items are always written in block style.
const BLOCK_ITEMS: &[&str] = &["roles", "databases"];

/// Renders `value` (a mapping) with `comments`. A comment about a path
/// the value does not have (a section left empty) goes into the header, so
/// that nothing said is lost.
pub fn render(value: &Value, comments: &Comments) -> String {
    let mut present = std::collections::BTreeSet::new();
    collect_paths(value, "", &mut present);
    let mut comments = comments.clone();
    let orphans: Vec<String> = comments
        .keys()
        .filter(|path| !path.is_empty() && !present.contains(*path))
        .cloned()
        .collect();
    for path in orphans {
        if let Some(lines) = comments.remove(&path) {
            let header = comments.entry(String::new()).or_default();
            header.push(String::new());
            header.push(format!("{path}:"));
            header.extend(lines);
        }
    }
    let comments = &comments;
    let mut out = String::new();
    if let Some(lines) = comments.get("") {
        for line in lines {
            comment_line(&mut out, 0, line);
        }
    }
    match value {
        Value::Mapping(mapping) => block_mapping(&mut out, mapping, 0, "", comments),
        other => {
            out.push_str(&flow(other));
            out.push('\n');
        }
    }
    out
}

/// Every key path in `value`: `postgres`, `postgres.settings`, `roles[0]`.
fn collect_paths(value: &Value, path: &str, found: &mut std::collections::BTreeSet<String>) {
    match value {
        Value::Mapping(mapping) => {
            for (key, child) in mapping {
                if let Value::String(key) = key {
                    let child_path = child_path(path, key);
                    collect_paths(child, &child_path, found);
                    found.insert(child_path);
                }
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{index}]");
                collect_paths(item, &item_path, found);
                found.insert(item_path);
            }
        }
        _ => {}
    }
}

/// One comment line. Comments quote names read from the live server (an
/// index `import` could not express, say), and a name may hold a line
/// break: written raw, the rest of it would be read as spec. So every
/// control character is escaped, and so are the Unicode line and
/// paragraph separators, which YAML 1.1 parsers also take as line breaks.
fn comment_line(out: &mut String, indent: usize, line: &str) {
    out.push_str(&" ".repeat(indent));
    if line.is_empty() {
        out.push_str("#\n");
    } else {
        out.push_str("# ");
        for character in crate::diag::printable(line).chars() {
            if matches!(character, '\u{2028}' | '\u{2029}') {
                out.extend(character.escape_default());
            } else {
                out.push(character);
            }
        }
        out.push('\n');
    }
}

fn comments_at(out: &mut String, indent: usize, path: &str, comments: &Comments) {
    if let Some(lines) = comments.get(path) {
        for line in lines {
            comment_line(out, indent, line);
        }
    }
}

fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// A key as written: mapping keys are scalars in a spec.
fn key_text(key: &Value) -> String {
    match key {
        Value::String(text) => scalar(text),
        other => flow(other),
    }
}

/// Whether a value is written inline after its key (`key: value`).
fn is_scalar(value: &Value) -> bool {
    !matches!(
        value,
        Value::Mapping(_) | Value::Sequence(_) | Value::Tagged(_)
    )
}

fn is_empty_collection(value: &Value) -> bool {
    match value {
        Value::Mapping(mapping) => mapping.is_empty(),
        Value::Sequence(sequence) => sequence.is_empty(),
        _ => false,
    }
}

fn block_mapping(
    out: &mut String,
    mapping: &serde_yaml::Mapping,
    indent: usize,
    path: &str,
    comments: &Comments,
) {
    // The first key of a list item follows its `- `; comments about the
    // item were written above the dash.
    let mut after_dash = out.ends_with("- ");
    for (key, value) in mapping {
        let key_string = match key {
            Value::String(text) => text.clone(),
            other => flow(other),
        };
        let path = child_path(path, &key_string);
        if !after_dash {
            comments_at(out, indent, &path, comments);
            out.push_str(&" ".repeat(indent));
        }
        after_dash = false;
        let key = key_text(key);
        entry(out, &key, value, indent, &path, comments);
    }
}

/// Writes `key: value` at the current position, the value inline, in flow
/// style or as a block below.
fn entry(
    out: &mut String,
    key: &str,
    value: &Value,
    indent: usize,
    path: &str,
    comments: &Comments,
) {
    if is_scalar(value) || is_empty_collection(value) {
        out.push_str(&format!("{key}: {}\n", flow(value)));
        return;
    }
    let inline = flow(value);
    let top_level = indent == 0;
    if !top_level
        && !has_comments_below(path, comments)
        && indent + key.len() + 2 + inline.len() <= WIDTH
    {
        out.push_str(&format!("{key}: {inline}\n"));
        return;
    }
    out.push_str(&format!("{key}:\n"));
    match value {
        Value::Mapping(mapping) => block_mapping(out, mapping, indent + 2, path, comments),
        Value::Sequence(sequence) => block_sequence(out, sequence, indent + 2, path, comments),
        Value::Tagged(tagged) => {
            let mut mapping = serde_yaml::Mapping::new();
            mapping.insert(Value::String(tag_name(tagged)), tagged.value.clone());
            block_mapping(out, &mapping, indent + 2, path, comments);
        }
        _ => {}
    }
}

fn has_comments_below(path: &str, comments: &Comments) -> bool {
    let prefix_key = format!("{path}.");
    let prefix_index = format!("{path}[");
    comments
        .keys()
        .any(|key| key.starts_with(&prefix_key) || key.starts_with(&prefix_index))
}

fn block_sequence(
    out: &mut String,
    sequence: &[Value],
    indent: usize,
    path: &str,
    comments: &Comments,
) {
    let always_block = BLOCK_ITEMS.contains(&path);
    for (index, item) in sequence.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        comments_at(out, indent, &item_path, comments);
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        let inline = flow(item);
        let fits = indent + 2 + inline.len() <= WIDTH;
        match item {
            Value::Mapping(mapping)
                if always_block || !fits || has_comments_below(&item_path, comments) =>
            {
                block_mapping(out, mapping, indent + 2, &item_path, comments);
            }
            Value::Sequence(inner) if !fits => {
                out.push('\n');
                block_sequence(out, inner, indent + 2, &item_path, comments);
            }
            _ => {
                out.push_str(&inline);
                out.push('\n');
            }
        }
    }
}

fn tag_name(tagged: &serde_yaml::value::TaggedValue) -> String {
    tagged.tag.to_string().trim_start_matches('!').to_owned()
}

/// A value in flow style, on one line.
pub fn flow(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => scalar(text),
        Value::Sequence(items) => {
            let items: Vec<String> = items.iter().map(flow).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Mapping(mapping) => {
            if mapping.is_empty() {
                return "{}".to_owned();
            }
            let entries: Vec<String> = mapping
                .iter()
                .map(|(key, value)| format!("{}: {}", key_text(key), flow(value)))
                .collect();
            format!("{{ {} }}", entries.join(", "))
        }
        Value::Tagged(tagged) => format!(
            "{{ {}: {} }}",
            scalar(&tag_name(tagged)),
            flow(&tagged.value)
        ),
    }
}

/// A string, plain when that reads back as the same string in block and
/// flow context, double-quoted otherwise.
pub fn scalar(text: &str) -> String {
    let safe_characters = text.chars().all(|character| {
        character.is_ascii_alphanumeric() || matches!(character, '_' | '.' | '-' | '/' | '$' | ':')
    });
    let safe_start = text
        .chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphanumeric() || first == '_' || first == '$');
    let reads_back = matches!(
        serde_yaml::from_str::<Value>(text),
        Ok(Value::String(ref read)) if read == text
    );
    // Inside `[…]` and `{ … }` too: `:` and the like read differently there.
    let reads_back_in_flow = matches!(
        serde_yaml::from_str::<Value>(&format!("[{text}, {{ k: {text} }}]")),
        Ok(Value::Sequence(ref items)) if items.len() == 2
            && items[0] == Value::String(text.to_owned())
            && items[1].get("k") == Some(&Value::String(text.to_owned()))
    );
    if safe_characters && safe_start && reads_back && reads_back_in_flow {
        text.to_owned()
    } else {
        // A JSON string is a valid YAML double-quoted scalar, except that
        // JSON leaves NEL and the Unicode line and paragraph separators
        // raw, and YAML folds a raw line break inside quotes into a space.
        serde_json::to_string(text)
            .unwrap_or_else(|_| format!("{text:?}"))
            .replace('\u{85}', "\\u0085")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) {
        let value: Value = serde_yaml::from_str(text).expect("test YAML parses");
        let rendered = render(&value, &Comments::new());
        let back: Value = serde_yaml::from_str(&rendered)
            .unwrap_or_else(|error| panic!("rendering does not parse: {error}\n{rendered}"));
        assert_eq!(back, value, "{rendered}");
    }

    #[test]
    fn scalars_are_quoted_only_when_needed() {
        assert_eq!(scalar("pg_trgm"), "pg_trgm");
        assert_eq!(scalar("256MB"), "256MB");
        assert_eq!(scalar("on"), "on");
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("123"), "\"123\"");
        assert_eq!(scalar("1.5"), "\"1.5\"");
        assert_eq!(scalar("null"), "\"null\"");
        assert_eq!(scalar(""), "\"\"");
        assert_eq!(scalar("a, b"), "\"a, b\"");
        assert_eq!(scalar("-x"), "\"-x\"");
        assert_eq!(scalar("postgres:17"), "postgres:17");
        assert_eq!(scalar("a:"), "\"a:\"");
        assert_eq!(scalar("a: b"), "\"a: b\"");
        assert_eq!(scalar("state <> 'done'"), "\"state <> 'done'\"");
        assert_eq!(scalar("Rëad \"Only\""), "\"Rëad \\\"Only\\\"\"");
    }

    #[test]
    fn renderings_read_back() {
        round_trip(
            "version: 1\nname: x\nroles:\n  - name: 'a \"b\"'\n    login: true\n    member_of: [c, 'd, e']\n",
        );
        round_trip(
            "databases:\n  - name: app\n    indexes:\n      - { name: i, table: t, columns: [a, { expression: 'lower(a)', opclass: text_pattern_ops }], where: \"a <> 'x'\" }\n    grants: []\n",
        );
        round_trip("a: { env: X }\nb: [1, 2.5, true, null, '#x', '[y]', '{z}', 'k: v']\n");
        let long = format!("list: [{}]\n", vec!["abcdefghij"; 20].join(", "));
        round_trip(&long);
    }

    #[test]
    fn comments_go_above_their_item() {
        let value: Value =
            serde_yaml::from_str("roles:\n  - name: a\n  - name: b\n").expect("parses");
        let mut comments = Comments::new();
        comments.insert(String::new(), vec!["header".to_owned()]);
        comments.insert("roles[1]".to_owned(), vec!["about b".to_owned()]);
        comments.insert(
            "roles[0].name".to_owned(),
            vec!["never printed inline".to_owned()],
        );
        let rendered = render(&value, &comments);
        assert!(rendered.starts_with("# header\n"), "{rendered}");
        assert!(
            rendered.contains("  # about b\n  - name: b\n"),
            "{rendered}"
        );
        let back: Value = serde_yaml::from_str(&rendered).expect("parses");
        assert_eq!(back, value);
    }

    #[test]
    fn comments_about_missing_paths_go_into_the_header() {
        let value: Value = serde_yaml::from_str("name: x\n").expect("parses");
        let mut comments = Comments::new();
        comments.insert(
            "postgres.settings".to_owned(),
            vec!["not imported".to_owned()],
        );
        let rendered = render(&value, &comments);
        assert_eq!(
            rendered,
            "#\n# postgres.settings:\n# not imported\nname: x\n"
        );
    }

    /// Issue 15: a live name quoted in a comment cannot end the comment and
    /// add keys to the imported spec; a name as a value stays one scalar.
    #[test]
    fn hostile_names_stay_data() {
        let hostile = "x\nroles: [{ name: evil, superuser: true }]\r\u{85}\u{2028}y: \u{1b}[2J\0";
        let mut value = serde_yaml::Mapping::new();
        value.insert(
            Value::String("name".to_owned()),
            Value::String(hostile.to_owned()),
        );
        let value = Value::Mapping(value);
        let mut comments = Comments::new();
        comments.insert(
            "name".to_owned(),
            vec![format!("index `{hostile}` skipped")],
        );
        let rendered = render(&value, &comments);
        let back: Value = serde_yaml::from_str(&rendered)
            .unwrap_or_else(|error| panic!("rendering does not parse: {error}\n{rendered}"));
        assert_eq!(back, value, "{rendered}");
        assert_eq!(rendered.lines().count(), 2, "{rendered}");
        assert!(!rendered.contains('\u{1b}'), "{rendered:?}");
    }
}
