//! Plan output is what users read: every case is a desired spec (YAML), a
//! live state (JSON, as `live::observe` would record it) and a reviewed
//! snapshot of the rendered text and JSON.

mod plan_check;

/// Diffs a spec against a recorded live state and snapshots both renderings.
fn check(name: &str, desired_yaml: &str, live_json: &str) {
    let (text, json) = plan_check::renderings(desired_yaml, live_json);
    insta::assert_snapshot!(format!("{name}_text"), text);
    insta::assert_snapshot!(format!("{name}_json"), json);
}

/// The container part of the ledger deployment, as a literal so the whole
/// spec can be made from it with `concat!`.
macro_rules! container_only_spec {
    () => {
        r#"
version: 1
name: ledger
postgres:
  image: postgres:17.2
  port: 5433
  resources: { cpus: 4, memory: 8GiB }
  superuser: { password: { env: LEDGER_PG_PASSWORD } }
"#
    };
}

const CONTAINER_SPEC: &str = concat!(
    container_only_spec!(),
    r#"databases:
  - name: somali_nlp
    extensions: [pg_trgm, { name: pg_stat_statements, version: "1.10" }]
"#
);

#[test]
fn empty_host_creates_everything() {
    check(
        "empty_host",
        CONTAINER_SPEC,
        r#"{ "name": "ledger",
             "container": { "name": "ledger-postgres", "image": "", "port": 0, "bind_address": "",
                            "volume": "", "data_mount": "", "superuser": "", "state": "missing",
                            "volume_exists": false } }"#,
    );
}

/// The ledger's deployment as it runs, matching `CONTAINER_SPEC`.
const LEDGER_IN_SYNC: &str = r#"{ "name": "ledger",
             "container": { "name": "ledger-postgres", "image": "postgres:17.2", "port": 5433,
                            "bind_address": "127.0.0.1", "volume": "ledger-pgdata",
                            "data_mount": "/var/lib/postgresql/data", "pgdata": "/var/lib/postgresql/data", "data_kind": "volume", "nano_cpus": 4000000000,
                            "memory_bytes": 8589934592, "superuser": "postgres", "state": "running",
                            "id": "abc", "image_id": "sha256:1", "data_major": 17, "volume_exists": true,
                            "network": "ledger-net", "network_exists": true, "restart_policy": "unless-stopped",
                            "health_check": ["CMD", "pg_isready", "--quiet", "--host", "127.0.0.1", "--port", "5432", "--dbname", "postgres", "--username", "postgres"] },
             "server": { "version_num": 170002, "available_extensions": {
                 "pg_trgm": { "default_version": "1.6", "versions": ["1.5", "1.6"] },
                 "pg_stat_statements": { "default_version": "1.11", "versions": ["1.10", "1.11"] } } },
             "databases": {
                 "postgres": { "name": "postgres", "owner": "postgres" },
                 "somali_nlp": { "name": "somali_nlp", "owner": "postgres", "extensions": {
                     "pg_trgm": { "name": "pg_trgm", "version": "1.6", "schema": "public", "managed": true },
                     "pg_stat_statements": { "name": "pg_stat_statements", "version": "1.10", "schema": "public" },
                     "plpgsql": { "name": "plpgsql", "version": "1.0", "schema": "pg_catalog" } } } } }"#;

#[test]
fn in_sync_deployment_has_nothing_to_do() {
    check("in_sync", CONTAINER_SPEC, LEDGER_IN_SYNC);
}

#[test]
fn limits_the_spec_no_longer_sets_are_lifted_by_a_replace() {
    // `docker update` keeps a limit it is given zero for: only a new
    // container has none.
    let spec = CONTAINER_SPEC.replace("  resources: { cpus: 4, memory: 8GiB }\n", "");
    check("lifted_limits", &spec, LEDGER_IN_SYNC);
    // A container pgspec did not create is never recreated for them: it
    // keeps its limits, and the plan says so.
    let foreign = LEDGER_IN_SYNC.replacen(
        r#""state": "running","#,
        r#""state": "running", "foreign": true,"#,
        1,
    );
    check("kept_limits", &spec, &foreign);
}

#[test]
fn image_change_replaces_and_resources_update_in_place() {
    check(
        "replace_container",
        CONTAINER_SPEC,
        r#"{ "name": "ledger",
             "container": { "name": "ledger-postgres", "image": "postgres:17.1", "port": 5433,
                            "bind_address": "127.0.0.1", "volume": "ledger-pgdata",
                            "data_mount": "/var/lib/postgresql/data", "pgdata": "/var/lib/postgresql/data", "data_kind": "volume", "nano_cpus": 2000000000,
                            "memory_bytes": 4294967296, "superuser": "postgres", "state": "running",
                            "id": "abc", "image_id": "sha256:1", "data_major": 17, "volume_exists": true,
                            "network": "ledger-net", "network_exists": true, "restart_policy": "unless-stopped",
                            "health_check": ["CMD", "pg_isready", "--quiet", "--host", "127.0.0.1", "--port", "5432", "--dbname", "postgres", "--username", "postgres"] },
             "images": { "postgres:17.2": { "id": "sha256:2", "pg_major": 17, "pgdata": "/var/lib/postgresql/data", "volumes": ["/var/lib/postgresql/data"] } },
             "server": { "version_num": 170001, "available_extensions": {
                 "pg_trgm": { "default_version": "1.6", "versions": ["1.6"] },
                 "pg_stat_statements": { "default_version": "1.11", "versions": ["1.10", "1.11"] } } },
             "databases": { "somali_nlp": { "name": "somali_nlp", "owner": "postgres", "extensions": {
                 "pg_trgm": { "name": "pg_trgm", "version": "1.6", "schema": "public" },
                 "pg_stat_statements": { "name": "pg_stat_statements", "version": "1.11", "schema": "public" } } } } }"#,
    );
}

/// The ledger's server on PostgreSQL 15 with its data, and the spec's
/// image of 17 local.
const LEDGER_ON_15: &str = r#"{ "name": "ledger",
     "container": { "name": "ledger-postgres", "image": "postgres:15.8", "port": 5433,
                    "bind_address": "127.0.0.1", "volume": "ledger-pgdata",
                    "data_mount": "/var/lib/postgresql/data", "pgdata": "/var/lib/postgresql/data", "data_kind": "volume", "superuser": "postgres",
                    "state": "running", "data_major": 15, "volume_exists": true,
                    "nano_cpus": 4000000000, "memory_bytes": 8589934592, "network": "ledger-net", "network_exists": true },
     "images": { "postgres:17.2": { "id": "sha256:2", "pg_major": 17, "pgdata": "/var/lib/postgresql/17/docker", "volumes": ["/var/lib/postgresql"] } },
     "server": { "version_num": 150008, "data_directory": "/var/lib/postgresql/data" },
     "upgrade": { "database_sizes": { "ledger": 21474836480, "postgres": 7680000 },
                  "installed": { "ledger": { "pg_trgm": "1.6", "plpgsql": "1.0", "postgis": "3.4.2" },
                                 "postgres": { "plpgsql": "1.0" } },
                  "image_extensions": {
                    "pg_trgm": { "default_version": "1.6", "installable": ["1.3"],
                                 "updates": [["1.3", "1.4"], ["1.4", "1.5"], ["1.5", "1.6"]] },
                    "plpgsql": { "default_version": "1.0", "installable": ["1.0"] },
                    "postgis": { "default_version": "3.5.2", "installable": ["3.5.2"],
                                 "updates": [["3.4.2", "3.5.2"]] } } } }"#;

#[test]
fn a_declared_major_upgrade_moves_the_data_then_replaces_the_container() {
    let spec = container_only_spec!().replace(
        "  superuser:",
        "  upgrade: { method: dump-restore }\n  superuser:",
    );
    check("major_upgrade_declared", &spec, LEDGER_ON_15);
    // With a pooler, which pauses the databases for the copy.
    let pooled = format!("{spec}pooler:\n  image: edoburu/pgbouncer:1.23.1\n  port: 6432\n");
    let live_pooler = LEDGER_ON_15.replacen(
        r#""server":"#,
        r#""pooler": { "image": "edoburu/pgbouncer:1.23.1", "port": 6432,
                      "bind_address": "127.0.0.1", "network": "ledger-net",
                      "settings": { "admin_users": "postgres", "auth_file": "/etc/pgbouncer/userlist.txt",
                                    "auth_type": "scram-sha-256",
                                    "ignore_startup_parameters": "extra_float_digits" },
                      "users": { "postgres": "current" } },
           "server":"#,
        1,
    );
    check("major_upgrade_with_pooler", &pooled, &live_pooler);
    // An extension the new image lacks stops the plan.
    let without_postgis = LEDGER_ON_15.replace(
        r#""postgis": { "default_version": "3.5.2""#,
        r#""postgis_raster": { "default_version": "3.5.2""#,
    );
    check("major_upgrade_missing_extension", &spec, &without_postgis);
}

#[test]
fn major_version_change_is_refused() {
    check(
        "major_upgrade_refused",
        CONTAINER_SPEC,
        r#"{ "name": "ledger",
             "container": { "name": "ledger-postgres", "image": "postgres:15.8", "port": 5433,
                            "bind_address": "127.0.0.1", "volume": "ledger-pgdata",
                            "data_mount": "/var/lib/postgresql/data", "pgdata": "/var/lib/postgresql/data", "data_kind": "volume", "superuser": "postgres",
                            "state": "running", "data_major": 15, "volume_exists": true },
             "images": { "postgres:17.2": { "id": "sha256:2", "pg_major": 17, "pgdata": "/var/lib/postgresql/data", "volumes": ["/var/lib/postgresql/data"] } },
             "server": { "version_num": 150008 } }"#,
    );
}

#[test]
fn stopped_container_is_started_first() {
    check(
        "stopped_container",
        CONTAINER_SPEC,
        r#"{ "name": "ledger",
             "container": { "name": "ledger-postgres", "image": "postgres:17.2", "port": 5433,
                            "bind_address": "127.0.0.1", "volume": "ledger-pgdata",
                            "data_mount": "/var/lib/postgresql/data", "pgdata": "/var/lib/postgresql/data", "data_kind": "volume", "nano_cpus": 4000000000,
                            "memory_bytes": 8589934592, "superuser": "postgres", "state": "stopped",
                            "volume_exists": true, "network_exists": true, "restart_policy": "no",
                            "health_check": ["CMD", "pg_isready", "--quiet", "--host", "127.0.0.1", "--port", "5432", "--dbname", "postgres", "--username", "postgres"] } }"#,
    );
}

const EXTERNAL_SPEC: &str = r#"
version: 1
name: reporting
prune: true
postgres:
  connection: { host: db.internal, user: admin, password: { env: REPORTING_PASSWORD } }
databases:
  - name: "Odd \"Name\""
    owner: app
    extensions: [{ name: pg_trgm, version: "1.6" }, { name: hstore, schema: ext }, "uuid-ossp"]
roles:
  - name: app
"#;

#[test]
fn extension_updates_prunes_and_unmanaged() {
    check(
        "extension_changes",
        EXTERNAL_SPEC,
        r#"{ "name": "reporting",
             "server": { "version_num": 150008, "available_extensions": {
                 "pg_trgm": { "default_version": "1.6", "versions": ["1.5", "1.6"] },
                 "hstore": { "default_version": "1.8", "versions": ["1.8"] },
                 "uuid-ossp": { "default_version": "1.1", "versions": ["1.1"] } } },
             "databases": { "Odd \"Name\"": { "name": "Odd \"Name\"", "owner": "postgres", "extensions": {
                 "pg_trgm": { "name": "pg_trgm", "version": "1.5", "schema": "public" },
                 "hstore": { "name": "hstore", "version": "1.8", "schema": "public" },
                 "citext": { "name": "citext", "version": "1.6", "schema": "public", "managed": true },
                 "cube": { "name": "cube", "version": "1.5", "schema": "public" } } } } }"#,
    );
}

#[test]
fn unavailable_extension_versions_are_plan_errors() {
    check(
        "unavailable_extension",
        r#"
version: 1
name: reporting
postgres:
  connection: { host: db.internal }
databases:
  - name: app
    extensions: [{ name: pg_trgm, version: "9.9" }, postgis]
"#,
        r#"{ "name": "reporting",
             "server": { "version_num": 170002, "available_extensions": {
                 "pg_trgm": { "default_version": "1.6", "versions": ["1.3", "1.4", "1.5", "1.6"] } } },
             "databases": { "app": { "name": "app", "owner": "postgres" } } }"#,
    );
}

#[test]
fn resources_beyond_the_engine_are_plan_errors() {
    check(
        "resources_beyond_engine",
        CONTAINER_SPEC,
        r#"{ "name": "ledger",
             "container": { "name": "ledger-postgres", "image": "", "port": 0, "bind_address": "",
                            "volume": "", "data_mount": "", "superuser": "", "state": "missing",
                            "volume_exists": false, "engine_cpus": 2, "engine_memory_bytes": 25000000000 } }"#,
    );
}

/// The container part of `CONTAINER_SPEC` alone.
const CONTAINER_ONLY_SPEC: &str = container_only_spec!();
/// A running container in the spec's shape, with the given extra fields.
fn live_container(extra: &str) -> String {
    let server = if extra.contains("restarting") {
        ""
    } else {
        r#", "server": { "version_num": 170002 }"#
    };
    format!(
        r#"{{ "name": "ledger",
             "container": {{ "name": "ledger-postgres", "image": "postgres:17.2", "port": 5433,
                            "bind_address": "127.0.0.1", "volume": "ledger-pgdata",
                            "data_mount": "/var/lib/postgresql/data", "pgdata": "/var/lib/postgresql/data", "data_kind": "volume", "nano_cpus": 4000000000,
                            "memory_bytes": 8589934592, "superuser": "postgres",
                            "id": "abc", "image_id": "sha256:1", "data_major": 17, "volume_exists": true,
                            "network": "ledger-net", "network_exists": true, "restart_policy": "unless-stopped",
                            {extra} }},
             "images": {{ "postgres:17.2": {{ "id": "sha256:1", "pg_major": 17, "pgdata": "/var/lib/postgresql/data", "volumes": ["/var/lib/postgresql/data"] }} }}{server} }}"#
    )
}

#[test]
fn health_check_changed_by_hand_replaces_the_container() {
    check(
        "health_check_changed",
        CONTAINER_ONLY_SPEC,
        &live_container(
            r#""state": "running", "health_check": ["CMD-SHELL", "true"], "health": "healthy""#,
        ),
    );
}

#[test]
fn container_created_from_other_config_is_replaced() {
    // Every compared field matches, but the label says pgspec created the
    // container from a configuration it would no longer use.
    check(
        "config_hash_differs",
        CONTAINER_ONLY_SPEC,
        &live_container(
            r#""state": "running", "config_hash": "0123456789abcdef",
               "health_check": ["CMD", "pg_isready", "--quiet", "--host", "127.0.0.1", "--port", "5432", "--dbname", "postgres", "--username", "postgres"]"#,
        ),
    );
}

#[test]
fn restarting_and_unhealthy_containers_are_noted() {
    let check_args = r#""health_check": ["CMD", "pg_isready", "--quiet", "--host", "127.0.0.1", "--port", "5432", "--dbname", "postgres", "--username", "postgres"]"#;
    check(
        "restarting_container",
        CONTAINER_ONLY_SPEC,
        &live_container(&format!(r#""state": "restarting", {check_args}"#)),
    );
    check(
        "unhealthy_container",
        CONTAINER_ONLY_SPEC,
        &live_container(&format!(
            r#""state": "running", "health": "unhealthy (127.0.0.1:5432 - no response)", {check_args}"#
        )),
    );
}

// Issue 15, part 1: a container whose data directory is not on pgspec's
// named volume is never replaced, whatever the change asks for.
#[test]
fn data_on_an_anonymous_volume_is_never_replaced() {
    // What a mount point guessed from the tag did to an image with the
    // PostgreSQL 18 layout: the named volume at /var/lib/postgresql/data,
    // PGDATA on the image's anonymous volume at /var/lib/postgresql.
    check(
        "anonymous_volume_refused",
        CONTAINER_SPEC,
        r#"{ "name": "ledger",
             "container": { "name": "ledger-postgres", "image": "postgres:17.2", "port": 5432,
                            "bind_address": "127.0.0.1",
                            "volume": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                            "data_mount": "/var/lib/postgresql", "pgdata": "/var/lib/postgresql/18/docker",
                            "data_kind": "volume", "superuser": "postgres", "state": "running",
                            "data_major": 17, "volume_exists": true },
             "images": { "postgres:17.2": { "id": "sha256:2", "pg_major": 17,
                                            "pgdata": "/var/lib/postgresql/18/docker",
                                            "volumes": ["/var/lib/postgresql"] } },
             "server": { "version_num": 170002, "data_directory": "/var/lib/postgresql/18/docker" } }"#,
    );
}

#[test]
fn server_running_outside_the_volume_is_never_replaced() {
    check(
        "server_outside_volume_refused",
        CONTAINER_SPEC,
        r#"{ "name": "ledger",
             "container": { "name": "ledger-postgres", "image": "postgres:17.2", "port": 5432,
                            "bind_address": "127.0.0.1", "volume": "ledger-pgdata",
                            "data_mount": "/var/lib/postgresql/data", "pgdata": "/var/lib/postgresql/data",
                            "data_kind": "volume", "superuser": "postgres", "state": "running",
                            "data_major": 17, "volume_exists": true },
             "images": { "postgres:17.2": { "id": "sha256:2", "pg_major": 17,
                                            "pgdata": "/var/lib/postgresql/data",
                                            "volumes": ["/var/lib/postgresql/data"] } },
             "server": { "version_num": 170002, "data_directory": "/srv/elsewhere" } }"#,
    );
}

#[test]
fn layout_of_the_18_image_is_read_from_the_image() {
    // `latest` says nothing of the major; the image's PGDATA and VOLUME do.
    check(
        "layout_from_image",
        &CONTAINER_SPEC.replace("postgres:17.2", "postgres:latest"),
        r#"{ "name": "ledger",
             "container": { "name": "ledger-postgres", "image": "", "port": 0, "bind_address": "",
                            "state": "missing", "volume": "", "data_mount": "", "superuser": "",
                            "volume_exists": false },
             "images": { "postgres:latest": { "id": "sha256:3", "pg_major": 18,
                                              "pgdata": "/var/lib/postgresql/18/docker",
                                              "volumes": ["/var/lib/postgresql"] } } }"#,
    );
}

// Issue 16: the plan as a pull-request comment.
#[test]
fn markdown_of_an_empty_host_and_of_a_replace() {
    let empty = plan_check::plan(
        CONTAINER_SPEC,
        r#"{ "name": "ledger",
             "container": { "name": "ledger-postgres", "image": "", "port": 0, "bind_address": "",
                            "volume": "", "data_mount": "", "superuser": "", "state": "missing",
                            "volume_exists": false } }"#,
    );
    insta::assert_snapshot!(
        "empty_host_markdown",
        pgspec::plan::markdown::markdown(&empty)
    );
    let replace = plan_check::plan(
        CONTAINER_SPEC,
        &live_container(r#""state": "running", "health_check": ["CMD-SHELL", "true"]"#),
    );
    insta::assert_snapshot!(
        "replace_markdown",
        pgspec::plan::markdown::markdown(&replace)
    );
}
