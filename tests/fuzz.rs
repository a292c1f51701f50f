//! Hostile input to load + validate: arbitrary text and arbitrary YAML
//! documents never make pgspec panic; they load, or fail with diagnostics.

use std::path::Path;

use proptest::prelude::*;

fn check(text: &str) {
    match pgspec::spec::load_str(Path::new("fuzz.yaml"), text).and_then(|loaded| loaded.validate())
    {
        Ok(_) => {}
        Err(diagnostics) => {
            assert!(
                diagnostics.has_errors(),
                "an Err carries at least one error"
            );
            let _ = diagnostics.render(false);
            let _ = diagnostics.render(true);
        }
    }
}

/// YAML-shaped documents built from the spec's own vocabulary, so the
/// generator reaches deep into the validator, not only the parser.
fn yaml_value() -> impl Strategy<Value = serde_yaml::Value> {
    let keys = prop::sample::select(vec![
        "version",
        "name",
        "postgres",
        "image",
        "port",
        "settings",
        "roles",
        "databases",
        "extensions",
        "grants",
        "indexes",
        "columns",
        "table",
        "privileges",
        "role",
        "schema",
        "tables",
        "default_for",
        "backup",
        "schedule",
        "pooler",
        "owner",
        "password",
        "env",
        "file",
        "member_of",
        "where",
        "using",
        "resources",
        "memory",
        "cpus",
        "prune",
        "ownr",
    ]);
    let leaf = prop_oneof![
        Just(serde_yaml::Value::Null),
        any::<bool>().prop_map(serde_yaml::Value::Bool),
        any::<i64>().prop_map(|number| serde_yaml::Value::Number(number.into())),
        "[a-zA-Z0-9_ \"';.*@-]{0,70}".prop_map(serde_yaml::Value::String),
        Just(serde_yaml::Value::String("all".into())),
        Just(serde_yaml::Value::String("256MB".into())),
        Just(serde_yaml::Value::String("* * * * *".into())),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_yaml::Value::Sequence),
            prop::collection::vec((keys.clone(), inner), 0..6).prop_map(|entries| {
                serde_yaml::Value::Mapping(
                    entries
                        .into_iter()
                        .map(|(key, value)| (serde_yaml::Value::String(key.to_owned()), value))
                        .collect(),
                )
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        check(&text);
    }

    #[test]
    fn arbitrary_documents_never_panic(value in yaml_value()) {
        let text = serde_yaml::to_string(&value).unwrap_or_default();
        check(&text);
    }

    #[test]
    fn spec_shaped_documents_never_panic(
        databases in yaml_value(),
        roles in yaml_value(),
        postgres in yaml_value(),
    ) {
        let mut document = serde_yaml::Mapping::new();
        document.insert("version".into(), 1.into());
        document.insert("name".into(), "fuzz".into());
        document.insert("databases".into(), databases);
        document.insert("roles".into(), roles);
        document.insert("postgres".into(), postgres);
        let text = serde_yaml::to_string(&serde_yaml::Value::Mapping(document)).unwrap_or_default();
        check(&text);
    }
}
