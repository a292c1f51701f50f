//! Issue 25: plans for `monitoring.exporter` as people and programs read
//! them. A desired spec (YAML), a recorded live state (JSON) and a reviewed
//! snapshot of the text: new exporters with their monitoring role and the
//! pooler's `stats_users`, a stopped exporter (drift), a new image, and a
//! stale password file.

mod plan_check;

fn check(name: &str, desired_yaml: &str, live_json: &str) {
    let (text, _) = plan_check::renderings(desired_yaml, live_json);
    insta::assert_snapshot!(name, text);
}

fn spec(image: &str) -> String {
    format!(
        r#"
version: 1
name: ledger
postgres:
  image: postgres:17.2
  port: 5433
  superuser: {{ password: {{ env: LEDGER_PG_PASSWORD }} }}
monitoring:
  exporter:
    image: {image}
    port: 9187
    password: {{ env: LEDGER_MONITOR_PASSWORD }}
"#
    )
}

fn live(monitor: &str, exporters: &str) -> String {
    format!(
        r#"{{ "name": "ledger",
             "container": {{ "name": "ledger-postgres", "image": "postgres:17.2", "port": 5433,
                            "bind_address": "127.0.0.1", "volume": "ledger-pgdata",
                            "data_mount": "/var/lib/postgresql/data", "pgdata": "/var/lib/postgresql/data", "data_kind": "volume", "superuser": "postgres",
                            "state": "running", "id": "abc", "image_id": "sha256:1", "data_major": 17,
                            "volume_exists": true, "network": "ledger-net", "network_exists": true,
                            "restart_policy": "unless-stopped",
                            "health_check": ["CMD", "pg_isready", "--quiet", "--host", "127.0.0.1", "--port", "5432", "--dbname", "postgres", "--username", "postgres"] }},
             "images": {{ "exporter:1": {{ "id": "sha256:e1" }}, "exporter:2": {{ "id": "sha256:e2" }} }},
             "server": {{ "version_num": 170002, "current_user": "postgres" }},
             "roles": {{
                 "postgres": {{ "name": "postgres", "login": true, "superuser": true, "createdb": true,
                               "createrole": true, "replication": true, "bypassrls": true,
                               "inherit": true, "connection_limit": -1 }}
                 {monitor} }}
             {exporters} }}"#
    )
}

const MONITOR: &str = r#", "pgspec_monitor": { "name": "pgspec_monitor", "login": true, "superuser": false,
    "createdb": false, "createrole": false, "replication": false, "bypassrls": false,
    "inherit": true, "connection_limit": -1, "managed": true, "password_state": "matches",
    "member_of": ["pg_monitor"] }"#;

/// The exporter as `live::exporter` reads it, in `state`, running `image_id`.
fn exporter(state: &str, image: &str, password_matches: bool) -> String {
    let desired = pgspec::spec::load_str(std::path::Path::new("spec.yaml"), &spec("exporter:1"))
        .and_then(|loaded| loaded.validate())
        .unwrap_or_else(|diagnostics| panic!("{}", diagnostics.render(false)))
        .spec
        .deployment;
    let hash = desired
        .exporters
        .values()
        .next()
        .expect("an exporter")
        .config_hash(&desired);
    format!(
        r#", "exporters": {{ "postgres": {{ "kind": "postgres", "image": "{image}", "port": 9187,
             "bind_address": "127.0.0.1", "role": "pgspec_monitor", "state": "{state}",
             "image_id": "sha256:e1", "config_hash": "{hash}", "password_matches": {password_matches} }} }}"#
    )
}

#[test]
fn a_new_exporter_with_its_role() {
    check("exporter_new", &spec("exporter:1"), &live("", ""));
}

#[test]
fn an_exporter_in_sync_plans_nothing() {
    let (text, _) = plan_check::renderings(
        &spec("exporter:1"),
        &live(MONITOR, &exporter("running", "exporter:1", true)),
    );
    assert!(text.contains("No changes"), "{text}");
}

#[test]
fn a_stopped_exporter_is_started() {
    check(
        "exporter_stopped",
        &spec("exporter:1"),
        &live(MONITOR, &exporter("stopped", "exporter:1", true)),
    );
}

#[test]
fn a_new_image_replaces_the_exporter() {
    check(
        "exporter_new_image",
        &spec("exporter:2"),
        &live(MONITOR, &exporter("running", "exporter:1", true)),
    );
}

#[test]
fn a_stale_password_file_is_written_again() {
    check(
        "exporter_stale_password",
        &spec("exporter:1"),
        &live(MONITOR, &exporter("running", "exporter:1", false)),
    );
}
