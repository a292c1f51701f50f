//! Plans of a deployment that fits into an existing Compose setup: a
//! container named by the spec, networks it joins with aliases, CPU and
//! memory reservations, and a server container pgspec did not create
//! (adopted when it matches the spec, refused when it does not). Each case
//! is a spec, a recorded live state and a reviewed snapshot of text and
//! JSON.

mod plan_check;

fn check(name: &str, desired_yaml: &str, live_json: &str) {
    let (text, json) = plan_check::renderings(desired_yaml, live_json);
    insta::assert_snapshot!(format!("{name}_text"), text);
    insta::assert_snapshot!(format!("{name}_json"), json);
}

/// feedback-engine's server as its Compose file runs it: the application
/// reaches it as `postgres` on the project's network.
const SPEC: &str = r#"
version: 1
name: ffe
postgres:
  image: postgres:16.4
  container_name: ffe-db
  bind_address: 0.0.0.0
  networks: [{ name: ffe_default, aliases: [postgres] }]
  resources: { memory: 2GiB, reservations: { cpus: 2, memory: 1GiB } }
  superuser: { password: { env: FFE_PG_PASSWORD } }
"#;

/// The live server container as a runbook started it, with `fields` (a
/// JSON object) added or overriding.
fn live(fields: &str) -> String {
    let mut live: serde_json::Value = serde_json::from_str(
        r#"{ "name": "ffe",
             "container": { "name": "ffe-db", "image": "postgres:16.4", "port": 5432,
                            "bind_address": "0.0.0.0", "volume": "ffe-pgdata",
                            "data_mount": "/var/lib/postgresql/data", "pgdata": "/var/lib/postgresql/data",
                            "data_kind": "volume", "superuser": "postgres", "state": "running",
                            "id": "4f1c", "image_id": "sha256:1", "data_major": 16, "volume_exists": true },
             "images": { "postgres:16.4": { "id": "sha256:1", "pg_major": 16, "pgdata": "/var/lib/postgresql/data", "volumes": ["/var/lib/postgresql/data"] } },
             "server": { "version_num": 160004, "data_directory": "/var/lib/postgresql/data" } }"#,
    )
    .expect("live json");
    let fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(fields).expect("fields json");
    for (field, value) in fields {
        live["container"][field] = value;
    }
    live.to_string()
}

/// What `docker run --name ffe-db -v ffe-pgdata:/var/lib/postgresql/data
/// -p 5432:5432 --network ffe_default --network-alias db postgres:16.4`
/// leaves: no labels, no health check, no restart policy.
const RUNBOOK: &str = r#"{ "foreign": true, "restart_policy": "no",
    "networks": [{ "name": "ffe_default", "aliases": ["db"] }] }"#;

#[test]
fn a_runbook_container_that_matches_is_adopted_in_place() {
    check("adopt_runbook_container", SPEC, &live(RUNBOOK));
}

#[test]
fn an_adopted_container_in_sync_has_nothing_to_do() {
    check(
        "adopted_in_sync",
        SPEC,
        &live(
            r#"{ "foreign": true, "restart_policy": "unless-stopped", "memory_bytes": 2147483648,
               "cpu_shares": 2048, "memory_reservation_bytes": 1073741824,
               "network": "ffe-net", "network_exists": true,
               "networks": [{ "name": "bridge" }, { "name": "ffe_default", "aliases": ["db", "postgres"] }] }"#,
        ),
    );
}

#[test]
fn a_runbook_container_that_differs_is_refused_not_replaced() {
    check(
        "adoption_refused",
        SPEC,
        &live(
            r#"{ "foreign": true, "image": "postgres:15", "port": 5433, "superuser": "somali",
               "volume": "pgdata" }"#,
        ),
    );
}

#[test]
fn another_container_on_the_data_volume_stops_a_create() {
    check(
        "shared_volume_refused",
        SPEC,
        r#"{ "name": "ffe",
             "container": { "name": "ffe-db", "image": "", "port": 0, "bind_address": "",
                            "volume": "", "data_mount": "", "superuser": "", "state": "missing",
                            "volume_exists": true, "volume_users": ["ffe-postgres-1"] } }"#,
    );
}

#[test]
fn a_network_that_does_not_exist_is_a_plan_error() {
    check(
        "absent_network",
        SPEC,
        &live(r#"{ "absent_networks": ["ffe_default"] }"#),
    );
}

#[test]
fn reservations_and_aliases_change_in_place() {
    check(
        "reservations_and_aliases_in_place",
        SPEC,
        &live(
            r#"{ "restart_policy": "unless-stopped", "memory_bytes": 2147483648,
               "cpu_shares": 1024, "network": "ffe-net", "network_exists": true,
               "health_check": ["CMD", "pg_isready", "--quiet", "--host", "127.0.0.1", "--port", "5432", "--dbname", "postgres", "--username", "postgres"],
               "networks": [{ "name": "ffe_default", "aliases": ["db"] }] }"#,
        ),
    );
}

#[test]
fn a_new_container_joins_its_networks_before_it_starts() {
    check(
        "create_with_networks",
        SPEC,
        r#"{ "name": "ffe",
             "container": { "name": "ffe-db", "image": "", "port": 0, "bind_address": "",
                            "volume": "", "data_mount": "", "superuser": "", "state": "missing",
                            "volume_exists": false } }"#,
    );
}

/// The Compose project's network as the deployment's own
/// (`postgres.network`): the runbook's container is on it already, so the
/// adoption is recorded by a mark in its data directory, and the alias the
/// spec adds there is joined by reconnecting it.
#[test]
fn on_the_compose_network_adoption_is_marked_in_the_data_directory() {
    let spec = SPEC.replace(
        "networks: [{ name: ffe_default, aliases: [postgres] }]",
        "network: { name: ffe_default, aliases: [postgres] }",
    );
    check(
        "adopt_on_compose_network",
        &spec,
        &live(
            r#"{ "foreign": true, "restart_policy": "no",
               "network": "ffe_default", "network_exists": true,
               "networks": [{ "name": "ffe_default", "aliases": ["db"] }] }"#,
        ),
    );
}
