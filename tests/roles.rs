//! Roles, memberships, schemas, grants, default privileges and server
//! settings end to end against real PostgreSQL 15 and 17: the threadr
//! deployment converging from empty, hand-made drift in each kind found by
//! `drift` and repaired by `apply`, settings compared in the server's units,
//! passwords checked without being reset, and names that look like SQL.
//! Every check reads the catalogs with plain SQL, independently of pgspec's
//! observer.

mod common;

use common::{Server, Workdir, arg, pgspec};
use tokio_postgres::NoTls;

const PASSWORD_ENV: &str = "PGSPEC_IT_ROLES_PASSWORD";
const OWNER_PASSWORD_ENV: &str = "PGSPEC_IT_THREADR_PASSWORD";
const READONLY_PASSWORD_ENV: &str = "PGSPEC_IT_THREADR_RO_PASSWORD";
const REPLICATOR_PASSWORD_ENV: &str = "PGSPEC_IT_REPLICATOR_PASSWORD";

const OWNER_PASSWORD: &str = "owner secret ü";
const READONLY_PASSWORD: &str = "read-only secret";
const REPLICATOR_PASSWORD: &str = "replicator secret";

/// A role whose name is quotes, spaces, capitals, unicode and SQL.
const ODD_ROLE: &str = r#"Rëad "Only"; DROP ROLE postgres; --"#;
const ODD_SCHEMA: &str = "Odd Schema.x";

/// The threadr deployment: an owner, a read-only role, a replication role.
fn threadr_spec(server: &Server, settings: &str) -> String {
    format!(
        r#"version: 1
name: threadr
postgres:
{connection}  settings:
{settings}
roles:
  - name: threadr
    login: true
    createdb: true
    password: {{ env: {OWNER_PASSWORD_ENV} }}
    settings:
      statement_timeout: 30s
  - name: threadr_readonly
    login: true
    password: {{ env: {READONLY_PASSWORD_ENV} }}
  - name: replicator
    login: true
    replication: true
    valid_until: '2099-01-01'
    password: {{ env: {REPLICATOR_PASSWORD_ENV} }}
  - name: '{ODD_ROLE}'
    member_of: [threadr_readonly]
    connection_limit: 3
databases:
  - name: threadr
    owner: threadr
    settings:
      work_mem: 64MB
    schemas:
      - {{ name: '{ODD_SCHEMA}', owner: threadr }}
    grants:
      - {{ role: threadr_readonly, privileges: [CONNECT] }}
      - {{ role: PUBLIC, privileges: [TEMPORARY] }}
      - {{ role: threadr_readonly, schema: public, privileges: [USAGE] }}
      - {{ role: threadr_readonly, schema: public, tables: all, privileges: [SELECT] }}
      - {{ role: threadr_readonly, schema: public, default_for: tables, privileges: [SELECT] }}
      - {{ role: '{ODD_ROLE}', schema: '{ODD_SCHEMA}', privileges: [USAGE] }}
      - {{ role: threadr_readonly, schema: public, sequences: all, privileges: [SELECT] }}
      - {{ role: threadr_readonly, schema: public, functions: [touch], privileges: [EXECUTE] }}
"#,
        connection = server.connection_yaml(PASSWORD_ENV),
    )
}

fn env(server: &Server) -> Vec<(&'static str, String)> {
    vec![
        (PASSWORD_ENV, server.password.clone()),
        (OWNER_PASSWORD_ENV, OWNER_PASSWORD.to_owned()),
        (READONLY_PASSWORD_ENV, READONLY_PASSWORD.to_owned()),
        (REPLICATOR_PASSWORD_ENV, REPLICATOR_PASSWORD.to_owned()),
    ]
}

fn run(args: &[&str], env: &[(&'static str, String)]) -> common::Run {
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    pgspec(args, &env)
}

/// Connects as any role with its password.
async fn connect_as(
    server: &Server,
    user: &str,
    password: &str,
    database: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(server.port)
        .user(user)
        .password(password)
        .dbname(database)
        .connect(NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn query_bool(server: &Server, database: &str, sql: &str) -> bool {
    server
        .client(database)
        .await
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .get(0)
}

async fn query_text(server: &Server, database: &str, sql: &str) -> Option<String> {
    server
        .client(database)
        .await
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .get(0)
}

async fn verifier(server: &Server, role: &str) -> String {
    server
        .client("postgres")
        .await
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .expect("read pg_authid")
        .get(0)
}

async fn threadr_converges(major: u32) {
    let server = Server::start(major).await;
    let work = Workdir::new();
    let env = env(&server);
    let path = work.write("spec.yaml", &threadr_spec(&server, "    work_mem: 8MB"));
    let spec = arg(&path);

    let plan = run(&["plan", "-f", spec, "--detailed-exitcode"], &env).expect(2);
    for address in [
        "+ role.threadr",
        "+ role.threadr_readonly",
        "+ role.replicator",
        "+ database.threadr",
        "+ role.\"Rëad \\\"Only\\\"; DROP ROLE postgres; --\"/membership.threadr_readonly",
        "~ setting.work_mem",
        "database.threadr/grant.threadr_readonly",
        "database.threadr/schema.public/future_tables.threadr/default_privilege.threadr_readonly",
    ] {
        assert!(plan.stdout.contains(address), "{address}:\n{}", plan.stdout);
    }
    for secret in [OWNER_PASSWORD, READONLY_PASSWORD, REPLICATOR_PASSWORD] {
        assert!(!plan.stdout.contains(secret), "{}", plan.stdout);
    }

    run(&["apply", "-f", spec, "--auto-approve"], &env).expect(0);
    let again = run(&["plan", "-f", spec, "--detailed-exitcode"], &env).expect(0);
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);

    // Attributes, per-role settings and the managed mark, read by hand.
    assert!(
        query_bool(
            &server,
            "postgres",
            "SELECT rolcanlogin AND rolcreatedb AND NOT rolsuper \
             AND rolconfig = '{statement_timeout=30s}' \
             AND shobj_description(oid, 'pg_authid') = 'managed by pgspec; deployment=threadr' \
             FROM pg_roles WHERE rolname = 'threadr'",
        )
        .await
    );
    assert!(
        query_bool(
            &server,
            "postgres",
            "SELECT rolreplication AND rolcanlogin FROM pg_roles WHERE rolname = 'replicator'",
        )
        .await
    );
    assert!(
        query_bool(
            &server,
            "postgres",
            "SELECT pg_has_role(r.oid, 'threadr_readonly', 'MEMBER') AND r.rolconnlimit = 3 \
             FROM pg_roles r WHERE r.rolname = 'Rëad \"Only\"; DROP ROLE postgres; --'",
        )
        .await
    );
    assert_eq!(
        query_text(
            &server,
            "postgres",
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = 'threadr'"
        )
        .await
        .as_deref(),
        Some("threadr")
    );
    assert!(
        query_bool(
            &server,
            "threadr",
            "SELECT pg_get_userbyid(nspowner) = 'threadr' \
                    AND has_schema_privilege('Rëad \"Only\"; DROP ROLE postgres; --', oid, 'USAGE') \
             FROM pg_namespace WHERE nspname = 'Odd Schema.x'",
        )
        .await
    );
    assert_eq!(
        query_text(&server, "postgres", "SHOW work_mem")
            .await
            .as_deref(),
        Some("8MB")
    );

    // The owner logs in with its password (the SCRAM verifier pgspec set)
    // and creates a table; the read-only role reads it through the default
    // privileges, and cannot write to it.
    let owner = connect_as(&server, "threadr", OWNER_PASSWORD, "threadr")
        .await
        .expect("threadr logs in with the spec's password");
    let timeout: String = owner
        .query_one("SHOW statement_timeout", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(timeout, "30s");
    owner
        .batch_execute("CREATE TABLE posts (id int); INSERT INTO posts VALUES (1)")
        .await
        .expect("owner creates a table");
    let reader = connect_as(&server, "threadr_readonly", READONLY_PASSWORD, "threadr")
        .await
        .expect("threadr_readonly logs in with the spec's password");
    let count: i64 = reader
        .query_one("SELECT count(*) FROM posts", &[])
        .await
        .expect("the read-only role reads a table created later")
        .get(0);
    assert_eq!(count, 1);
    assert!(
        reader
            .batch_execute("INSERT INTO posts VALUES (2)")
            .await
            .is_err()
    );

    // Nothing to do after the owner's table, and an unchanged password is
    // never set again: the verifier (and its salt) stay as they are.
    let before = verifier(&server, "threadr").await;
    let again = run(&["plan", "-f", spec, "--detailed-exitcode"], &env).expect(0);
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    run(&["apply", "-f", spec, "--auto-approve"], &env).expect(0);
    assert_eq!(verifier(&server, "threadr").await, before);
}

async fn drift_is_found_and_repaired(major: u32) {
    let server = Server::start(major).await;
    let work = Workdir::new();
    let env = env(&server);
    let path = work.write("spec.yaml", &threadr_spec(&server, "    work_mem: 8MB"));
    let spec = arg(&path);
    run(&["apply", "-f", spec, "--auto-approve"], &env).expect(0);
    server
        .execute(
            "threadr",
            "SET ROLE threadr; CREATE TABLE posts (id int); CREATE TABLE users (id int); \
             CREATE SEQUENCE ids; \
             CREATE FUNCTION touch(integer) RETURNS integer LANGUAGE sql AS 'SELECT $1'; \
             CREATE FUNCTION touch(text) RETURNS text LANGUAGE sql AS 'SELECT $1'; \
             RESET ROLE",
        )
        .await;
    // Sequences and functions that exist now need their grants; both
    // overloads of `touch` are named.
    let drift = run(&["drift", "-f", spec], &env).expect(2);
    for expected in [
        "+ database.threadr/schema.public/sequences.all/grant.threadr_readonly",
        "+ schema.public/sequence.ids = SELECT",
        "+ database.threadr/schema.public/function.touch/grant.threadr_readonly",
        r#"GRANT EXECUTE ON FUNCTION "public"."touch"(integer) TO "threadr_readonly""#,
        r#"GRANT EXECUTE ON FUNCTION "public"."touch"(text) TO "threadr_readonly""#,
    ] {
        assert!(
            drift.stdout.contains(expected),
            "{expected}:\n{}",
            drift.stdout
        );
    }
    run(&["apply", "-f", spec, "--auto-approve"], &env).expect(0);
    run(&["drift", "-f", spec], &env).expect(0);
    assert!(
        query_bool(
            &server,
            "threadr",
            "SELECT has_sequence_privilege('threadr_readonly', 'ids', 'SELECT') \
                AND NOT has_sequence_privilege('threadr_readonly', 'ids', 'USAGE') \
                AND has_function_privilege('threadr_readonly', 'touch(text)', 'EXECUTE')",
        )
        .await
    );

    // The password set by hand to the same secret is no drift: the server's
    // own verifier (another salt) matches the secret.
    server
        .execute(
            "postgres",
            &format!("ALTER ROLE threadr PASSWORD '{OWNER_PASSWORD}'"),
        )
        .await;
    run(&["drift", "-f", spec], &env).expect(0);

    // One hand-made change in each kind.
    server
        .execute(
            "threadr",
            "REVOKE SELECT ON posts FROM threadr_readonly; \
             GRANT INSERT ON users TO threadr_readonly; \
             GRANT CREATE ON DATABASE threadr TO threadr_readonly",
        )
        .await;
    server
        .execute(
            "postgres",
            "ALTER ROLE threadr_readonly CONNECTION LIMIT 5; \
             ALTER ROLE replicator PASSWORD 'changed by hand' VALID UNTIL '2030-06-01 12:00'; \
             ALTER DATABASE threadr SET work_mem = '1MB'",
        )
        .await;
    // ALTER SYSTEM cannot share a batch (an implicit transaction).
    server
        .execute("postgres", "ALTER SYSTEM SET work_mem = '1MB'")
        .await;
    server.execute("postgres", "SELECT pg_reload_conf()").await;
    let drift = run(&["drift", "-f", spec], &env).expect(2);
    for (address, detail) in [
        (
            "~ database.threadr/schema.public/tables.all/grant.threadr_readonly",
            "+ schema.public/table.posts = SELECT",
        ),
        (
            "~ database.threadr/schema.public/tables.all/grant.threadr_readonly",
            "~ schema.public/table.users = INSERT, SELECT -> SELECT",
        ),
        (
            "~ database.threadr/grant.threadr_readonly",
            "~ privileges = CONNECT, CREATE -> CONNECT",
        ),
        ("~ role.threadr_readonly", "~ connection_limit = 5 -> -1"),
        ("~ role.replicator", "password"),
        (
            "~ role.replicator",
            "~ valid_until = 2030-06-01T12:00:00+00 -> 2099-01-01",
        ),
        ("~ setting.work_mem", "~ value = 1MB -> 8MB"),
        ("~ database.threadr\n", "~ settings.work_mem = 1MB -> 64MB"),
    ] {
        assert!(
            drift.stdout.contains(address),
            "{address}:\n{}",
            drift.stdout
        );
        assert!(drift.stdout.contains(detail), "{detail}:\n{}", drift.stdout);
    }
    assert!(!drift.stdout.contains("role.threadr\n"), "{}", drift.stdout);
    assert!(
        !drift.stdout.contains("changed by hand"),
        "{}",
        drift.stdout
    );
    // The minimal delta: a REVOKE of the extra privilege only.
    assert!(
        drift
            .stdout
            .contains(r#"REVOKE INSERT ON TABLE "public"."users" FROM "threadr_readonly""#),
        "{}",
        drift.stdout
    );
    assert!(!drift.stdout.contains("REVOKE ALL"), "{}", drift.stdout);

    run(&["apply", "-f", spec, "--auto-approve"], &env).expect(0);
    run(&["drift", "-f", spec], &env).expect(0);
    assert!(
        query_bool(
            &server,
            "threadr",
            "SELECT has_table_privilege('threadr_readonly', 'posts', 'SELECT') \
                AND NOT has_table_privilege('threadr_readonly', 'users', 'INSERT') \
                AND NOT has_database_privilege('threadr_readonly', 'threadr', 'CREATE')",
        )
        .await
    );
    connect_as(&server, "replicator", REPLICATOR_PASSWORD, "postgres")
        .await
        .expect("the replicator's password is the spec's again");
    assert_eq!(
        query_text(&server, "postgres", "SHOW work_mem")
            .await
            .as_deref(),
        Some("8MB")
    );

    // A membership granted by someone else satisfies the spec: pgspec
    // does not grant it again, whoever the grantor is.
    server
        .execute(
            "postgres",
            "CREATE ROLE team_lead; \
             GRANT threadr_readonly TO team_lead WITH ADMIN OPTION; \
             REVOKE threadr_readonly FROM \"Rëad \"\"Only\"\"; DROP ROLE postgres; --\"; \
             GRANT threadr_readonly TO \"Rëad \"\"Only\"\"; DROP ROLE postgres; --\" \
               GRANTED BY team_lead",
        )
        .await;
    assert_eq!(
        query_text(
            &server,
            "postgres",
            "SELECT pg_get_userbyid(m.grantor)::text FROM pg_auth_members m \
             WHERE m.member = (SELECT oid FROM pg_roles \
                               WHERE rolname = 'Rëad \"Only\"; DROP ROLE postgres; --')",
        )
        .await
        .as_deref(),
        Some("team_lead")
    );
    run(&["drift", "-f", spec], &env).expect(0);

    // A password stored as MD5 is drift of its own kind.
    server
        .execute(
            "postgres",
            &format!(
                "SET password_encryption = 'md5'; ALTER ROLE threadr PASSWORD '{OWNER_PASSWORD}'"
            ),
        )
        .await;
    let md5 = run(&["drift", "-f", spec], &env).expect(2);
    assert!(
        md5.stdout
            .contains("~ password_encryption = md5 -> scram-sha-256"),
        "{}",
        md5.stdout
    );
    run(&["apply", "-f", spec, "--auto-approve"], &env).expect(0);
    assert!(
        verifier(&server, "threadr")
            .await
            .starts_with("SCRAM-SHA-256$")
    );
}

async fn settings_compare_in_server_units(major: u32) {
    let mut server = Server::start(major).await;
    let work = Workdir::new();
    let env = env(&server);

    // The live values, respelled in other units, are no change.
    let shared_buffers_pages: i64 = query_text(
        &server,
        "postgres",
        "SELECT setting FROM pg_settings WHERE name = 'shared_buffers'",
    )
    .await
    .and_then(|value| value.parse().ok())
    .expect("shared_buffers");
    let same = format!(
        "    shared_buffers: {}kB\n    work_mem: 4096kB\n    jit: {}\n    statement_timeout: 0\n",
        shared_buffers_pages * 8,
        if query_text(&server, "postgres", "SHOW jit").await.as_deref() == Some("on") {
            "true"
        } else {
            "false"
        }
    );
    let path = work.write("same.yaml", &threadr_spec(&server, &same));
    run(&["apply", "-f", arg(&path), "--auto-approve"], &env).expect(0);
    let plan = run(&["plan", "-f", arg(&path), "--detailed-exitcode"], &env).expect(0);
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);

    // shared_buffers needs a restart, work_mem a reload.
    let path = work.write(
        "spec.yaml",
        &threadr_spec(&server, "    shared_buffers: 256MB\n    work_mem: 16MB"),
    );
    let spec = arg(&path);
    let json = run(&["plan", "-f", spec, "--json"], &env).expect(0);
    let document: serde_json::Value = serde_json::from_str(&json.stdout).expect("plan json");
    let action = |address: &str| {
        document["actions"]
            .as_array()
            .expect("actions")
            .iter()
            .find(|action| action["address"] == address)
            .cloned()
            .unwrap_or_else(|| panic!("no action {address}: {}", json.stdout))
    };
    let shared_buffers = action("setting.shared_buffers");
    assert_eq!(shared_buffers["risk"]["restart"], true, "{shared_buffers}");
    assert!(
        shared_buffers["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("restart")),
        "{shared_buffers}"
    );
    assert_eq!(shared_buffers["changes"][0]["new"], "256MB");
    let work_mem = action("setting.work_mem");
    assert_eq!(work_mem["risk"]["restart"], false, "{work_mem}");
    assert!(
        work_mem["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("reload")),
        "{work_mem}"
    );
    let text = run(&["plan", "-f", spec], &env).expect(0);
    assert!(
        text.stdout.contains("setting.shared_buffers"),
        "{}",
        text.stdout
    );

    // Applying writes both; work_mem is in effect at once, shared_buffers
    // waits for a restart and drift keeps showing it until then.
    run(&["apply", "-f", spec, "--auto-approve"], &env);
    assert_eq!(
        query_text(&server, "postgres", "SHOW work_mem")
            .await
            .as_deref(),
        Some("16MB")
    );
    assert!(
        query_bool(
            &server,
            "postgres",
            "SELECT pending_restart FROM pg_settings WHERE name = 'shared_buffers'",
        )
        .await
    );
    let drift = run(&["drift", "-f", spec], &env).expect(2);
    assert!(
        drift.stdout.contains("setting.shared_buffers"),
        "{}",
        drift.stdout
    );
    assert!(drift.stdout.contains("pending_restart"), "{}", drift.stdout);
    assert!(
        !drift.stdout.contains("setting.work_mem"),
        "{}",
        drift.stdout
    );

    // A restart gives the container a new host port: read it again and
    // point the spec at it.
    server.restart().await;
    let path = work.write(
        "spec.yaml",
        &threadr_spec(&server, "    shared_buffers: 256MB\n    work_mem: 16MB"),
    );
    let spec = arg(&path);
    assert_eq!(
        query_text(&server, "postgres", "SHOW shared_buffers")
            .await
            .as_deref(),
        Some("256MB")
    );
    run(&["drift", "-f", spec], &env).expect(0);
}

async fn unverifiable_without_pg_authid(major: u32) {
    let server = Server::start(major).await;
    server
        .execute(
            "postgres",
            "CREATE ROLE deployer LOGIN CREATEROLE PASSWORD 'deployer secret'; \
             CREATE ROLE app LOGIN PASSWORD 'whatever it is'",
        )
        .await;
    let work = Workdir::new();
    let env = [
        (PASSWORD_ENV, "deployer secret".to_owned()),
        (OWNER_PASSWORD_ENV, OWNER_PASSWORD.to_owned()),
    ];
    let path = work.write(
        "spec.yaml",
        &format!(
            "version: 1\nname: unverifiable\npostgres:\n  connection:\n    host: 127.0.0.1\n    \
             port: {}\n    user: deployer\n    password: {{ env: {PASSWORD_ENV} }}\n\
             roles:\n  - name: app\n    login: true\n    password: {{ env: {OWNER_PASSWORD_ENV} }}\n",
            server.port
        ),
    );
    // A role that cannot read pg_authid cannot compare the password: the
    // plan says so and leaves the password alone.
    let plan = run(&["plan", "-f", arg(&path), "--detailed-exitcode"], &env).expect(0);
    assert!(
        plan.stdout.contains("the password cannot be verified"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("role.app"), "{}", plan.stdout);
    let json = run(&["plan", "-f", arg(&path), "--json"], &env).expect(0);
    let document: serde_json::Value = serde_json::from_str(&json.stdout).expect("plan json");
    assert_eq!(document["actions"].as_array().map(Vec::len), Some(0));
}

/// A verifier with 2^31 - 1 iterations, which any role can give itself,
/// is not checked: the plan answers at once and says why it cannot verify
/// the password. Regression test for issue 15, part 6.
async fn hostile_iteration_count(major: u32) {
    let server = Server::start(major).await;
    let made = postgres_protocol::password::scram_sha_256(OWNER_PASSWORD.as_bytes());
    let hostile = made.replacen("SCRAM-SHA-256$4096:", "SCRAM-SHA-256$2147483647:", 1);
    assert_ne!(made, hostile);
    // Written into the catalog directly: `ALTER ROLE … PASSWORD` with such
    // a verifier makes the server itself check it against the empty
    // password first, which takes the role's own backend as long.
    server
        .execute(
            "postgres",
            &format!(
                "CREATE ROLE app LOGIN; \
                 UPDATE pg_authid SET rolpassword = '{hostile}' WHERE rolname = 'app'"
            ),
        )
        .await;
    assert_eq!(verifier(&server, "app").await, hostile);
    let work = Workdir::new();
    let path = work.write(
        "spec.yaml",
        &format!(
            "version: 1\nname: iterations\npostgres:\n{}\
             roles:\n  - name: app\n    login: true\n    password: {{ env: {OWNER_PASSWORD_ENV} }}\n",
            server.connection_yaml(PASSWORD_ENV)
        ),
    );
    let plan = run(
        &["plan", "-f", arg(&path), "--detailed-exitcode"],
        &env(&server),
    )
    .expect(0);
    assert!(
        plan.stdout.contains(
            "the password cannot be verified: its SCRAM verifier asks for 2147483647 iterations"
        ),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("role.app"), "{}", plan.stdout);
    assert_eq!(verifier(&server, "app").await, hostile);
}

async fn pruning_drops_only_its_own_roles(major: u32) {
    let server = Server::start(major).await;
    server
        .execute(
            "postgres",
            "CREATE ROLE made_by_hand; CREATE ROLE hand_admin SUPERUSER",
        )
        .await;
    let work = Workdir::new();
    let env = env(&server);
    let spec = |roles: &str| {
        format!(
            "version: 1\nname: prune\nprune: true\npostgres:\n{}roles:\n{roles}",
            server.connection_yaml(PASSWORD_ENV)
        )
    };
    let path = work.write(
        "spec.yaml",
        &spec("  - name: keep\n  - name: 'drop me \"now\"'\n"),
    );
    run(&["apply", "-f", arg(&path), "--auto-approve"], &env).expect(0);

    let path = work.write("spec.yaml", &spec("  - name: keep\n"));
    let plan = run(
        &[
            "plan",
            "-f",
            arg(&path),
            "--detailed-exitcode",
            "--show-unmanaged",
        ],
        &env,
    )
    .expect(2);
    assert!(
        plan.stdout.contains(r#"- role."drop me \"now\"""#),
        "{}",
        plan.stdout
    );
    for kept in ["role.made_by_hand", "role.hand_admin", "role.postgres"] {
        assert!(
            plan.stdout.contains(&format!("? {kept}")),
            "{kept}:\n{}",
            plan.stdout
        );
    }
    run(&["apply", "-f", arg(&path), "--auto-approve"], &env).expect(0);
    let names: Vec<String> = server
        .client("postgres")
        .await
        .query(
            "SELECT rolname::text FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1",
            &[],
        )
        .await
        .expect("read pg_roles")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(names, ["hand_admin", "keep", "made_by_hand", "postgres"]);
}

async fn names_that_look_like_sql(major: u32) {
    let server = Server::start(major).await;
    let work = Workdir::new();
    let env = env(&server);
    let database = r#"Odd "DB"; DROP DATABASE postgres; --/x.y"#;
    let path = work.write(
        "spec.yaml",
        &format!(
            r#"version: 1
name: odd
postgres:
{}roles:
  - name: 'Ow"ner; --'
  - name: 'reader/x.y'
databases:
  - name: '{database}'
    owner: 'Ow"ner; --'
    schemas:
      - {{ name: 'Ünï Schema', owner: 'Ow"ner; --' }}
    grants:
      - {{ role: 'reader/x.y', privileges: [CONNECT] }}
      - {{ role: 'reader/x.y', schema: 'Ünï Schema', privileges: [USAGE] }}
      - {{ role: 'reader/x.y', schema: 'Ünï Schema', tables: all, privileges: [SELECT] }}
      - {{ role: 'reader/x.y', schema: 'Ünï Schema', default_for: tables, privileges: [SELECT] }}
"#,
            server.connection_yaml(PASSWORD_ENV)
        ),
    );
    let spec = arg(&path);
    run(&["apply", "-f", spec, "--auto-approve"], &env).expect(0);
    run(&["drift", "-f", spec], &env).expect(0);
    server
        .execute(
            database,
            r#"SET ROLE "Ow""ner; --"; CREATE TABLE "Ünï Schema"."T a""b" (id int); RESET ROLE"#,
        )
        .await;
    run(&["drift", "-f", spec], &env).expect(0);
    assert!(
        query_bool(
            &server,
            database,
            r#"SELECT has_table_privilege('reader/x.y', '"Ünï Schema"."T a""b"', 'SELECT')
                  AND has_database_privilege('reader/x.y', current_database(), 'CONNECT')
                  AND pg_get_userbyid(nspowner) = 'Ow"ner; --'
               FROM pg_namespace WHERE nspname = 'Ünï Schema'"#,
        )
        .await
    );
    // A hand-made REVOKE on that table is drift named with quoted parts.
    server
        .execute(
            database,
            r#"REVOKE SELECT ON "Ünï Schema"."T a""b" FROM "reader/x.y""#,
        )
        .await;
    let drift = run(&["drift", "-f", spec], &env).expect(2);
    assert!(
        drift.stdout.contains(
            r#"database."Odd \"DB\"; DROP DATABASE postgres; --/x.y"/schema."Ünï Schema"/tables.all/grant."reader/x.y""#
        ),
        "{}",
        drift.stdout
    );
    run(&["apply", "-f", spec, "--auto-approve"], &env).expect(0);
    run(&["drift", "-f", spec], &env).expect(0);
}

for_each_major!(threadr_converges_from_empty, super::threadr_converges);
for_each_major!(
    names_with_quotes_and_sql_are_plain_names,
    super::names_that_look_like_sql
);
for_each_major!(
    pruning_drops_only_roles_pgspec_made,
    super::pruning_drops_only_its_own_roles
);
for_each_major!(
    passwords_are_unverifiable_without_pg_authid,
    super::unverifiable_without_pg_authid
);
for_each_major!(
    passwords_with_hostile_iteration_counts_are_not_checked,
    super::hostile_iteration_count
);
for_each_major!(
    drift_in_each_kind_is_found_and_repaired,
    super::drift_is_found_and_repaired
);
for_each_major!(
    settings_compare_in_the_servers_units,
    super::settings_compare_in_server_units
);
