//! Issue 15, part 2: `plan` and `drift` never run a statement a spec smuggles
//! into an index's `where` or `expression`, against real PostgreSQL 15 and
//! 17.
//!
//! Two layers are proven separately. `validate` rejects such a spec, so the
//! binary's `plan` and `drift` stop before they connect. That check alone
//! would not prove the server-side path safe, so the test also hands the
//! same definitions straight to the library's observe step
//! (`pgspec::live::postgres::observe` with a desired model built here, which
//! is what `plan` and `drift` call after validating) and checks afterwards,
//! from inside the container and the catalogs, that nothing the text
//! smuggled in ran: no file written by `COPY … TO PROGRAM`, no role
//! created, no table dropped.

mod common;

use std::collections::BTreeMap;

use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use futures_util::StreamExt;
use pgspec::live::Target;
use pgspec::model::{Database, Deployment, Index, IndexCheck};
use pgspec::secret::SecretValue;
use pgspec::spec::file::IndexSpec;
use pgspec::spec::validate::index_definition;

use common::{Server, Workdir, arg, block_on, pgspec};

/// What a smuggled `COPY … TO PROGRAM` would create on the database host.
const SMUGGLED_FILE: &str = "/tmp/pgspec-smuggled";

/// Indexes, as a spec writes them. The first four smuggle a statement; each
/// is built so that the statement pgspec forms around it is valid SQL when
/// split at the `;`, which is what the old `DO … EXECUTE` ran.
const INDEXES: &[(&str, &str)] = &[
    (
        "copy_where",
        "{ name: copy_where, table: items, columns: [a], \
         where: \"true; COPY (SELECT 1) TO PROGRAM 'touch /tmp/pgspec-smuggled'\" }",
    ),
    (
        "copy_expression",
        "{ name: copy_expression, table: items, columns: [{ expression: \
         \"a)); COPY (SELECT 1) TO PROGRAM 'touch /tmp/pgspec-smuggled'; SELECT ((1\" }] }",
    ),
    (
        "create_role",
        "{ name: create_role, table: items, columns: [a], \
         where: \"true; CREATE ROLE pgspec_smuggled SUPERUSER LOGIN\" }",
    ),
    (
        "drop_table",
        "{ name: drop_table, table: items, columns: [a], where: \"true; DROP TABLE victim\" }",
    ),
    // A legitimate predicate with a `;` inside a string literal.
    (
        "legit",
        "{ name: legit, table: items, columns: [a], where: \"note <> 'a;b'\" }",
    ),
    // Says which role builds the scratch index: the function runs when the
    // server folds the predicate's constants.
    (
        "whoami",
        "{ name: whoami, table: items, columns: [a], where: \"a > pgspec_whoami()\" }",
    ),
    // A function in a schema PUBLIC cannot use: refused to the scratch role,
    // canonicalised as the connection's user.
    (
        "private_function",
        "{ name: private_function, table: items, columns: [{ expression: \"private.double_it(a)\" }] }",
    ),
    // Folding this predicate's constants never ends: the statement timeout
    // of the canonicalising transaction bounds it.
    (
        "endless",
        "{ name: endless, table: items, columns: [a], where: \"a > pgspec_endless()\" }",
    ),
];

const SMUGGLING: &[&str] = &["copy_where", "copy_expression", "create_role", "drop_table"];

const SETUP: &str = "
    CREATE TABLE items (a int, note text);
    CREATE TABLE victim (x int);
    CREATE FUNCTION pgspec_whoami() RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'built as %, superuser %', current_user, current_setting('is_superuser');
    END $$;
    CREATE FUNCTION pgspec_endless() RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_sleep(86400);
        RETURN 1;
    END $$;
    CREATE SCHEMA private;
    REVOKE ALL ON SCHEMA private FROM PUBLIC;
    CREATE FUNCTION private.double_it(int) RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT $1 * 2';
";

/// Whether `path` exists inside the container, asked through the engine.
async fn exists_in_container(container: &str, path: &str) -> bool {
    let docker = common::docker().await;
    let created = docker
        .create_exec(
            container,
            ExecConfig {
                cmd: Some(vec!["test".to_owned(), "-e".to_owned(), path.to_owned()]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..ExecConfig::default()
            },
        )
        .await
        .expect("create exec");
    if let StartExecResults::Attached { mut output, .. } = docker
        .start_exec(&created.id, None)
        .await
        .expect("start exec")
    {
        while output.next().await.is_some() {}
    }
    let inspect = docker
        .inspect_exec(&created.id)
        .await
        .expect("inspect exec");
    match inspect.exit_code {
        Some(0) => true,
        Some(1) => false,
        other => panic!("`test -e {path}` in {container} ended with {other:?}"),
    }
}

fn spec(server: &Server) -> String {
    let indexes: String = INDEXES
        .iter()
        .map(|(_, index)| format!("      - {index}\n"))
        .collect();
    format!(
        "version: 1\nname: hostile\npostgres:\n{}databases:\n  - name: app\n    indexes:\n{indexes}",
        server.connection_yaml("HOSTILE_PASSWORD")
    )
}

/// The desired deployment with the indexes of `INDEXES` whose names
/// `keep` accepts.
fn desired(keep: impl Fn(&str) -> bool) -> Deployment {
    let indexes: BTreeMap<String, Index> = INDEXES
        .iter()
        .filter(|(name, _)| keep(name))
        .map(|(name, yaml)| {
            let index: IndexSpec = serde_yaml::from_str(yaml).expect("index YAML");
            (
                (*name).to_owned(),
                Index {
                    name: (*name).to_owned(),
                    schema: "public".to_owned(),
                    table: "items".to_owned(),
                    definition: index_definition(&index, "public", "items"),
                    ..Index::default()
                },
            )
        })
        .collect();
    Deployment {
        name: "hostile".to_owned(),
        databases: BTreeMap::from([(
            "app".to_owned(),
            Database {
                name: "app".to_owned(),
                indexes,
                ..Database::default()
            },
        )]),
        ..Deployment::default()
    }
}

async fn assert_nothing_ran(server: &Server) {
    assert!(
        !exists_in_container(&server.container, SMUGGLED_FILE).await,
        "a smuggled COPY … TO PROGRAM ran on the database host"
    );
    let client = server.client("app").await;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_roles \
                     WHERE rolname = 'pgspec_smuggled' OR rolname LIKE 'pgspec_canonical%'), \
                    to_regclass('public.victim') IS NOT NULL, \
                    (SELECT count(*) FROM pg_class WHERE relname LIKE 'pgspec_canonical%')",
            &[],
        )
        .await
        .expect("read the catalogs");
    let roles: i64 = row.get(0);
    let victim: bool = row.get(1);
    let scratch: i64 = row.get(2);
    assert_eq!(roles, 0, "a smuggled or scratch role was left behind");
    assert!(victim, "a smuggled DROP TABLE ran");
    assert_eq!(scratch, 0, "a scratch relation was left behind");
}

async fn smuggled_statements_never_run(major: u32) {
    let server = Server::start(major).await;
    server.execute("postgres", "CREATE DATABASE app").await;
    server.execute("app", SETUP).await;
    // The probe can see a file: it is not blind.
    assert!(exists_in_container(&server.container, "/tmp").await);
    assert!(!exists_in_container(&server.container, SMUGGLED_FILE).await);

    // Through the binary: validate refuses the spec, with the key path.
    let workdir = Workdir::new();
    let path = workdir.write("hostile.yaml", &spec(&server));
    let env = [("HOSTILE_PASSWORD", server.password.as_str())];
    for command in ["validate", "plan", "drift"] {
        let run = pgspec(&[command, "-f", arg(&path)], &env).expect(1);
        for key in [
            "databases[0].indexes[0].where",
            "databases[0].indexes[1].columns[0].expression",
            "databases[0].indexes[2].where",
            "databases[0].indexes[3].where",
        ] {
            assert!(run.stderr.contains(key), "{command}: {key}\n{}", run.stderr);
        }
        assert!(
            run.stderr.contains("is not one SQL expression"),
            "{command}\n{}",
            run.stderr
        );
        assert!(!run.stderr.contains("indexes[4]"), "{}", run.stderr);
    }
    assert_nothing_ran(&server).await;

    // The observe step alone, with validate's check bypassed.
    let target = Target {
        host: "127.0.0.1".to_owned(),
        port: server.port,
        user: "postgres".to_owned(),
        password: Some(SecretValue::from_env_value(server.password.clone())),
        database: "postgres".to_owned(),
        ssl: Default::default(),
        route: Default::default(),
    };
    let observed = pgspec::live::postgres::observe(&target, &desired(|_| true))
        .await
        .expect("observe");
    let checks = &observed.databases["app"].index_checks;
    for name in SMUGGLING {
        match &checks[*name] {
            // "cannot insert multiple commands into a prepared statement"
            IndexCheck::Rejected { code, .. } => assert_eq!(code, "42601", "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(
        checks["legit"],
        IndexCheck::Canonical {
            definition: "CREATE INDEX legit ON public.items USING btree (a) \
                         WHERE (note <> 'a;b'::text)"
                .to_owned(),
            partitioned: false,
            table_bytes: Some(0),
        }
    );
    match &checks["whoami"] {
        IndexCheck::Rejected { message, .. } => assert!(
            message.starts_with("built as pgspec_canonical_") && message.ends_with("superuser off"),
            "{message}"
        ),
        other => panic!("whoami: {other:?}"),
    }
    match &checks["endless"] {
        // query_canceled: the statement timeout
        IndexCheck::Rejected { code, .. } => assert_eq!(code, "57014"),
        other => panic!("endless: {other:?}"),
    }
    assert_eq!(
        checks["private_function"],
        IndexCheck::Canonical {
            definition: "CREATE INDEX private_function ON public.items USING btree \
                         (private.double_it(a))"
                .to_owned(),
            partitioned: false,
            table_bytes: Some(0),
        }
    );
    assert_nothing_ran(&server).await;

    // A connection that is not a superuser builds as itself: it already has
    // only what its operator granted.
    server
        .execute(
            "postgres",
            "CREATE ROLE hostile_plain LOGIN PASSWORD 'plain secret'",
        )
        .await;
    let plain = Target {
        user: "hostile_plain".to_owned(),
        password: Some(SecretValue::from_env_value("plain secret".to_owned())),
        ..target
    };
    let observed = pgspec::live::postgres::observe(&plain, &desired(|name| name != "endless"))
        .await
        .expect("observe as a plain role");
    let checks = &observed.databases["app"].index_checks;
    for name in SMUGGLING {
        assert!(
            matches!(&checks[*name], IndexCheck::Rejected { code, .. } if code == "42601"),
            "{name}: {:?}",
            checks[*name]
        );
    }
    match &checks["whoami"] {
        IndexCheck::Rejected { message, .. } => {
            assert_eq!(message, "built as hostile_plain, superuser off")
        }
        other => panic!("whoami: {other:?}"),
    }
    server.execute("postgres", "DROP ROLE hostile_plain").await;
    assert_nothing_ran(&server).await;
}

#[test]
fn smuggled_index_statements_never_run_on_pg15() {
    block_on(smuggled_statements_never_run(15));
}

#[test]
fn smuggled_index_statements_never_run_on_pg17() {
    block_on(smuggled_statements_never_run(17));
}
