//! `pgspec import` against real PostgreSQL 15 and 17 (issue #11): a server
//! set up by hand with plain SQL, names that look like SQL, and a container
//! deployment pgspec applied. The contract is the round trip: the imported
//! spec, planned against the deployment it came from, gives an empty plan
//! (exit 0 with `--detailed-exitcode`), with the passwords supplied through
//! the variables import printed.

mod common;

use std::collections::BTreeMap;

use common::{Cleanup, Server, Workdir, arg, connect, free_port, pgspec, unique_name};

/// Roles and the cluster-wide state, set up by hand.
const CLUSTER_SQL: &str = r#"
CREATE ROLE app_owner LOGIN CREATEDB PASSWORD 'owner secret' CONNECTION LIMIT 20;
CREATE ROLE app_rw LOGIN PASSWORD 'rw secret';
CREATE ROLE app_ro LOGIN PASSWORD 'ro secret' VALID UNTIL '2099-01-01';
CREATE ROLE readers NOLOGIN;
CREATE ROLE writers NOLOGIN NOINHERIT;
CREATE ROLE ops LOGIN CREATEROLE BYPASSRLS REPLICATION PASSWORD 'ops secret';
CREATE ROLE nopass LOGIN;
GRANT readers TO app_ro;
GRANT readers, writers TO app_rw;
GRANT pg_read_all_stats TO ops;
GRANT writers TO ops WITH ADMIN OPTION;
ALTER ROLE app_ro SET statement_timeout = '30s';
ALTER ROLE app_rw SET work_mem = '64MB';
ALTER ROLE app_rw SET search_path = app, public;
ALTER ROLE app_rw IN DATABASE postgres SET work_mem = '1MB';
CREATE DATABASE app OWNER app_owner;
CREATE DATABASE reports;
ALTER DATABASE app SET work_mem = '32MB';
ALTER SYSTEM SET log_min_duration_statement = '1s';
ALTER SYSTEM SET random_page_cost = 1.1;
ALTER SYSTEM SET jit = off;
ALTER SYSTEM SET work_mem = '8MB';
ALTER SYSTEM SET max_wal_size = '2GB';
ALTER SYSTEM SET log_statement = 'ddl';
SELECT pg_reload_conf();
"#;

/// Inside database `app`: three extensions (and a fourth in a schema of
/// its own), schemas, grants on the database, schemas, tables, sequences
/// and functions, default privileges, and 26 indexes of every shape.
const APP_SQL: &str = r#"
CREATE EXTENSION pg_trgm;
CREATE EXTENSION btree_gin;
CREATE EXTENSION citext;
CREATE SCHEMA audit;
CREATE EXTENSION hstore SCHEMA audit;
CREATE SCHEMA app AUTHORIZATION app_owner;
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app GRANT SELECT ON TABLES TO readers;
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA app GRANT SELECT, UPDATE ON SEQUENCES TO writers;
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
SET ROLE app_owner;
CREATE TABLE app.items (id bigserial PRIMARY KEY, sku text NOT NULL UNIQUE, name text, state text,
  metadata jsonb, tags text[], created_at timestamptz DEFAULT now(), price numeric,
  owner_id int, title citext);
CREATE TABLE app.events (id bigserial PRIMARY KEY, item_id bigint, kind text, at timestamptz);
CREATE FUNCTION app.touch(integer) RETURNS integer LANGUAGE sql AS 'SELECT $1';
CREATE FUNCTION app.touch(text) RETURNS text LANGUAGE sql AS 'SELECT $1';
RESET ROLE;
CREATE TABLE public.crawl_ledger (url text, source text, state text, discovered_at timestamptz);
CREATE TABLE audit.log (id bigint, data audit.hstore, at timestamptz);
GRANT CONNECT ON DATABASE app TO app_ro, app_rw;
REVOKE TEMPORARY ON DATABASE app FROM PUBLIC;
GRANT USAGE ON SCHEMA app TO readers, writers;
GRANT SELECT, INSERT, UPDATE, DELETE ON app.items TO writers;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA app TO writers;
GRANT EXECUTE ON FUNCTION app.touch(integer), app.touch(text) TO writers;
GRANT SELECT ON public.crawl_ledger TO app_ro;
GRANT ALL ON public.crawl_ledger TO app_rw;
GRANT USAGE ON SCHEMA audit TO ops;
CREATE INDEX idx_items_state ON app.items (state);
CREATE INDEX idx_items_created_desc ON app.items (created_at DESC);
CREATE INDEX idx_items_lower_name ON app.items (lower(name));
CREATE INDEX idx_items_name_trgm ON app.items USING gin (name gin_trgm_ops);
CREATE INDEX idx_items_metadata ON app.items USING gin (metadata);
CREATE INDEX idx_items_metadata_path ON app.items USING gin (metadata jsonb_path_ops);
CREATE INDEX idx_items_tags ON app.items USING gin (tags);
CREATE INDEX idx_items_open ON app.items (created_at) WHERE state <> 'done';
CREATE UNIQUE INDEX idx_items_sku_lower ON app.items (lower(sku));
CREATE INDEX idx_items_state_created ON app.items (state, created_at DESC NULLS LAST);
CREATE INDEX idx_items_price_include ON app.items (price) INCLUDE (name);
CREATE INDEX idx_items_name_c ON app.items (name COLLATE "C");
CREATE INDEX idx_items_name_pattern ON app.items (name text_pattern_ops);
CREATE INDEX idx_items_owner_hash ON app.items USING hash (owner_id);
CREATE INDEX idx_items_created_brin ON app.items USING brin (created_at);
CREATE INDEX idx_items_owner_fill ON app.items (owner_id) WITH (fillfactor = 70);
CREATE INDEX idx_items_title ON app.items (title);
CREATE INDEX idx_events_item ON app.events (item_id);
CREATE INDEX idx_events_kind_at ON app.events (kind, at) WHERE kind IS NOT NULL;
CREATE INDEX idx_events_expr ON app.events ((item_id * 2), (coalesce(kind, 'x')));
CREATE INDEX idx_ledger_source_state ON public.crawl_ledger (source, state);
CREATE INDEX idx_ledger_source_nulls ON public.crawl_ledger (source NULLS FIRST);
CREATE INDEX idx_ledger_gin ON public.crawl_ledger USING gin (source, state);
CREATE UNIQUE INDEX idx_ledger_url ON public.crawl_ledger (url) NULLS NOT DISTINCT;
CREATE INDEX idx_ledger_recent ON public.crawl_ledger (discovered_at DESC) WHERE state = 'new';
CREATE INDEX idx_audit_data ON audit.log USING gin (data);
"#;

/// Runs each statement of `sql` on its own: CREATE DATABASE cannot run in
/// the implicit transaction of a multi-statement query.
async fn execute_each(server: &Server, database: &str, sql: &str) {
    for statement in sql
        .split(";\n")
        .filter(|statement| !statement.trim().is_empty())
    {
        server.execute(database, statement).await;
    }
}

/// Indexes `APP_SQL` creates by hand.
const APP_INDEXES: usize = 26;

/// Passwords of the roles `CLUSTER_SQL` creates, by role.
const PASSWORDS: &[(&str, &str)] = &[
    ("app_owner", "owner secret"),
    ("app_rw", "rw secret"),
    ("app_ro", "ro secret"),
    ("ops", "ops secret"),
];

/// The variables import printed on stderr: (variable, role).
fn variables(stderr: &str) -> Vec<(String, String)> {
    stderr
        .lines()
        .filter_map(|line| line.strip_prefix("  PGSPEC_PASSWORD_"))
        .filter_map(|rest| {
            let (suffix, purpose) = rest.split_once("  ")?;
            let role = purpose
                .split_once('`')
                .and_then(|(_, quoted)| quoted.strip_suffix('`'))?;
            Some((format!("PGSPEC_PASSWORD_{suffix}"), role.to_owned()))
        })
        .collect()
}

/// The environment `plan` needs: the connection's password and each
/// printed variable set to its role's password.
fn plan_env(
    server_password: &str,
    printed: &[(String, String)],
    passwords: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut env = vec![("PGPASSWORD".to_owned(), server_password.to_owned())];
    for (variable, role) in printed {
        let password = passwords
            .get(role)
            .unwrap_or_else(|| panic!("import asked for a password of `{role}`, which has none"));
        env.push((variable.clone(), password.clone()));
    }
    env
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// Imports with `args` from a server reached with libpq variables,
/// returning the spec's path and the printed variables.
fn import_server(
    server: &Server,
    work: &Workdir,
    file: &str,
    args: &[&str],
) -> (String, Vec<(String, String)>) {
    let port = server.port.to_string();
    let env = [
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", port.as_str()),
        ("PGUSER", "postgres"),
        ("PGPASSWORD", server.password.as_str()),
    ];
    let mut all_args = vec!["import"];
    all_args.extend_from_slice(args);
    let run = pgspec(&all_args, &env).expect(0);
    let path = work.write(file, &run.stdout);
    (arg(&path).to_owned(), variables(&run.stderr))
}

/// `plan --detailed-exitcode` must find nothing to do.
fn expect_empty_plan(spec: &str, env: &[(String, String)]) {
    let run = pgspec(&["plan", "-f", spec, "--detailed-exitcode"], &borrowed(env));
    let text = std::fs::read_to_string(spec).unwrap_or_default();
    assert_eq!(
        run.code, 0,
        "the imported spec does not plan empty\n--- spec\n{text}\n--- plan\n{}\n--- stderr\n{}",
        run.stdout, run.stderr
    );
}

async fn hand_made(major: u32) {
    let server = Server::start(major).await;
    execute_each(&server, "postgres", CLUSTER_SQL).await;
    server.execute("app", APP_SQL).await;
    let work = Workdir::new();
    let passwords: BTreeMap<String, String> = PASSWORDS
        .iter()
        .map(|(role, password)| ((*role).to_owned(), (*password).to_owned()))
        .collect();

    let (spec, printed) = import_server(&server, &work, "imported.yaml", &[]);
    let text = std::fs::read_to_string(&spec).expect("read the imported spec");
    assert!(
        text.starts_with("# yaml-language-server: $schema="),
        "{text}"
    );
    let mut roles: Vec<&str> = printed.iter().map(|(_, role)| role.as_str()).collect();
    roles.sort();
    assert_eq!(
        roles,
        ["app_owner", "app_ro", "app_rw", "ops"],
        "{printed:?}"
    );
    assert!(
        printed
            .iter()
            .any(|(variable, role)| variable == "PGSPEC_PASSWORD_APP_OWNER" && role == "app_owner")
    );
    for (_, password) in PASSWORDS {
        assert!(!text.contains(password), "a password leaked into the spec");
    }
    // Every hand-made index, none of the constraints' ones.
    let indexes = text.matches("name: idx_").count();
    assert_eq!(indexes, APP_INDEXES, "{text}");
    assert!(!text.contains("items_pkey"), "{text}");
    // ALTER SYSTEM settings, not what initdb wrote into postgresql.conf.
    assert!(text.contains("log_statement: ddl"), "{text}");
    assert!(text.contains("max_wal_size: 2GB"), "{text}");
    assert!(!text.contains("lc_messages"), "{text}");
    assert!(!text.contains("dynamic_shared_memory_type"), "{text}");
    // Shorthands where they apply; a version or schema only when needed.
    assert!(
        text.contains("extensions: [btree_gin, citext, { name: hstore, schema: audit }, pg_trgm]"),
        "{text}"
    );
    // What a spec cannot say is a comment, not a silent omission.
    assert!(
        text.contains("# its settings in database `postgres`"),
        "{text}"
    );
    assert!(text.contains("WITH ADMIN OPTION"), "{text}");
    assert!(
        text.contains("default privileges on functions `app_owner` creates in every schema"),
        "{text}"
    );
    let env = plan_env(&server.password, &printed, &passwords);
    expect_empty_plan(&spec, &env);

    // Filters: one database and the roles matching a glob; references to
    // other roles are left out with a comment, and the round trip holds.
    let (spec, printed) = import_server(
        &server,
        &work,
        "filtered.yaml",
        &["--database", "app", "--role-pattern", "app_*"],
    );
    let text = std::fs::read_to_string(&spec).expect("read the filtered spec");
    assert!(!text.contains("name: reports"), "{text}");
    assert!(!text.contains("- name: ops"), "{text}");
    assert!(
        text.contains("is left out: that role is not imported"),
        "{text}"
    );
    expect_empty_plan(&spec, &plan_env(&server.password, &printed, &passwords));

    // With --include-system: the bootstrap superuser, the untouched
    // `postgres` database and the constraints' indexes come along.
    let (spec, printed) = import_server(&server, &work, "system.yaml", &["--include-system"]);
    let text = std::fs::read_to_string(&spec).expect("read the system spec");
    assert!(text.contains("- name: postgres"), "{text}");
    assert!(text.contains("items_pkey"), "{text}");
    let mut with_superuser = passwords.clone();
    with_superuser.insert("postgres".to_owned(), server.password.clone());
    expect_empty_plan(
        &spec,
        &plan_env(&server.password, &printed, &with_superuser),
    );
}

for_each_major!(hand_made_server_round_trips, crate::hand_made);

/// Names made of quotes, spaces, capitals, unicode and SQL.
const ODD_ROLE: &str = r#"Rëad "Only"; DROP ROLE postgres; --"#;
const ODD_DATABASE: &str = r#"Wéird "DB" name"#;

async fn hostile_names(major: u32) {
    let server = Server::start(major).await;
    execute_each(
        &server,
        "postgres",
        r#"
CREATE ROLE "Rëad ""Only""; DROP ROLE postgres; --" LOGIN PASSWORD 'odd secret';
CREATE ROLE "app user" LOGIN PASSWORD 'space secret';
CREATE ROLE "app-user" LOGIN PASSWORD 'dash secret';
CREATE ROLE "Ünïcode Owner" NOLOGIN;
GRANT "Ünïcode Owner" TO "app user";
ALTER ROLE "app user" SET search_path = "Odd Schema", public;
CREATE DATABASE "Wéird ""DB"" name" OWNER "Ünïcode Owner";
ALTER DATABASE "Wéird ""DB"" name" SET statement_timeout = '1min';
"#,
    )
    .await;
    server
        .execute(
            ODD_DATABASE,
            r#"
CREATE SCHEMA "Odd Schema" AUTHORIZATION "Ünïcode Owner";
CREATE TABLE "Odd Schema"."My Table" ("Col A" text, "ünï" int, "select" text);
CREATE TABLE public."Mixed Case" (id int, "Name" text);
CREATE INDEX "Idx ""quoted"" ü" ON "Odd Schema"."My Table" ("Col A");
CREATE INDEX "idx expr" ON "Odd Schema"."My Table" (lower("Col A")) WHERE "ünï" > 0;
CREATE INDEX "Idx Mixed" ON public."Mixed Case" ("Name" DESC, "id");
CREATE INDEX "Idx select" ON "Odd Schema"."My Table" ("select") INCLUDE ("ünï");
GRANT USAGE ON SCHEMA "Odd Schema" TO "Rëad ""Only""; DROP ROLE postgres; --";
GRANT SELECT ON "Odd Schema"."My Table" TO "Rëad ""Only""; DROP ROLE postgres; --";
GRANT SELECT, INSERT ON public."Mixed Case" TO "app-user";
GRANT CONNECT ON DATABASE "Wéird ""DB"" name" TO "app user";
ALTER DEFAULT PRIVILEGES FOR ROLE "Ünïcode Owner" IN SCHEMA "Odd Schema"
  GRANT SELECT ON TABLES TO "app-user";
"#,
        )
        .await;
    let work = Workdir::new();
    let (spec, printed) = import_server(&server, &work, "odd.yaml", &[]);
    let text = std::fs::read_to_string(&spec).expect("read the imported spec");
    // Two roles that map to the same variable name are told apart.
    let names: BTreeMap<&str, &str> = printed
        .iter()
        .map(|(variable, role)| (role.as_str(), variable.as_str()))
        .collect();
    assert_eq!(names.get("app user"), Some(&"PGSPEC_PASSWORD_APP_USER"));
    assert_eq!(names.get("app-user"), Some(&"PGSPEC_PASSWORD_APP_USER_2"));
    assert!(names.contains_key(ODD_ROLE), "{printed:?}");
    assert!(text.contains("Idx \\\"quoted\\\" ü"), "{text}");
    let passwords: BTreeMap<String, String> = [
        (ODD_ROLE, "odd secret"),
        ("app user", "space secret"),
        ("app-user", "dash secret"),
    ]
    .into_iter()
    .map(|(role, password)| (role.to_owned(), password.to_owned()))
    .collect();
    expect_empty_plan(&spec, &plan_env(&server.password, &printed, &passwords));

    // The spec reads back as the same names: validate, then one database.
    pgspec(&["validate", "-f", &spec], &[]).expect(0);
    let (spec, printed) = import_server(&server, &work, "one.yaml", &["--database", ODD_DATABASE]);
    let text = std::fs::read_to_string(&spec).expect("read the imported spec");
    assert!(text.contains("Wéird \\\"DB\\\" name"), "{text}");
    expect_empty_plan(&spec, &plan_env(&server.password, &printed, &passwords));
}

for_each_major!(hostile_names_round_trip, crate::hostile_names);

const SUPERUSER_ENV: &str = "PGSPEC_IT_IMPORT_SUPERUSER";
const APP_PASSWORD_ENV: &str = "PGSPEC_IT_IMPORT_APP";

/// A deployment pgspec applies from a spec, then imports from its
/// container once the spec is gone.
async fn container_deployment(major: u32) {
    let name = unique_name("imp");
    let mut cleanup = Cleanup::default();
    cleanup.containers.push(format!("{name}-postgres"));
    cleanup.volumes.push(format!("{name}-pgdata"));
    cleanup.networks.push(format!("{name}-net"));
    cleanup.containers.push(format!("{name}-backup"));
    cleanup.containers.push(format!("{name}-pgbouncer"));
    cleanup.volumes.push(format!("{name}-backups"));
    let port = free_port();
    let pooler_port = free_port();
    let superuser_password = format!("pw-{}", unique_name("secret"));
    let app_password = "app secret";
    let work = Workdir::new();
    let image = common::postgres_image(major);
    let spec_text = |indexes: &str| {
        format!(
            "version: 1\nname: {name}\npostgres:\n  image: {image}\n  port: {port}\n  \
             resources: {{ cpus: 1, memory: 1GiB }}\n  \
             superuser: {{ password: {{ env: {SUPERUSER_ENV} }} }}\n  \
             settings: {{ work_mem: 16MB, log_min_duration_statement: 500ms, \
             shared_preload_libraries: [pg_stat_statements] }}\n\
             roles:\n  - {{ name: app, login: true, password: {{ env: {APP_PASSWORD_ENV} }} }}\n  \
             - {{ name: reader, member_of: [pg_read_all_data] }}\n\
             databases:\n  - name: app\n    owner: app\n    \
             extensions: [pg_trgm, pg_stat_statements]\n    \
             schemas: [{{ name: ledger, owner: app }}]\n    \
             grants:\n      - {{ role: reader, privileges: [CONNECT] }}\n      \
             - {{ role: reader, schema: ledger, privileges: [USAGE] }}\n{indexes}\
             pooler:\n  image: pgspec-test/pgbouncer:1\n  port: {pooler_port}\n  \
             pool_mode: transaction\n  default_pool_size: 10\n  server_idle_timeout: 5min\n  \
             databases: {{ app: {{ pool_size: 4 }} }}\n\
             backup:\n  schedules:\n    \
             - {{ name: nightly, schedule: \"0 2 * * *\", format: plain }}\n    \
             - {{ name: weekly, schedule: \"0 3 * * 0\", databases: [app] }}\n  \
             retention: {{ days: 7, min_count: 2 }}\n  \
             destination: {{ volume: {name}-backups }}\n"
        )
    };
    let env = [
        (SUPERUSER_ENV, superuser_password.as_str()),
        (APP_PASSWORD_ENV, app_password),
    ];
    let spec = work.write("spec.yaml", &spec_text(""));
    pgspec(&["apply", "-f", arg(&spec), "--auto-approve"], &env).expect(0);
    let client = connect(port, &superuser_password, "app")
        .await
        .expect("connect to the deployment");
    client
        .batch_execute(
            "CREATE TABLE ledger.entries (id bigint PRIMARY KEY, source text, body text, \
             at timestamptz); ALTER TABLE ledger.entries OWNER TO app",
        )
        .await
        .expect("create the application's table");
    drop(client);
    let indexes = "    indexes:\n      \
        - { name: idx_entries_source, table: ledger.entries, columns: [source, at] }\n      \
        - { name: idx_entries_body, table: ledger.entries, using: gin, \
            columns: [{ expression: lower(body), opclass: gin_trgm_ops }] }\n      \
        - { name: idx_entries_recent, table: ledger.entries, columns: [at], \
            where: \"source <> 'test'\" }\n";
    std::fs::write(&spec, spec_text(indexes)).expect("write the spec");
    pgspec(&["apply", "-f", arg(&spec), "--auto-approve"], &env).expect(0);
    pgspec(&["plan", "-f", arg(&spec), "--detailed-exitcode"], &env).expect(0);
    std::fs::remove_file(&spec).expect("delete the spec");

    let container = format!("{name}-postgres");
    let out = work.path("imported.yaml");
    let import_env = [("PGPASSWORD", superuser_password.as_str())];
    let run = pgspec(
        &["import", "--container", &container, "--out", arg(&out)],
        &import_env,
    )
    .expect(0);
    let text = std::fs::read_to_string(&out).expect("read the imported spec");
    assert!(text.contains(&format!("name: {name}\n")), "{text}");
    assert!(text.contains(&format!("image: {image}")), "{text}");
    assert!(text.contains("memory: 1GiB"), "{text}");
    assert!(text.contains("idx_entries_body"), "{text}");
    assert!(text.contains("pool_mode: transaction"), "{text}");
    assert!(
        text.contains("shared_preload_libraries: [pg_stat_statements]"),
        "{text}"
    );
    assert!(
        text.contains("extensions: [pg_stat_statements, pg_trgm]"),
        "{text}"
    );
    assert!(text.contains("server_idle_timeout: 300s"), "{text}");
    assert!(
        text.contains("databases: { app: { pool_size: 4 } }"),
        "{text}"
    );
    assert!(
        text.contains("  retention: { days: 7, min_count: 2 }\n"),
        "{text}"
    );
    assert!(
        text.contains("- { name: nightly, schedule: \"0 2 * * *\", format: plain }"),
        "{text}"
    );
    // Issue 17: the server's client authentication rules, as the image
    // wrote them, round-trip too.
    assert!(
        text.contains(
            "- { type: host, database: all, user: all, address: all, method: scram-sha-256 }"
        ),
        "{text}"
    );
    assert!(!text.contains(&superuser_password), "{text}");
    let printed = variables(&run.stderr);
    let passwords: BTreeMap<String, String> = [
        ("postgres".to_owned(), superuser_password.clone()),
        ("app".to_owned(), app_password.to_owned()),
    ]
    .into_iter()
    .collect();
    let plan_env = plan_env(&superuser_password, &printed, &passwords);
    expect_empty_plan(arg(&out), &plan_env);

    // By pgspec's deployment label, the same spec.
    let by_label = pgspec(&["import", "--deployment", &name], &import_env).expect(0);
    assert_eq!(by_label.stdout, text);
}

for_each_major!(
    container_deployment_round_trips,
    crate::container_deployment
);

/// A role that is not a superuser cannot read passwords or the
/// configuration files: import says so in the spec, and still round-trips.
async fn unprivileged(major: u32) {
    let server = Server::start(major).await;
    execute_each(
        &server,
        "postgres",
        "CREATE ROLE auditor LOGIN PASSWORD 'auditor secret';\n\
         CREATE ROLE app LOGIN PASSWORD 'app secret';\n\
         CREATE DATABASE app OWNER app;\n\
         ALTER SYSTEM SET work_mem = '8MB';\n",
    )
    .await;
    let work = Workdir::new();
    let port = server.port.to_string();
    let env = [
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", port.as_str()),
        ("PGUSER", "auditor"),
        ("PGPASSWORD", "auditor secret"),
    ];
    let run = pgspec(&["import"], &env).expect(0);
    let spec = work.write("auditor.yaml", &run.stdout);
    let text = run.stdout;
    assert!(
        text.contains("settings are not imported: the connecting role cannot read"),
        "{text}"
    );
    assert!(
        text.contains("whether it has a password is unknown"),
        "{text}"
    );
    assert!(!text.contains("work_mem"), "{text}");
    let printed = variables(&run.stderr);
    let passwords: BTreeMap<String, String> = [
        ("app".to_owned(), "app secret".to_owned()),
        ("auditor".to_owned(), "auditor secret".to_owned()),
        ("postgres".to_owned(), server.password.clone()),
    ]
    .into_iter()
    .collect();
    expect_empty_plan(
        arg(&spec),
        &plan_env("auditor secret", &printed, &passwords),
    );
}

for_each_major!(unprivileged_import_round_trips, crate::unprivileged);

/// A container pgspec did not create: import names it in the spec and
/// says in the header what a plan of the spec would still change.
async fn foreign_container(major: u32) {
    let server = Server::start(major).await;
    let work = Workdir::new();
    let run = pgspec(
        &["import", "--container", &server.container],
        &[("PGPASSWORD", server.password.as_str())],
    )
    .expect(0);
    let text = run.stdout;
    assert!(
        text.contains("pgspec did not create this container"),
        "{text}"
    );
    assert!(
        text.contains(&format!("container_name: {}", server.container)),
        "{text}"
    );
    assert!(
        text.contains(&format!("image: {}", common::postgres_image(major))),
        "{text}"
    );
    assert!(text.contains(&format!("port: {}", server.port)), "{text}");
    assert!(text.contains("on a port Docker picked"), "{text}");
    let spec = work.write("foreign.yaml", &text);
    pgspec(&["validate", "-f", arg(&spec)], &[]).expect(0);
}

for_each_major!(
    foreign_container_is_read_with_notes,
    crate::foreign_container
);

/// Naming a container or deployment that does not exist is an error that
/// says how to find the right one.
#[test]
fn a_missing_container_is_named() {
    let name = unique_name("absent");
    let run = pgspec(&["import", "--container", &name], &[]).expect(1);
    assert!(
        run.stderr
            .contains(&format!("no container is named `{name}`")),
        "{}",
        run.stderr
    );
    let run = pgspec(&["import", "--deployment", &name], &[]).expect(1);
    assert!(
        run.stderr.contains(&format!(
            "no container carries the label `org.pgspec.deployment={name}`"
        )),
        "{}",
        run.stderr
    );
}
