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
