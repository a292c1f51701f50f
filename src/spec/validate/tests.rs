//! Unit tests of the semantic checks and of lowering.

use std::path::Path;

use super::Validated;
use super::lower::{index_definition, split_table};
use super::settings::{preload_libraries, setting_text};
use crate::diag::Diagnostics;
use crate::spec::file::{IndexSpec, SettingValue};
use crate::spec::load_str;

fn validate(text: &str) -> Result<Validated, Diagnostics> {
    load_str(Path::new("spec.yaml"), text)?.validate()
}

fn messages(text: &str) -> Vec<String> {
    match validate(text) {
        Ok(validated) => validated
            .warnings
            .items
            .iter()
            .map(|item| format!("warning: {}", item.message))
            .collect(),
        Err(diagnostics) => diagnostics
            .items
            .iter()
            .map(|item| format!("{}: {}", item.severity.as_str(), item.message))
            .collect(),
    }
}

#[test]
fn preload_libraries_reads_lists_and_text() {
    assert_eq!(
        preload_libraries(&SettingValue::Text(
            "'$libdir/pg_stat_statements', pg_cron".into()
        )),
        ["pg_stat_statements", "pg_cron"]
    );
    assert_eq!(
        preload_libraries(&SettingValue::List(vec!["auto_explain".into()])),
        ["auto_explain"]
    );
}

#[test]
fn setting_values_lower_to_text() {
    assert_eq!(setting_text(&SettingValue::Bool(true)), "on");
    assert_eq!(setting_text(&SettingValue::Integer(200)), "200");
    assert_eq!(setting_text(&SettingValue::Float(0.9)), "0.9");
    assert_eq!(
        setting_text(&SettingValue::List(vec!["a".into(), "b".into()])),
        "a, b"
    );
}

#[test]
fn index_definition_quotes_and_orders_clauses() {
    let index: IndexSpec = serde_yaml::from_str(
        r#"
name: idx_events
table: audit.events
unique: true
using: BTREE
columns:
  - account_id
  - { column: created_at, order: desc, nulls: last, collation: C }
  - { expression: "lower(url)", opclass: text_pattern_ops }
include: [payload]
nulls_not_distinct: true
with: { fillfactor: 90 }
where: "deleted_at IS NULL"
"#,
    )
    .expect("valid index");
    let (schema, table) = split_table(&index.table);
    assert_eq!(
        index_definition(&index, &schema, &table),
        r#"CREATE UNIQUE INDEX "idx_events" ON "audit"."events" USING btree ("account_id", "created_at" COLLATE "C" DESC NULLS LAST, (lower(url)) "text_pattern_ops") INCLUDE ("payload") NULLS NOT DISTINCT WITH (fillfactor = 90) WHERE deleted_at IS NULL"#
    );
}

#[test]
fn minimal_spec_lowers_with_defaults() {
    let validated = validate(
        "version: 1\nname: app\npostgres:\n  image: postgres:18\n  superuser: { password: { env: PW } }\nroles:\n  - name: app\n",
    )
    .expect("valid");
    let container = validated.spec.deployment.container.expect("container");
    assert_eq!(container.name, "app-postgres");
    assert_eq!(container.port, 5432);
    assert_eq!(container.volume, "app-pgdata");
    // The tag says nothing about where the data lives.
    assert_eq!(container.data_mount, "");
    let role = &validated.spec.deployment.roles["app"];
    assert!(role.inherit && !role.login);
    assert_eq!(role.connection_limit, -1);
}

#[test]
fn role_references_must_be_declared() {
    let found = messages(
        "version: 1\nname: app\nroles:\n  - { name: app, member_of: [pg_read_all_data, admins] }\n\
         databases:\n  - name: app\n    owner: postgres\n    grants:\n      - { role: public, privileges: [connect] }\n      - { role: apps, privileges: [connect] }\n",
    );
    assert_eq!(
        found,
        [
            "error: role `admins` is not declared",
            "error: role `apps` is not declared"
        ]
    );
}

#[test]
fn identifiers_count_bytes() {
    // 32 two-byte characters: 32 characters, 64 bytes.
    let name = "é".repeat(32);
    let found = messages(&format!(
        "version: 1\nname: app\nroles:\n  - name: {name}\n"
    ));
    assert_eq!(
        found,
        [format!(
            "error: role name `{name}` is 64 bytes long; PostgreSQL keeps at most 63"
        )]
    );
}

#[test]
fn duplicates_are_reported() {
    let found = messages(
        "version: 1\nname: app\nroles: [{ name: a }, { name: a }]\ndatabases:\n  - { name: d, extensions: [x, { name: x }] }\n",
    );
    assert_eq!(
        found,
        [
            "error: duplicate role `a`",
            "error: duplicate extension `x`"
        ]
    );
}

/// Issue 15: spec text must not smuggle a statement into `CREATE INDEX`.
#[test]
fn index_text_must_be_one_expression() {
    let text = "version: 1\nname: app\ndatabases:\n  - name: d\n    indexes:\n      \
                - { name: i, table: t, columns: [{ expression: \"lower(a)); DROP TABLE t; --\" }] }\n      \
                - { name: j, table: t, columns: [a], where: \"true; COPY (SELECT 1) TO PROGRAM 'touch /tmp/x'\" }\n      \
                - { name: k, table: t, columns: [a], where: \"note <> 'a;b' AND note <> $$)$$\" }\n";
    let Err(diagnostics) = validate(text) else {
        panic!("the spec should be invalid");
    };
    let found: Vec<(String, String)> = diagnostics
        .items
        .iter()
        .map(|item| (item.path.clone().unwrap_or_default(), item.message.clone()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "databases[0].indexes[0].columns[0].expression".to_owned(),
                "index expression is not one SQL expression: `)` closes a bracket that was \
                 not opened in the expression"
                    .to_owned()
            ),
            (
                "databases[0].indexes[1].where".to_owned(),
                "index predicate is not one SQL expression: `;` outside a string would end \
                 the statement"
                    .to_owned()
            ),
        ]
    );
    let rendered = diagnostics.render(false);
    assert!(rendered.contains("spec.yaml:6:"), "{rendered}");
}

/// Issue 15: a name with a control character is data nowhere pgspec
/// writes it, so it is refused.
#[test]
fn names_with_control_characters_are_rejected() {
    let found = messages(
        "version: 1\nname: app\nroles: [{ name: \"a\\nb\" }, { name: r, member_of: [\"pg_\\u001b[31m\"] }]\n\
         databases:\n  - { name: \"d\\0\", schemas: [\"s\\r\"] }\n\
         pooler: { image: p, databases: { \"x\\ny\": { pool_size: 1 } } }\n\
         postgres: { image: postgres:17 }\n",
    );
    for expected in [
        "error: role name `a\\nb` holds the control character \\n",
        "error: role name `pg_\\u{1b}[31m` holds the control character \\u{1b}",
        "error: database name `d\\u{0}` holds the control character \\u{0}",
        "error: schema name `s\\r` holds the control character \\r",
        "error: database name `x\\ny` holds the control character \\n",
    ] {
        assert!(
            found.iter().any(|message| message == expected),
            "{expected} in {found:#?}"
        );
    }
}

#[test]
fn grant_shapes_are_checked() {
    let found = messages(
        "version: 1\nname: app\nroles: [{ name: r }]\ndatabases:\n  - name: d\n    grants:\n\
         \x20     - { role: r, tables: all, privileges: [select] }\n\
         \x20     - { role: r, schema: s, tables: all, sequences: all, privileges: [select] }\n\
         \x20     - { role: r, schema: s, for_role: r, privileges: [usage] }\n\
         \x20     - { role: r, schema: s, functions: all, privileges: [select] }\n\
         \x20     - { role: r, privileges: [temp, connect] }\n",
    );
    assert_eq!(
        found,
        [
            "error: `tables` needs `schema`",
            "error: a grant takes at most one of `tables`, `sequences`, `functions` and `default_for`, found `tables` and `sequences`",
            "error: `for_role` applies only to `default_for` grants",
            "error: privilege `select` does not apply to functions",
        ]
    );
}

#[test]
fn settings_units_are_checked() {
    let found = messages(
        "version: 1\nname: app\npostgres:\n  settings:\n    shared_buffers: 1s\n    work_mem: 64mb\n    statement_timeout: 30s\n    search_path: '\"$user\", public'\n",
    );
    assert_eq!(
        found,
        [
            "error: `shared_buffers` takes a memory size, `1s` is a time",
            "error: `work_mem`: `64mb` has a unit PostgreSQL does not accept",
        ]
    );
}

#[test]
fn container_fields_need_an_image() {
    let found = messages(
        "version: 1\nname: app\npostgres:\n  port: 5433\n  connection: { host: db.internal }\n",
    );
    assert_eq!(found, ["error: `postgres.port` needs `postgres.image`"]);
}

#[test]
fn pooler_warning_when_pools_exceed_max_connections() {
    let found = messages(
        "version: 1\nname: app\npostgres:\n  image: postgres:17\n  superuser: { password: { env: PW } }\n  \
         settings: { max_connections: 60 }\npooler:\n  image: pgbouncer\n  default_pool_size: 30\n\
         databases: [{ name: a }, { name: b }]\n",
    );
    assert_eq!(
        found,
        [
            "warning: pooler pools can open 60 server connections, more than the 57 that \
             `max_connections` (60) leaves after `superuser_reserved_connections` (3)"
        ]
    );
    // A pool per login role, capped per database by `max_db_connections`.
    let spec = |cap: &str| {
        format!(
            "version: 1\nname: app\npostgres:\n  image: postgres:17\n  \
             superuser: {{ password: {{ env: PW }} }}\n  settings: {{ max_connections: 60 }}\n\
             pooler:\n  image: pgbouncer\n{cap}\
             roles: [{{ name: a, login: true }}, {{ name: b, login: true }}, {{ name: c }}]\n\
             databases: [{{ name: a }}, {{ name: b }}]\n"
        )
    };
    assert_eq!(
        messages(&spec("")),
        [
            "warning: pooler pools can open 80 server connections, more than the 57 that \
             `max_connections` (60) leaves after `superuser_reserved_connections` (3)"
        ]
    );
    assert!(messages(&spec("  max_db_connections: 25\n")).is_empty());
}

#[test]
fn pooler_and_server_cannot_publish_the_same_port() {
    let found = messages(
        "version: 1\nname: app\npostgres:\n  image: postgres:17\n  port: 6432\n  \
         superuser: { password: { env: PW } }\npooler:\n  image: pgbouncer\n",
    );
    assert_eq!(
        found,
        ["error: the pooler and the server both publish port 6432"]
    );
}

#[test]
fn pooler_needs_an_image_and_the_server_container() {
    let found = messages("version: 1\nname: app\npooler:\n  default_pool_size: 5\n");
    assert_eq!(
        found,
        [
            "error: `pooler.image` is required",
            "error: `pooler` needs `postgres.image`"
        ]
    );
}

#[test]
fn pooler_durations_lower_to_seconds() {
    let validated = validate(
        "version: 1\nname: app\npostgres:\n  image: postgres:17\n  superuser: { password: { env: PW } }\n\
         pooler:\n  image: pgbouncer\n  pool_mode: transaction\n  server_idle_timeout: 10min\n  query_wait_timeout: \"30\"\n",
    )
    .expect("valid");
    let pooler = validated.spec.deployment.pooler.expect("pooler");
    assert_eq!(pooler.settings["server_idle_timeout"], "600");
    assert_eq!(pooler.settings["query_wait_timeout"], "30");
    assert_eq!(pooler.settings["pool_mode"], "transaction");
    assert_eq!(pooler.port, 6432);
}

#[test]
fn backups_need_one_destination_and_valid_cron() {
    let found = messages(
        "version: 1\nname: app\nbackup:\n  schedule: \"0 0 2 * * *\"\n  destination: {}\n",
    );
    assert_eq!(
        found,
        [
            "error: cron expression `0 0 2 * * *` has 6 fields; pgspec takes 5, without seconds",
            "error: a backup destination needs `volume` or `directory`",
        ]
    );
}

#[test]
fn compose_fields_lower_into_the_container() {
    let validated = validate(
        "version: 1\nname: ffe\npostgres:\n  image: postgres:16\n  container_name: ffe-db\n  \
         networks: [monitoring, { name: ffe_default, aliases: [postgres, db, postgres] }]\n  \
         resources: { cpus: 4, memory: 8GiB, reservations: { cpus: 1.5, memory: 4GiB } }\n",
    )
    .expect("valid");
    let container = validated.spec.deployment.container.expect("container");
    assert_eq!(container.name, "ffe-db");
    // The deployment's own network stays beside the joined ones.
    assert_eq!(container.network, "ffe-net");
    let networks: Vec<(&str, Vec<&str>)> = container
        .networks
        .iter()
        .map(|network| {
            (
                network.name.as_str(),
                network.aliases.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        networks,
        [
            ("ffe_default", vec!["db", "postgres"]),
            ("monitoring", vec![])
        ]
    );
    assert_eq!(container.cpu_shares, Some(1536));
    assert_eq!(container.memory_reservation_bytes, Some(4 << 30));
}

#[test]
fn compose_fields_are_checked() {
    let errors = messages(
        "version: 1\nname: ffe\npostgres:\n  image: postgres:16\n  container_name: -db\n  \
         networks: [ffe-net, host, app-net, app-net, { name: bridge, aliases: [pg] }, \
         { name: x, aliases: [\"a b\"] }]\n  \
         resources: { cpus: 1, memory: 1GiB, reservations: { cpus: 2, memory: 2GiB } }\n",
    );
    let expected = [
        "container name `-db` is not a valid Docker name",
        "`ffe-net` is the deployment's own network",
        "cannot join network `host`",
        "network `app-net` is listed twice",
        "default `bridge` network resolves no names",
        "alias `a b` is not a valid host name",
        "the reservation of 2 CPUs is more than the limit of 1",
        "the memory reservation `2GiB` is more than the limit `1GiB`",
    ];
    for text in expected {
        assert!(
            errors.iter().any(|error| error.contains(text)),
            "`{text}` missing from {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    let clashes = messages(
        "version: 1\nname: ffe\npostgres:\n  image: postgres:16\n  container_name: ffe-pgbouncer\n  \
         resources: { reservations: { cpus: 0.001, memory: 1MiB } }\n",
    );
    assert_eq!(
        clashes,
        [
            "error: container name `ffe-pgbouncer` is the name pgspec gives the pooler container",
            "error: a reservation of 0.001 CPUs is a CPU weight of 1.024, outside the 2 to 262144 \
             the engine accepts",
            "error: a memory reservation of `1MiB` is below the 6MiB the engine accepts",
        ]
    );
}

#[test]
fn an_existing_network_replaces_the_deployments_own() {
    let validated = validate(
        "version: 1\nname: ffe\npostgres:\n  image: postgres:16\n  \
         network: { name: ffe_default, aliases: [postgres] }\n  networks: [monitoring]\n",
    )
    .expect("valid");
    let container = validated.spec.deployment.container.expect("container");
    assert_eq!(container.network, "ffe_default");
    assert!(container.network_external);
    // Its aliases are joined like any network's.
    assert_eq!(
        container.networks,
        [
            crate::model::NetworkAttachment {
                name: "ffe_default".to_owned(),
                aliases: vec!["postgres".to_owned()],
            },
            crate::model::NetworkAttachment {
                name: "monitoring".to_owned(),
                aliases: Vec::new(),
            },
        ]
    );
    // Naming the own network is the default, spelled out.
    let own =
        validate("version: 1\nname: ffe\npostgres:\n  image: postgres:16\n  network: ffe-net\n")
            .expect("valid");
    let container = own.spec.deployment.container.expect("container");
    assert_eq!(container.network, "ffe-net");
    assert!(!container.network_external);

    let errors = messages(
        "version: 1\nname: ffe\npostgres:\n  image: postgres:16\n  network: bridge\n  \
         networks: [ffe-net]\n",
    );
    assert_eq!(
        errors,
        [
            "error: Docker's default `bridge` network resolves no names: the pooler and backup \
             containers could not reach the server on it",
        ],
        "the own network may be joined beside another deployment network"
    );
    let errors = messages(
        "version: 1\nname: ffe\npostgres:\n  image: postgres:16\n  network: app\n  \
         networks: [{ name: app, aliases: [db] }]\n",
    );
    assert_eq!(
        errors,
        [
            "error: `app` is the deployment's network (`postgres.network`), which the container \
          always joins"
        ]
    );
    let errors = messages("version: 1\nname: ext\npostgres:\n  network: app-net\n");
    assert_eq!(errors, ["error: `postgres.network` needs `postgres.image`"]);
}

#[test]
fn compose_fields_need_the_container() {
    let errors =
        messages("version: 1\nname: ext\npostgres:\n  container_name: db\n  networks: [app-net]\n");
    assert_eq!(
        errors,
        [
            "error: `postgres.container_name` needs `postgres.image`",
            "error: `postgres.networks` needs `postgres.image`",
        ]
    );
}

#[test]
fn the_engine_is_a_url_pgspec_reaches_or_a_context_name() {
    let spec = |engine: &str| {
        format!("version: 1\nname: x\npostgres:\n  image: postgres:17\n  engine: '{engine}'\n")
    };
    for good in [
        "ssh://deploy@db1.internal",
        "tcp://db1:2376",
        "unix:///run/docker.sock",
        "prod",
    ] {
        assert!(
            messages(&spec(good)).is_empty(),
            "{good}: {:?}",
            messages(&spec(good))
        );
    }
    for bad in [
        "ssh://",
        "ssh://-oProxyCommand=x",
        "ssh://deploy@-oProxyCommand=x",
        "ftp://db1",
        "unix://relative",
        "my context",
    ] {
        let found = messages(&spec(bad));
        assert!(
            found.iter().any(|message| message.contains("engine")),
            "{bad}: {found:?}"
        );
    }
    let lowered = validate(&spec("ssh://deploy@db1")).expect("valid").spec;
    assert_eq!(
        lowered.connection.engine.as_deref(),
        Some("ssh://deploy@db1")
    );
    let without_image = messages("version: 1\nname: x\npostgres:\n  engine: prod\n");
    assert!(
        without_image
            .iter()
            .any(|m| m.contains("needs `postgres.image`")),
        "{without_image:?}"
    );
}
