//! `pgspec validate` on broken and example specs: every diagnostic of a
//! broken spec, rendered without colour, is a reviewed snapshot, and the
//! examples validate cleanly and lower to a reviewed desired state.

use std::path::Path;

use pgspec::spec;

/// Loads and validates a fixture by its path relative to the crate root,
/// which is also how diagnostics name it, so snapshots do not depend on
/// where the repository is checked out.
fn rendered_errors(name: &str) -> String {
    let path = format!("tests/fixtures/invalid/{name}.yaml");
    match spec::load(Path::new(&path)).and_then(|loaded| loaded.validate()) {
        Ok(_) => panic!("{path} should not validate"),
        Err(diagnostics) => {
            assert!(diagnostics.has_errors(), "{path}: only warnings");
            diagnostics.render(false)
        }
    }
}

#[test]
fn misspelled_field_points_at_the_key_and_suggests_the_field() {
    insta::assert_snapshot!(rendered_errors("misspelled_field"));
}

#[test]
fn independent_errors_are_all_reported() {
    let rendered = rendered_errors("three_errors");
    assert!(rendered.contains("error: 3 errors in tests/fixtures/invalid/three_errors.yaml"));
    insta::assert_snapshot!(rendered);
}

/// Issue 17: client authentication rules are checked where they are
/// written: the type, method and options by name, addresses as CIDRs, no
/// address on a `local` rule and one on every other, `peer` on local
/// rules only, names pgspec can write without quotes.
#[test]
fn access_rules_are_checked_field_by_field() {
    insta::assert_snapshot!(rendered_errors("access_rules"));
}

#[test]
fn yaml_syntax_error_keeps_line_and_column() {
    insta::assert_snapshot!(rendered_errors("yaml_syntax"));
}

#[test]
fn identifier_of_64_bytes_is_rejected() {
    insta::assert_snapshot!(rendered_errors("long_identifier"));
}

/// Issue 15: `days: 999999999999999` overflowed in the backup agent, which
/// then removed every backup. Each retention value out of bounds is its
/// own error at its own key.
#[test]
fn retention_out_of_bounds_is_rejected() {
    insta::assert_snapshot!(rendered_errors("retention_bounds"));
}

/// Issue 25: `monitoring.thresholds` takes percentages, critical at least
/// warn, and no other fields.
#[test]
fn monitoring_thresholds_are_percentages_in_order() {
    insta::assert_snapshot!(rendered_errors("monitoring_thresholds"));
    insta::assert_snapshot!(rendered_errors("monitoring_percent"));
}

/// Issue 25: `monitoring.exporter` needs a pooler for its pooler exporter,
/// a port in range, and a role of its own.
#[test]
fn monitoring_exporter_is_checked() {
    insta::assert_snapshot!(rendered_errors("monitoring_exporter"));
}

#[test]
fn monitoring_thresholds_lower_with_defaults_for_the_rest() {
    let text = "version: 1\nname: ledger\npostgres:\n  connection: { host: localhost }\n\
                monitoring: { thresholds: { connections: { warn: 50% }, disk_free: { critical: 5% } } }\n";
    let spec = spec::load_str(Path::new("spec.yaml"), text)
        .and_then(|loaded| loaded.validate())
        .expect("valid")
        .spec;
    let connections = spec.monitoring.thresholds.connections;
    assert_eq!(
        (connections.warn_percent, connections.critical_percent),
        (50.0, 90.0)
    );
    let disk_free = spec.monitoring.thresholds.disk_free;
    assert_eq!(
        (disk_free.warn_percent, disk_free.critical_percent),
        (20.0, 5.0)
    );
}

#[test]
fn undeclared_roles_are_rejected() {
    insta::assert_snapshot!(rendered_errors("undeclared_role"));
}

#[test]
fn setting_units_follow_postgresql() {
    insta::assert_snapshot!(rendered_errors("bad_setting_unit"));
}

#[test]
fn preloaded_extension_missing_from_shared_preload_libraries() {
    insta::assert_snapshot!(rendered_errors("missing_preload"));
}

/// Issue 24: the container's name, the networks it joins and its
/// reservations are checked where the spec says them.
#[test]
fn compose_fields_point_at_their_keys() {
    insta::assert_snapshot!(rendered_errors("compose"));
}

#[test]
fn type_mismatches_are_all_reported() {
    insta::assert_snapshot!(rendered_errors("type_mismatch"));
}

#[test]
fn unreadable_file_names_the_file() {
    let error = spec::load(Path::new("tests/fixtures/invalid/does_not_exist.yaml"))
        .expect_err("missing file");
    let rendered = error.render(false);
    assert!(
        rendered.starts_with(
            "error: cannot read spec file `tests/fixtures/invalid/does_not_exist.yaml`"
        ),
        "{rendered}"
    );
}

fn validate_example(name: &str) -> spec::Validated {
    let path = format!("examples/{name}.yaml");
    let validated = spec::load(Path::new(&path))
        .and_then(|loaded| loaded.validate())
        .unwrap_or_else(|diagnostics| panic!("{path} should validate:\n{diagnostics}"));
    assert!(
        validated.warnings.is_empty(),
        "{path} has warnings:\n{}",
        validated.warnings
    );
    validated
}

#[test]
fn small_example_validates_cleanly() {
    let validated = validate_example("small");
    let deployment = &validated.spec.deployment;
    assert_eq!(deployment.name, "small");
    let extensions: Vec<&String> = deployment.databases["app"].extensions.keys().collect();
    assert_eq!(extensions, ["pg_trgm", "uuid-ossp"]);
}

#[test]
fn complete_example_validates_and_lowers() {
    let validated = validate_example("complete");
    insta::assert_yaml_snapshot!(validated.spec);
}

// Issue 16: in GitHub Actions, each diagnostic is also an annotation on the
// line it is about.
#[test]
fn diagnostics_as_github_annotations() {
    let path = "tests/fixtures/invalid/three_errors.yaml";
    let Err(diagnostics) = spec::load(Path::new(path)).and_then(|loaded| loaded.validate()) else {
        panic!("{path} should not validate");
    };
    insta::assert_snapshot!(diagnostics.github_annotations());
}

/// Runs `pgspec validate` on `text` written to a file, no terminal.
fn validate_text(text: &str) -> std::process::Output {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("spec.yaml");
    std::fs::write(&path, text).expect("write spec");
    std::process::Command::new(env!("CARGO_BIN_EXE_pgspec"))
        .args(["validate", "-f"])
        .arg(&path)
        .env("NO_COLOR", "1")
        .output()
        .expect("run pgspec")
}

/// Tens of thousands of bad entries give their errors promptly, the first
/// hundred shown and the rest counted, whatever kind of check they fail
/// (the schema walk, or the semantic checks that compare names).
/// Regression test for issue 15, part 6: the test completing is the proof.
#[test]
fn sixty_four_thousand_bad_entries_are_counted_not_all_shown() {
    const COUNT: usize = 64_000;
    let roles = |entry: &dyn Fn(usize) -> String| -> String {
        let mut text = "version: 1\nname: many\nroles:\n".to_owned();
        for index in 0..COUNT {
            text.push_str(&format!("  - {}\n", entry(index)));
        }
        text
    };
    for (text, first) in [
        (
            roles(&|_| "1".to_owned()),
            "error: expected a mapping, found an integer",
        ),
        (
            roles(&|index| format!("{{ name: r{index}, bogus: 1 }}")),
            "error: unknown field `bogus`",
        ),
        (
            roles(&|index| format!("{{ name: r{index}, member_of: [missing{index}] }}")),
            "error: role `missing0` is not declared",
        ),
    ] {
        let output = validate_text(&text);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        // One `error:` prefix: the rendered diagnostics carry their own.
        assert!(stderr.starts_with(first), "{stderr}");
        let more = COUNT - 100;
        assert!(
            stderr.contains(&format!("\n… and {more} more not shown\n")),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("error: {COUNT} errors in ")),
            "{stderr}"
        );
        assert!(stderr.len() < 200_000, "{} bytes", stderr.len());
    }
}

/// A document nested a hundred thousand levels deep is refused with a clear
/// error, not a stack overflow or minutes of parsing.
/// Regression test for issue 15, part 6.
#[test]
fn a_spec_nested_too_deep_is_refused() {
    const DEPTH: usize = 100_000;
    let block: String = (1..1_000)
        .map(|level| format!("{}- \n", " ".repeat(level)))
        .collect();
    for (text, line) in [
        (
            format!(
                "version: 1\nname: deep\nroles: {}{}\n",
                "[".repeat(DEPTH),
                "]".repeat(DEPTH)
            ),
            3,
        ),
        (
            format!(
                "version: 1\nname: deep\nroles: {}1{}\n",
                "{a: ".repeat(DEPTH),
                "}".repeat(DEPTH)
            ),
            3,
        ),
        (format!("version: 1\nname: deep\nroles:\n{block}"), 67),
    ] {
        let output = validate_text(&text);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with("error: the spec nests deeper than 64 levels\n"),
            "{stderr}"
        );
        assert!(stderr.contains(&format!("spec.yaml:{line}:")), "{stderr}");
    }
}

/// A UTF-8 byte order mark at the start of the file (some Windows editors
/// write one) is not part of the spec; lines are still counted right.
#[test]
fn a_byte_order_mark_is_accepted() {
    let output = validate_text("\u{feff}version: 1\nname: bom\n");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = validate_text("\u{feff}version: 1\nname: bom\nbogus: 1\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown field `bogus`"), "{stderr}");
    assert!(stderr.contains("spec.yaml:3:1"), "{stderr}");
}

// Issue 16: YAML diagnostics point at the mistake.
#[test]
fn a_duplicate_key_is_reported_at_its_second_occurrence() {
    insta::assert_snapshot!(rendered_errors("duplicate_key"));
}

#[test]
fn an_unclosed_bracket_is_reported_where_it_opens() {
    insta::assert_snapshot!(rendered_errors("unclosed_bracket"));
}

#[test]
fn tab_indentation_says_tabs_are_not_allowed() {
    insta::assert_snapshot!(rendered_errors("tab_indentation"));
}

#[test]
fn carets_line_up_under_wide_characters() {
    insta::assert_snapshot!(rendered_errors("wide_characters"));
}

#[test]
fn a_misspelled_server_setting_is_caught_with_did_you_mean() {
    insta::assert_snapshot!(rendered_errors("misspelled_setting"));
}

/// Issue 19: one `physical` schedule, which takes no format or databases;
/// `verify` is a cron expression; `max_lag` a duration, and only with WAL
/// streaming.
#[test]
fn physical_backups_and_their_lag_are_checked() {
    insta::assert_snapshot!(rendered_errors("physical_backup"));
    insta::assert_snapshot!(rendered_errors("max_lag_without_physical"));
}

#[test]
fn a_physical_schedule_lowers_to_a_tar_of_the_whole_cluster() {
    let text = "version: 1\nname: threadr\npostgres:\n  image: postgres:17\n\
                databases:\n  - name: threadr\n\
                backup:\n  schedules:\n    - { name: base, schedule: \"0 3 * * *\", kind: physical, \
                verify: \"0 4 1 * *\" }\n  max_lag: 1h\n  destination: { volume: b }\n";
    let spec = spec::load_str(Path::new("spec.yaml"), text)
        .and_then(|loaded| loaded.validate())
        .expect("valid")
        .spec;
    let backup = spec.deployment.backup.expect("a backup");
    let base = &backup.schedules["base"];
    assert_eq!(
        (base.kind.as_str(), base.format.as_str()),
        ("physical", "tar")
    );
    assert!(base.databases.is_empty());
    assert_eq!(base.verify.as_deref(), Some("0 4 1 * *"));
    assert_eq!(backup.max_lag_seconds, Some(3600));
}

/// Issue 18: `replicas` is checked where it is written: `count` or `list`,
/// replica names that can name a slot, ports, per-replica settings, the
/// replication role's password, and `wal_level`, `max_wal_senders` and
/// `max_replication_slots` too low for the replicas; a read-only pool's
/// database is one the spec declares.
#[test]
fn replicas_are_checked_field_by_field() {
    insta::assert_snapshot!(rendered_errors("replicas"));
}
