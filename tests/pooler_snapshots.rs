//! Issue #6: plans for the PgBouncer pooler as people and programs read them.
//! Each case is a desired spec (YAML), a live state (JSON, as
//! `live::observe` records it) and a reviewed snapshot of the text and JSON:
//! a new pooler, pool sizes changed online, drift set by hand on the console,
//! a stale auth file, and a new port that replaces only the pooler.

mod plan_check;

/// Diffs a spec against a recorded live state and snapshots both renderings.
fn check(name: &str, desired_yaml: &str, live_json: &str) {
    let (text, json) = plan_check::renderings(desired_yaml, live_json);
    insta::assert_snapshot!(format!("{name}_text"), text);
    insta::assert_snapshot!(format!("{name}_json"), json);
}

/// The feedback-engine deployment: transaction pooling, 20 per pool, 1000
/// clients, and a smaller pool for its read-only database.
fn spec(pooler_port: u16, default_pool_size: u32) -> String {
    format!(
        r#"
version: 1
name: ffe
postgres:
  image: postgres:17.2
  port: 5433
  superuser: {{ password: {{ env: FFE_PG_PASSWORD }} }}
pooler:
  image: pgspec-test/pgbouncer:1
  port: {pooler_port}
  pool_mode: transaction
  default_pool_size: {default_pool_size}
  max_client_conn: 1000
  server_idle_timeout: 10min
  databases:
    ffe_ro: {{ pool_size: 5, max_db_connections: 10 }}
roles:
  - name: ffe_user
    login: true
databases:
  - name: ffe
  - name: ffe_ro
"#
    )
}

/// A server in sync with `spec`, and the pooler as given.
fn live(pooler: &str) -> String {
    format!(
        r#"{{ "name": "ffe",
             "container": {{ "name": "ffe-postgres", "image": "postgres:17.2", "port": 5433,
                            "bind_address": "127.0.0.1", "volume": "ffe-pgdata",
                            "data_mount": "/var/lib/postgresql/data", "pgdata": "/var/lib/postgresql/data", "data_kind": "volume", "superuser": "postgres",
                            "state": "running", "id": "abc", "image_id": "sha256:1", "data_major": 17,
                            "volume_exists": true, "network": "ffe-net", "network_exists": true,
                            "restart_policy": "unless-stopped",
                            "health_check": ["CMD", "pg_isready", "--quiet", "--host", "127.0.0.1", "--port", "5432", "--dbname", "postgres", "--username", "postgres"] }},
             "images": {{ "pgspec-test/pgbouncer:1": {{ "id": "sha256:b1" }} }},
             "server": {{ "version_num": 170002, "current_user": "postgres" }},
             "roles": {{
                 "postgres": {{ "name": "postgres", "login": true, "superuser": true, "createdb": true,
                               "createrole": true, "replication": true, "bypassrls": true,
                               "inherit": true, "connection_limit": -1 }},
                 "ffe_user": {{ "name": "ffe_user", "login": true, "superuser": false, "createdb": false,
                               "createrole": false, "replication": false, "bypassrls": false,
                               "inherit": true, "connection_limit": -1, "managed": true }} }},
             "databases": {{
                 "ffe": {{ "name": "ffe", "owner": "postgres" }},
                 "ffe_ro": {{ "name": "ffe_ro", "owner": "postgres" }} }}
             {pooler} }}"#
    )
}

/// A running pooler reporting `default_pool_size` on its console.
fn running_pooler(port: u16, default_pool_size: u32, users: &str) -> String {
    console_pooler(port, default_pool_size, "scram-sha-256", users)
}

/// A running pooler reporting `default_pool_size` and `auth_type`.
fn console_pooler(port: u16, default_pool_size: u32, auth_type: &str, users: &str) -> String {
    format!(
        r#", "pooler": {{ "image": "pgspec-test/pgbouncer:1", "port": {port}, "bind_address": "127.0.0.1",
             "id": "def", "image_id": "sha256:b1", "network": "ffe-net",
             "settings": {{ "pool_mode": "transaction", "default_pool_size": "{default_pool_size}",
                           "max_client_conn": "1000", "server_idle_timeout": "600",
                           "min_pool_size": "0", "listen_port": "6432",
                           "auth_type": "{auth_type}", "auth_file": "/etc/pgbouncer/userlist.txt",
                           "admin_users": "postgres", "ignore_startup_parameters": "extra_float_digits" }},
             "databases": {{
                 "ffe": {{ "pool_size": "{default_pool_size}", "max_db_connections": "0" }},
                 "ffe_ro": {{ "pool_size": "5", "max_db_connections": "10" }},
                 "pgbouncer": {{ "pool_size": "2", "pool_mode": "statement", "max_db_connections": "0" }} }},
             "users": {users} }}"#
    )
}

const CURRENT_USERS: &str = r#"{ "ffe_user": "current", "postgres": "current" }"#;

#[test]
fn new_pooler_is_created_beside_the_server() {
    check(
        "pooler_create",
        &spec(6432, 20),
        &live(
            r#", "pooler": { "image": "", "port": 0, "bind_address": "", "settings": {}, "state": "missing" }"#,
        ),
    );
}

#[test]
fn in_sync_pooler_has_nothing_to_do() {
    check(
        "pooler_in_sync",
        &spec(6432, 20),
        &live(&running_pooler(6432, 20, CURRENT_USERS)),
    );
}

#[test]
fn pool_size_changes_in_place_with_a_reload() {
    check(
        "pooler_update",
        &spec(6432, 40),
        &live(&running_pooler(6432, 20, CURRENT_USERS)),
    );
}

#[test]
fn stale_auth_file_is_rewritten_and_reloaded() {
    check(
        "pooler_stale_users",
        &spec(6432, 20),
        &live(&running_pooler(
            6432,
            20,
            r#"{ "ffe_user": "stale", "postgres": "current", "old_app": "current" }"#,
        )),
    );
}

#[test]
fn new_port_replaces_only_the_pooler() {
    check(
        "pooler_replace",
        &spec(6433, 20),
        &live(&running_pooler(6432, 20, CURRENT_USERS)),
    );
}

/// The spec without its pooler, with or without pruning.
fn spec_without_pooler(prune: bool) -> String {
    let full = spec(6432, 20);
    let start = full.find("pooler:").expect("pooler section");
    let end = full.find("roles:").expect("roles section");
    format!("prune: {prune}\n{}{}", &full[..start], &full[end..])
}

#[test]
fn pooler_left_out_of_the_spec_is_reported() {
    check(
        "pooler_unmanaged",
        &spec_without_pooler(false),
        &live(
            r#", "pooler": { "image": "pgspec-test/pgbouncer:1", "port": 0, "bind_address": "", "settings": {}, "id": "def" }"#,
        ),
    );
}

#[test]
fn pooler_left_out_of_the_spec_is_removed_when_pruning() {
    check(
        "pooler_pruned",
        &spec_without_pooler(true),
        &live(
            r#", "pooler": { "image": "pgspec-test/pgbouncer:1", "port": 0, "bind_address": "", "settings": {}, "id": "def" }"#,
        ),
    );
}

#[test]
fn stopped_pooler_is_configured_and_started() {
    check(
        "pooler_stopped",
        &spec(6432, 20),
        &live(
            r#", "pooler": { "image": "pgspec-test/pgbouncer:1", "port": 6432, "bind_address": "127.0.0.1",
                 "settings": {}, "state": "stopped", "id": "def", "image_id": "sha256:b1",
                 "network": "ffe-net", "users": { "ffe_user": "current", "postgres": "current" } }"#,
        ),
    );
}

#[test]
fn role_created_in_the_same_plan_reaches_the_auth_file() {
    let spec = spec(6432, 20).replace(
        "roles:\n",
        "roles:\n  - name: ffe_reader\n    login: true\n    password: { env: FFE_READER_PASSWORD }\n",
    );
    check(
        "pooler_new_role",
        &spec,
        &live(&running_pooler(6432, 20, CURRENT_USERS)),
    );
}

#[test]
fn values_set_by_hand_on_the_console_are_drift() {
    check(
        "pooler_console_drift",
        &spec(6432, 20),
        &live(&console_pooler(6432, 5, "trust", CURRENT_USERS)),
    );
}
