//! The committed JSON Schema is the one the code generates.

#[test]
fn committed_schema_is_current() {
    let generated = pgspec::spec::file::json_schema();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/pgspec.schema.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/pgspec.schema.json is stale; refresh it with\n    cargo run -q -- schema > schema/pgspec.schema.json"
    );
}

#[test]
fn binary_prints_the_same_schema() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pgspec"))
        .arg("schema")
        .output()
        .expect("run pgspec schema");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        pgspec::spec::file::json_schema()
    );
}
