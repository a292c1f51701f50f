//! Extensions end to end against real PostgreSQL 15 and 17: plan, apply,
//! drift, saved plans, pruning, and secrets kept out of every output.

mod common;

use common::{Server, Workdir, arg, pgspec};

const PASSWORD_ENV: &str = "PGSPEC_IT_EXTENSIONS_PASSWORD";

fn spec(server: &Server, extensions: &str, prune: bool) -> String {
    format!(
        "version: 1\nname: ext-test\nprune: {prune}\npostgres:\n{}databases:\n  - name: app\n    extensions: {extensions}\n",
        server.connection_yaml(PASSWORD_ENV)
    )
}

async fn installed(server: &Server) -> Vec<(String, String)> {
    server
        .client("app")
        .await
        .query(
            "SELECT extname::text, extversion FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1",
            &[],
        )
        .await
        .expect("read pg_extension")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

async fn plan_apply_drift(major: u32) {
    let server = Server::start(major).await;
    server.execute("postgres", "CREATE DATABASE app").await;
    let work = Workdir::new();
    let env = [(PASSWORD_ENV, server.password.as_str())];
    let spec_path = work.write(
        "spec.yaml",
        &spec(&server, r#"[pg_trgm, { name: "uuid-ossp" }]"#, false),
    );
    let spec_arg = arg(&spec_path);

    // Two creates, exit 2 with --detailed-exitcode.
    let plan = pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(2);
    assert!(
        plan.stdout.contains("+ database.app/extension.pg_trgm"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("+ database.app/extension.uuid-ossp"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 2 to add, 0 to change, 0 to replace, 0 to destroy."),
        "{}",
        plan.stdout
    );
    // Without --detailed-exitcode a plan with changes still exits 0.
    pgspec(&["plan", "-f", spec_arg], &env).expect(0);

    // Apply refuses to run unconfirmed without a terminal.
    let refused = pgspec(&["apply", "-f", spec_arg], &env).expect(1);
    assert!(
        refused.stderr.contains("--auto-approve"),
        "{}",
        refused.stderr
    );
    assert!(installed(&server).await.is_empty());

    pgspec(&["apply", "-f", spec_arg, "--auto-approve"], &env).expect(0);
    let names: Vec<String> = installed(&server)
        .await
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, ["pg_trgm", "uuid-ossp"]);

    let again = pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(0);
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    pgspec(&["drift", "-f", spec_arg], &env).expect(0);

    // A hand-made change is drift, named by its address.
    server.execute("app", "DROP EXTENSION pg_trgm").await;
    let drift = pgspec(&["drift", "-f", spec_arg], &env).expect(2);
    assert!(
        drift.stdout.contains("database.app/extension.pg_trgm"),
        "{}",
        drift.stdout
    );
    assert!(
        !drift.stdout.contains("extension.uuid-ossp"),
        "{}",
        drift.stdout
    );
    let json = pgspec(&["drift", "-f", spec_arg, "--json"], &env).expect(2);
    let document: serde_json::Value = serde_json::from_str(&json.stdout).expect("drift json");
    assert_eq!(document["has_changes"], true);
    assert_eq!(document["format_version"], 1);
    assert_eq!(
        document["actions"][0]["address"],
        "database.app/extension.pg_trgm"
    );
    assert_eq!(document["actions"][0]["kind"], "create");

    // A saved plan is refused once live state moved, and nothing is applied.
    let plan_file = work.path("saved.plan");
    pgspec(&["plan", "-f", spec_arg, "--out", arg(&plan_file)], &env).expect(0);
    server.execute("app", "DROP EXTENSION \"uuid-ossp\"").await;
    let stale = pgspec(&["apply", arg(&plan_file)], &env).expect(1);
    assert!(
        stale.stderr.contains("changed since this plan was made"),
        "{}",
        stale.stderr
    );
    assert!(
        stale.stderr.contains("database.app/extension.uuid-ossp"),
        "{}",
        stale.stderr
    );
    assert!(
        installed(&server).await.is_empty(),
        "a stale plan must apply nothing"
    );

    // A fresh saved plan applies exactly, and converges.
    pgspec(&["plan", "-f", spec_arg, "--out", arg(&plan_file)], &env).expect(0);
    pgspec(&["apply", arg(&plan_file)], &env).expect(0);
    assert_eq!(installed(&server).await.len(), 2);
    pgspec(&["drift", "-f", spec_arg], &env).expect(0);
}

async fn versions_and_pruning(major: u32) {
    let server = Server::start(major).await;
    server.execute("postgres", "CREATE DATABASE app").await;
    let work = Workdir::new();
    let env = [(PASSWORD_ENV, server.password.as_str())];

    // An older version first, then an in-place update.
    let path = work.write(
        "spec.yaml",
        &spec(
            &server,
            r#"[{ name: pg_trgm, version: "1.5" }, hstore]"#,
            true,
        ),
    );
    pgspec(&["apply", "-f", arg(&path), "--auto-approve"], &env).expect(0);
    assert!(
        installed(&server)
            .await
            .contains(&("pg_trgm".to_owned(), "1.5".to_owned()))
    );
    let path = work.write(
        "spec.yaml",
        &spec(
            &server,
            r#"[{ name: pg_trgm, version: "1.6" }, hstore]"#,
            true,
        ),
    );
    let update = pgspec(&["plan", "-f", arg(&path), "--detailed-exitcode"], &env).expect(2);
    assert!(
        update.stdout.contains("~ version = 1.5 -> 1.6"),
        "{}",
        update.stdout
    );
    pgspec(&["apply", "-f", arg(&path), "--auto-approve"], &env).expect(0);
    assert!(
        installed(&server)
            .await
            .contains(&("pg_trgm".to_owned(), "1.6".to_owned()))
    );

    // A version the server lacks is a plan error listing what it has.
    let path = work.write(
        "bad.yaml",
        &spec(&server, r#"[{ name: pg_trgm, version: "9.9" }]"#, true),
    );
    let bad = pgspec(&["plan", "-f", arg(&path)], &env).expect(1);
    assert!(
        bad.stdout.contains("version `9.9` is not available"),
        "{}",
        bad.stdout
    );
    assert!(bad.stdout.contains("`1.6`"), "{}", bad.stdout);

    // Pruning drops what pgspec created and the spec dropped; an extension
    // created by hand is reported, never dropped.
    server.execute("app", "CREATE EXTENSION citext").await;
    let path = work.write(
        "spec.yaml",
        &spec(&server, r#"[{ name: pg_trgm, version: "1.6" }]"#, true),
    );
    let prune = pgspec(&["plan", "-f", arg(&path), "--show-unmanaged"], &env).expect(0);
    assert!(
        prune.stdout.contains("- database.app/extension.hstore"),
        "{}",
        prune.stdout
    );
    assert!(
        prune.stdout.contains("? database.app/extension.citext"),
        "{}",
        prune.stdout
    );
    pgspec(&["apply", "-f", arg(&path), "--auto-approve"], &env).expect(0);
    let names: Vec<String> = installed(&server)
        .await
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, ["citext", "pg_trgm"]);

    // Without pruning, nothing is dropped.
    let path = work.write("spec.yaml", &spec(&server, "[]", false));
    let kept = pgspec(&["plan", "-f", arg(&path), "--detailed-exitcode"], &env).expect(0);
    assert!(kept.stdout.contains("No changes."), "{}", kept.stdout);
}

async fn secrets_stay_out_of_output(major: u32) {
    let server = Server::start(major).await;
    server.execute("postgres", "CREATE DATABASE app").await;
    let work = Workdir::new();
    let env = [
        (PASSWORD_ENV, server.password.as_str()),
        ("RUST_LOG", "trace"),
    ];
    let path = work.write("spec.yaml", &spec(&server, "[pg_trgm]", false));
    let plan_file = work.path("saved.plan");

    let mut outputs = Vec::new();
    for args in [
        vec!["plan", "-f", arg(&path), "-vvv"],
        vec!["plan", "-f", arg(&path), "--json", "-vvv"],
        vec!["plan", "-f", arg(&path), "--out", arg(&plan_file), "-vvv"],
        vec!["drift", "-f", arg(&path), "-vvv"],
    ] {
        let run = pgspec(&args, &env);
        assert!(
            run.stderr.contains("TRACE") || run.stderr.contains("DEBUG"),
            "trace logs on: {}",
            run.stderr
        );
        outputs.push(run.stdout);
        outputs.push(run.stderr);
    }
    outputs.push(std::fs::read_to_string(&plan_file).expect("saved plan"));
    let apply = pgspec(&["apply", arg(&plan_file), "-vvv"], &env).expect(0);
    outputs.push(apply.stdout);
    outputs.push(apply.stderr);
    // A wrong password makes an error message; it must not echo either one.
    let wrong = pgspec(
        &["plan", "-f", arg(&path)],
        &[(PASSWORD_ENV, "wrong-secret-value")],
    )
    .expect(1);
    assert!(
        !wrong.stderr.contains("wrong-secret-value"),
        "{}",
        wrong.stderr
    );
    assert!(
        wrong.stderr.contains("password authentication failed"),
        "{}",
        wrong.stderr
    );

    for output in outputs {
        assert!(
            !output.contains(&server.password),
            "secret leaked into:\n{output}"
        );
    }
}

for_each_major!(plan_apply_drift_and_saved_plans, super::plan_apply_drift);
for_each_major!(extension_versions_and_pruning, super::versions_and_pruning);
for_each_major!(
    secrets_never_reach_output,
    super::secrets_stay_out_of_output
);

/// Without a `connection` block pgspec uses the libpq variables; a URL in
/// the spec (as a secret reference) works too.
async fn connection_sources(major: u32) {
    let server = Server::start(major).await;
    let work = Workdir::new();
    let port = server.port.to_string();
    let bare = work.write(
        "bare.yaml",
        "version: 1\nname: conn-test\ndatabases:\n  - name: postgres\n    extensions: [pg_trgm]\n",
    );
    let libpq = [
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", port.as_str()),
        ("PGUSER", "postgres"),
        ("PGPASSWORD", server.password.as_str()),
        ("PGDATABASE", "postgres"),
    ];
    let plan = pgspec(&["plan", "-f", arg(&bare), "--detailed-exitcode"], &libpq).expect(2);
    assert!(
        plan.stdout
            .contains("+ database.postgres/extension.pg_trgm"),
        "{}",
        plan.stdout
    );

    let with_url = work.write(
        "url.yaml",
        "version: 1\nname: conn-test\npostgres:\n  connection:\n    url: { env: PGSPEC_IT_URL }\n\
         databases:\n  - name: postgres\n    extensions: [pg_trgm]\n",
    );
    let url = format!(
        "postgresql://postgres:{}@127.0.0.1:{}/postgres",
        server.password, server.port
    );
    let plan = pgspec(
        &["plan", "-f", arg(&with_url)],
        &[("PGSPEC_IT_URL", url.as_str())],
    )
    .expect(0);
    assert!(
        plan.stdout
            .contains("+ database.postgres/extension.pg_trgm"),
        "{}",
        plan.stdout
    );
    assert!(!plan.stdout.contains(&server.password) && !plan.stderr.contains(&server.password));

    // Nothing reachable: a clear error that names the target and says what to check.
    let closed = common::free_port().to_string();
    let unreachable = pgspec(
        &["plan", "-f", arg(&bare)],
        &[
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", closed.as_str()),
            ("PGUSER", "postgres"),
        ],
    )
    .expect(1);
    assert!(
        unreachable
            .stderr
            .contains("cannot connect to PostgreSQL at `postgres@127.0.0.1:"),
        "{}",
        unreachable.stderr
    );
    assert!(
        unreachable.stderr.contains("help:"),
        "{}",
        unreachable.stderr
    );
}

/// `drift` waits while an apply holds the deployment's advisory lock, so an
/// apply in progress is never reported as drift.
async fn drift_waits_for_apply_lock(major: u32) {
    let server = Server::start(major).await;
    server.execute("postgres", "CREATE DATABASE app").await;
    let work = Workdir::new();
    let path = work.write("spec.yaml", &spec(&server, "[]", false));
    let holder = server.client("postgres").await;
    let key = pgspec::lock::key("ext-test");
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .expect("take the apply lock");

    let password = server.password.clone();
    let spec_arg = arg(&path).to_owned();
    let drift = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let run = pgspec(
            &["drift", "-f", &spec_arg],
            &[(PASSWORD_ENV, password.as_str())],
        );
        (run, started.elapsed())
    });
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(!drift.is_finished(), "drift must wait for the apply lock");
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .expect("release the apply lock");
    let (run, waited) = drift.join().expect("drift thread");
    run.expect(0);
    assert!(
        waited >= std::time::Duration::from_secs(3),
        "waited {waited:?}"
    );
}

for_each_major!(
    connection_from_libpq_variables_and_url,
    super::connection_sources
);
for_each_major!(
    drift_waits_while_apply_holds_the_lock,
    super::drift_waits_for_apply_lock
);
