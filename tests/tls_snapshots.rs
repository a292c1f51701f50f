//! Issue #17: plans for the server's TLS as people and programs read them.
//! Each case is a desired spec (YAML), a live state (JSON, as
//! `live::observe` records it) and a reviewed snapshot of the text and
//! JSON. Certificates show by fingerprint, subject and expiry only.

mod plan_check;

/// Diffs a spec against a recorded live state and snapshots both renderings.
fn check(name: &str, desired_yaml: &str, live_json: &str) {
    let (text, json) = plan_check::renderings(desired_yaml, live_json);
    insta::assert_snapshot!(format!("{name}_text"), text);
    insta::assert_snapshot!(format!("{name}_json"), json);
}

const SPEC: &str = r#"
version: 1
name: ledger
postgres:
  image: postgres:17.2
  port: 5433
  superuser: { password: { env: LEDGER_PG_PASSWORD } }
  tls:
    certificate: { file: /etc/ledger/server.crt }
    key: { env: LEDGER_TLS_KEY }
    min_protocol_version: TLSv1.3
"#;

/// The running ledger server with TLS on, its certificate and the spec's.
fn live(installed: &str, wanted: &str) -> String {
    format!(
        r#"{{ "name": "ledger",
             "container": {{ "name": "ledger-postgres", "image": "postgres:17.2", "port": 5433,
                            "bind_address": "127.0.0.1", "volume": "ledger-pgdata",
                            "data_mount": "/var/lib/postgresql/data", "pgdata": "/var/lib/postgresql/data", "data_kind": "volume",
                            "superuser": "postgres", "state": "running",
                            "id": "abc", "image_id": "sha256:1", "data_major": 17, "volume_exists": true,
                            "network": "ledger-net", "network_exists": true, "restart_policy": "unless-stopped",
                            "health_check": ["CMD", "pg_isready", "--quiet", "--host", "127.0.0.1", "--port", "5432", "--dbname", "postgres", "--username", "postgres"] }},
             "server": {{ "version_num": 170002 }},
             "settings": {{
                 "ssl": {{ "value": "on", "vartype": "bool", "context": "sighup" }},
                 "ssl_cert_file": {{ "value": "pgspec-tls/server.crt", "vartype": "string", "context": "sighup" }},
                 "ssl_key_file": {{ "value": "pgspec-tls/server.key", "vartype": "string", "context": "sighup" }},
                 "ssl_min_protocol_version": {{ "value": "TLSv1.2", "vartype": "enum", "context": "sighup" }} }},
             "databases": {{ "postgres": {{ "name": "postgres", "owner": "postgres" }} }},
             "tls": {{ "installed": {installed}, "wanted": {wanted} }} }}"#
    )
}

fn certificate(fingerprint: char, extra: &str) -> String {
    format!(
        r#"{{ "certificate": {{ "fingerprint": "{}", "subject": "CN=db.ledger.internal",
              "names": ["db.ledger.internal"], "not_after": 1900000000 {extra} }}, "key_ok": true }}"#,
        fingerprint.to_string().repeat(64)
    )
}

#[test]
fn a_new_certificate_is_written_and_reloaded_by_fingerprint() {
    check(
        "tls_certificate_changed",
        SPEC,
        &live(&certificate('a', ""), &certificate('b', "")),
    );
}

#[test]
fn a_certificate_near_its_expiry_is_a_note() {
    let soon = certificate('c', r#", "expires_soon": true"#);
    check("tls_certificate_expires_soon", SPEC, &live(&soon, &soon));
}
