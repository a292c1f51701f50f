//! Unit tests of `postgres.tls` and the connection's TLS fields.

use std::path::Path;

use super::Validated;
use crate::diag::Diagnostics;
use crate::model::TlsSource;
use crate::spec::load_str;

fn validate(text: &str) -> Result<Validated, Diagnostics> {
    load_str(Path::new("specs/spec.yaml"), text)?.validate()
}

fn errors(text: &str) -> Vec<String> {
    match validate(text) {
        Ok(_) => Vec::new(),
        Err(diagnostics) => diagnostics
            .items
            .iter()
            .map(|item| {
                format!(
                    "{}: {}",
                    item.path.as_deref().unwrap_or_default(),
                    item.message
                )
            })
            .collect(),
    }
}

fn spec(tls: &str) -> String {
    format!("version: 1\nname: x\npostgres:\n  image: postgres:17\n  tls: {tls}\n")
}

#[test]
fn a_generated_certificate_lowers_to_its_names_and_the_ssl_settings() {
    let validated = validate(&spec(
        "{ generate: self-signed, names: [db.example], min_protocol_version: TLSv1.3 }",
    ))
    .expect("valid");
    let deployment = &validated.spec.deployment;
    let tls = deployment.tls.as_ref().expect("tls");
    assert_eq!(
        tls.source,
        Some(TlsSource::SelfSigned {
            names: ["127.0.0.1", "db.example", "localhost", "x-postgres"]
                .map(str::to_owned)
                .to_vec()
        })
    );
    let settings: Vec<(&str, &str)> = deployment
        .settings
        .iter()
        .map(|(name, setting)| (name.as_str(), setting.value.as_str()))
        .collect();
    assert_eq!(
        settings,
        [
            ("ssl", "on"),
            ("ssl_cert_file", "pgspec-tls/server.crt"),
            ("ssl_key_file", "pgspec-tls/server.key"),
            ("ssl_min_protocol_version", "TLSv1.3"),
        ]
    );
}

#[test]
fn files_are_references_relative_to_the_spec_and_a_ca_sets_ssl_ca_file() {
    let validated = validate(&spec(
        "{ certificate: { file: certs/server.crt }, key: { env: KEY }, ca: { file: ca.crt }, require: true }",
    ))
    .expect("valid");
    let deployment = &validated.spec.deployment;
    let tls = deployment.tls.as_ref().expect("tls");
    assert!(tls.require);
    let Some(TlsSource::Files {
        certificate, ca, ..
    }) = &tls.source
    else {
        panic!("{tls:?}")
    };
    assert_eq!(certificate.describe(), "file `specs/certs/server.crt`");
    assert!(ca.is_some());
    assert_eq!(
        deployment.settings["ssl_ca_file"].value,
        "pgspec-tls/ca.crt"
    );
}

#[test]
fn bad_tls_specs_are_errors_naming_the_field() {
    let cases = [
        (
            spec("{ generate: self-signed, certificate: { file: a }, key: { file: b } }"),
            "postgres.tls.generate: `generate` and `certificate`/`key` exclude each other",
        ),
        (
            spec("{ certificate: { file: a } }"),
            "postgres.tls: `certificate` needs `key`",
        ),
        (
            spec("{ require: true }"),
            "postgres.tls: `postgres.tls` needs `certificate` and `key`, or `generate: self-signed`",
        ),
        (
            spec("{ generate: self-signed, ca: { file: ca.crt } }"),
            "postgres.tls.ca: a generated certificate comes with pgspec's own CA",
        ),
        (
            spec("{ generate: self-signed, min_protocol_version: TLSv1.4 }"),
            "postgres.tls.min_protocol_version: unknown TLS version `TLSv1.4`",
        ),
        (
            spec("{ generate: self-signed, names: ['a b'] }"),
            "postgres.tls.names[0]: `a b` is not a host name or address",
        ),
        (
            "version: 1\nname: x\npostgres:\n  tls: { generate: self-signed }\n".to_owned(),
            "postgres.tls: `postgres.tls` needs `postgres.image`",
        ),
        (
            "version: 1\nname: x\npostgres:\n  image: postgres:17\n  settings: { ssl: on }\n  \
             tls: { generate: self-signed }\n"
                .to_owned(),
            "postgres.settings.ssl: `ssl` is set by `postgres.tls`",
        ),
        (
            "version: 1\nname: x\npostgres:\n  connection: { sslmode: verify_full }\n".to_owned(),
            "postgres.connection.sslmode: unknown sslmode `verify_full`",
        ),
    ];
    for (text, expected) in cases {
        let found = errors(&text);
        assert!(
            found.iter().any(|error| error == expected),
            "{text}\nexpected {expected}\nfound {found:?}"
        );
    }
    assert!(
        errors("version: 1\nname: x\npostgres:\n  generate: x\n").len() == 1,
        "unknown fields are still refused"
    );
}

#[test]
fn the_connection_keeps_its_sslmode_and_root_certificate() {
    let validated = validate(
        "version: 1\nname: x\npostgres:\n  connection: { sslmode: verify-full, sslrootcert: ca.crt }\n",
    )
    .expect("valid");
    let connection = &validated.spec.connection;
    assert_eq!(connection.sslmode.as_deref(), Some("verify-full"));
    assert_eq!(
        connection.sslrootcert.as_deref(),
        Some(Path::new("specs/ca.crt"))
    );
}
