//! Unit tests of key paths, spans and the loading of shapes.

use std::path::Path;

use super::load_str;
use super::spans::{collect_spans, flow_too_deep, parent};
use super::{did_you_mean, join_index, join_key};
use crate::diag::Span;

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
    let spans = collect_spans(text).expect("spans").0;
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
