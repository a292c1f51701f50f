//! Apply runs only what was reviewed, against the real engine and servers:
//! a second plan of the inside of PostgreSQL (the server was stopped at plan
//! time, or restarted by a replace) is shown and refuses a saved plan that
//! did not hold it; the advisory lock outlives a low `idle_session_timeout`;
//! the mark names the deployment, so two deployments on one server never
//! prune each other's objects; an extension pgspec did not create is never
//! marked as pgspec's.

mod common;

use common::{Cleanup, Server, Workdir, arg, connect, docker, free_port, pgspec, postgres_image};

const PASSWORD_ENV: &str = "PGSPEC_IT_REVIEWED_PASSWORD";

/// A container deployment the test owns.
struct Owned {
    name: String,
    port: u16,
    password: String,
    work: Workdir,
    _cleanup: Cleanup,
}

impl Owned {
    fn new(purpose: &str) -> Owned {
        let name = common::unique_name(purpose);
        let mut cleanup = Cleanup::default();
        cleanup.containers.push(format!("{name}-postgres"));
        cleanup.volumes.push(format!("{name}-pgdata"));
        cleanup.networks.push(format!("{name}-net"));
        Owned {
            port: free_port(),
            password: format!("pw-{}", common::unique_name("secret")),
            work: Workdir::new(),
            name,
            _cleanup: cleanup,
        }
    }

    /// Writes the spec: pruning on, the given roles and one database `app`.
    fn spec(&self, roles: &str, extensions: &str) -> String {
        let text = format!(
            "version: 1\nname: {}\nprune: true\npostgres:\n  image: {}\n  port: {}\n  \
             superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\nroles:\n{roles}\
             databases:\n  - name: app\n    extensions: {extensions}\n",
            self.name,
            postgres_image(15),
            self.port
        );
        arg(&self.work.write("spec.yaml", &text)).to_owned()
    }

    fn pgspec(&self, args: &[&str], extra: &[(&str, &str)]) -> common::Run {
        let mut env = vec![(PASSWORD_ENV, self.password.as_str())];
        env.extend_from_slice(extra);
        pgspec(args, &env)
    }

    async fn query_bool(&self, database: &str, sql: &str) -> bool {
        connect(self.port, &self.password, database)
            .await
            .expect("connect")
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
            .get(0)
    }

    async fn execute(&self, database: &str, sql: &str) {
        connect(self.port, &self.password, database)
            .await
            .expect("connect")
            .batch_execute(sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
    }
}

const ROLE_A: &str = "  - name: reader_a\n";
const ROLE_B: &str = "  - name: reader_b\n";

type Apply = std::thread::JoinHandle<common::Run>;

/// Waits (bounded) for the apply running on `apply` to reach the test
/// pause point; fails with its output when it ended before.
fn wait_for_pause(dir: &std::path::Path, apply: Apply) -> Apply {
    for _ in 0..1200 {
        if dir.join("paused").exists() {
            return apply;
        }
        if apply.is_finished() {
            let run = apply.join().expect("apply thread");
            panic!(
                "apply ended before its pause point\n--- stdout\n{}\n--- stderr\n{}",
                run.stdout, run.stderr
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("apply never reached the pause point");
}

/// A saved plan made while the server was stopped holds only the start of
/// the container. After the start, the inside plans to create a role and to
/// drop an extension pgspec made: nobody saw that, so the saved plan is
/// refused, the second plan is shown, and nothing inside PostgreSQL
/// changes. `apply -f --auto-approve` shows the same plan and runs it.
#[test]
fn stopped_server_second_plan_runs_only_when_approved() {
    common::block_on(async {
        let owned = Owned::new("second");
        let spec = owned.spec(ROLE_A, "[pg_trgm]");
        owned
            .pgspec(&["apply", "-f", &spec, "--auto-approve"], &[])
            .expect(0);

        docker()
            .await
            .stop_container(&format!("{}-postgres", owned.name), None)
            .await
            .expect("docker stop");
        let spec = owned.spec(&format!("{ROLE_A}{ROLE_B}"), "[]");
        let plan_file = owned.work.path("stopped.plan");
        let plan = owned
            .pgspec(&["plan", "-f", &spec, "--out", arg(&plan_file)], &[])
            .expect(0);
        assert!(
            plan.stdout.contains("the server is not running"),
            "{}",
            plan.stdout
        );
        assert!(!plan.stdout.contains("reader_b"), "{}", plan.stdout);

        let refused = owned
            .pgspec(&["apply", arg(&plan_file), "--auto-approve"], &[])
            .expect(1);
        assert!(
            refused.stdout.contains("+ role.reader_b")
                && refused.stdout.contains("- database.app/extension.pg_trgm"),
            "the second plan is shown:\n{}",
            refused.stdout
        );
        assert!(
            refused
                .stderr
                .contains("refusing to run what the saved plan did not show")
                && refused
                    .stderr
                    .contains("nothing inside PostgreSQL was changed"),
            "{}",
            refused.stderr
        );
        assert!(
            !owned
                .query_bool(
                    "postgres",
                    "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'reader_b')"
                )
                .await,
            "a role nobody reviewed was created"
        );
        assert!(
            owned
                .query_bool(
                    "app",
                    "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm')"
                )
                .await,
            "an extension was dropped that nobody reviewed"
        );

        // Stopped again: apply -f shows the second plan; --auto-approve runs it.
        docker()
            .await
            .stop_container(&format!("{}-postgres", owned.name), None)
            .await
            .expect("docker stop");
        let applied = owned
            .pgspec(&["apply", "-f", &spec, "--auto-approve"], &[])
            .expect(0);
        assert!(
            applied.stdout.contains("planned again")
                && applied.stdout.contains("+ role.reader_b")
                && applied.stdout.contains("- database.app/extension.pg_trgm"),
            "{}",
            applied.stdout
        );
        owned
            .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"], &[])
            .expect(0);
    });
}

/// A saved plan for a deployment that does not exist yet plans everything
/// inside as a create; after the container starts, the second plan holds
/// nothing new, so the saved plan applies without asking again.
#[test]
fn saved_plan_of_a_new_deployment_applies() {
    common::block_on(async {
        let owned = Owned::new("fresh");
        let spec = owned.spec(ROLE_A, "[pg_trgm, hstore]");
        let plan_file = owned.work.path("fresh.plan");
        owned
            .pgspec(&["plan", "-f", &spec, "--out", arg(&plan_file)], &[])
            .expect(0);
        let applied = owned.pgspec(&["apply", arg(&plan_file)], &[]).expect(0);
        assert!(
            !applied.stdout.contains("planned again"),
            "{}",
            applied.stdout
        );
        owned
            .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"], &[])
            .expect(0);
    });
}

/// The advisory lock is released while a replace restarts the server. A
/// role marked as this deployment's, made in that gap, would be pruned by a
/// second plan: a saved plan that did not hold the drop is refused and the
/// role stays.
#[test]
fn change_while_the_lock_is_released_is_noticed() {
    common::block_on(async {
        let mut owned = Owned::new("gap");
        let spec = owned.spec(ROLE_A, "[]");
        owned
            .pgspec(&["apply", "-f", &spec, "--auto-approve"], &[])
            .expect(0);

        // A new port replaces the container (the volume stays).
        owned.port = free_port();
        let spec = owned.spec(ROLE_A, "[]");
        let plan_file = owned.work.path("replace.plan");
        let plan = owned
            .pgspec(&["plan", "-f", &spec, "--out", arg(&plan_file)], &[])
            .expect(0);
        assert!(plan.stdout.contains("1 to replace"), "{}", plan.stdout);

        let pause = tempfile::tempdir().expect("pause dir");
        let pause_dir = arg(pause.path()).to_owned();
        let name = owned.name.clone();
        let password = owned.password.clone();
        let plan_arg = arg(&plan_file).to_owned();
        let apply = std::thread::spawn(move || {
            pgspec(
                &["apply", &plan_arg],
                &[
                    (PASSWORD_ENV, &password),
                    ("PGSPEC_TEST_PAUSE_AT", "unlocked"),
                    ("PGSPEC_TEST_PAUSE_DIR", &pause_dir),
                ],
            )
        });
        let apply = wait_for_pause(pause.path(), apply);
        owned
            .execute(
                "postgres",
                &format!(
                    "CREATE ROLE made_in_the_gap; \
                     COMMENT ON ROLE made_in_the_gap IS 'managed by pgspec; deployment={name}'"
                ),
            )
            .await;
        std::fs::write(pause.path().join("resume"), b"").expect("resume");
        let refused = apply.join().expect("apply thread").expect(1);
        assert!(
            refused.stdout.contains("- role.made_in_the_gap"),
            "{}",
            refused.stdout
        );
        assert!(
            refused.stderr.contains("role.made_in_the_gap")
                && refused
                    .stderr
                    .contains("nothing inside PostgreSQL was changed"),
            "{}",
            refused.stderr
        );
        assert!(
            owned
                .query_bool(
                    "postgres",
                    "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'made_in_the_gap')"
                )
                .await,
            "the role made while the lock was released was dropped"
        );
    });
}

/// With `idle_session_timeout` at one second, an apply that spends longer
/// than that between taking the lock and its last action keeps the lock's
/// session (and so the lock) to the end.
#[test]
fn idle_session_timeout_does_not_end_the_lock() {
    common::block_on(async {
        let server = Server::start(15).await;
        server
            .execute("postgres", "ALTER SYSTEM SET idle_session_timeout = '1s'")
            .await;
        server.execute("postgres", "SELECT pg_reload_conf()").await;
        let work = Workdir::new();
        let spec = work.write(
            "spec.yaml",
            &format!(
                "version: 1\nname: idle\npostgres:\n{}roles:\n  - name: idle_reader\n",
                server.connection_yaml(PASSWORD_ENV)
            ),
        );
        let pause = tempfile::tempdir().expect("pause dir");
        let pause_dir = arg(pause.path()).to_owned();
        let password = server.password.clone();
        let spec_arg = arg(&spec).to_owned();
        let apply = std::thread::spawn(move || {
            pgspec(
                &["apply", "-f", &spec_arg, "--auto-approve"],
                &[
                    (PASSWORD_ENV, &password),
                    ("PGSPEC_TEST_PAUSE_AT", "locked"),
                    ("PGSPEC_TEST_PAUSE_DIR", &pause_dir),
                ],
            )
        });
        let apply = wait_for_pause(pause.path(), apply);
        // Longer than idle_session_timeout: a session left to it is gone.
        std::thread::sleep(std::time::Duration::from_secs(3));
        std::fs::write(pause.path().join("resume"), b"").expect("resume");
        let applied = apply.join().expect("apply thread");
        assert_eq!(
            applied.code, 0,
            "--- stdout\n{}\n--- stderr\n{}",
            applied.stdout, applied.stderr
        );
    });
}

fn external_spec(server: &Server, name: &str, roles: &str, extensions: &str) -> String {
    format!(
        "version: 1\nname: {name}\nprune: true\npostgres:\n{}roles: [{roles}]\ndatabases:\n  - name: app\n    extensions: {extensions}\n",
        server.connection_yaml(PASSWORD_ENV)
    )
}

/// Two deployments with `prune: true` on one server, each with its own
/// role, both naming the database `app`, one with an extension: neither
/// drops what the other made, and each still prunes its own. A role with
/// the bare mark of earlier versions is pruned by neither. An index the
/// first one built carries its stamp, which names it, and stays.
#[test]
fn two_deployments_never_prune_each_other() {
    common::block_on(async {
        let server = Server::start(15).await;
        let work = Workdir::new();
        let env = [(PASSWORD_ENV, server.password.as_str())];
        // The first one also builds an index on a table both see.
        server.execute("postgres", "CREATE DATABASE app").await;
        server.execute("app", "CREATE TABLE items (a int)").await;
        let first = work.write(
            "first.yaml",
            &format!(
                "{}    indexes: [{{ name: idx_items_a, table: items, columns: [a] }}]\n",
                external_spec(&server, "first", "{ name: reader_a }", "[pg_trgm]")
            ),
        );
        let second = work.write(
            "second.yaml",
            &external_spec(&server, "second", "{ name: reader_b }", "[]"),
        );
        pgspec(&["apply", "-f", arg(&first), "--auto-approve"], &env).expect(0);
        pgspec(&["apply", "-f", arg(&second), "--auto-approve"], &env).expect(0);
        // A role with the bare mark of earlier versions, on a server pgspec
        // does not run: it could be either deployment's, so neither prunes it.
        server
            .execute(
                "postgres",
                "CREATE ROLE legacy_reader; COMMENT ON ROLE legacy_reader IS 'managed by pgspec'",
            )
            .await;

        // Each one's plan leaves the other's objects alone.
        let plan = pgspec(&["plan", "-f", arg(&second), "--detailed-exitcode"], &env).expect(0);
        assert!(!plan.stdout.contains("destroy"), "{}", plan.stdout);
        pgspec(&["plan", "-f", arg(&first), "--detailed-exitcode"], &env).expect(0);

        // The second one drops its own role when it leaves its spec, and
        // only that.
        let second = work.write("second.yaml", &external_spec(&server, "second", "", "[]"));
        let pruned = pgspec(&["apply", "-f", arg(&second), "--auto-approve"], &env).expect(0);
        assert!(
            pruned.stdout.contains("- role.reader_b"),
            "{}",
            pruned.stdout
        );
        let client = server.client("app").await;
        let roles: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_roles WHERE rolname IN ('reader_a', 'reader_b')",
                &[],
            )
            .await
            .expect("roles")
            .get(0);
        assert_eq!(roles, 1, "exactly reader_a is left");
        assert!(
            !pruned.stdout.contains("legacy_reader"),
            "{}",
            pruned.stdout
        );
        let legacy: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_roles WHERE rolname = 'legacy_reader'",
                &[],
            )
            .await
            .expect("roles")
            .get(0);
        assert_eq!(legacy, 1, "a role with the bare mark was pruned");
        let trgm: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'",
                &[],
            )
            .await
            .expect("extensions")
            .get(0);
        assert_eq!(trgm, 1, "the first deployment's extension stays");
        let index: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_items_a'",
                &[],
            )
            .await
            .expect("indexes")
            .get(0);
        assert_eq!(index, 1, "the first deployment's index stays");
    });
}

/// `apply --auto-approve` observes the deployment twice: once to plan (the
/// fingerprint check reuses it, under the same locks) and once to verify.
/// After a person's confirmation, or for a saved plan, the check observes
/// again.
#[test]
fn an_apply_observes_twice() {
    common::block_on(async {
        let server = Server::start(15).await;
        let work = Workdir::new();
        let env = [(PASSWORD_ENV, server.password.as_str())];
        let spec = work.write(
            "spec.yaml",
            &external_spec(&server, "observes", "{ name: observer }", "[]"),
        );
        let observes = |run: &common::Run| run.stderr.matches("observing the deployment").count();
        let applied = pgspec(&["apply", "-f", arg(&spec), "--auto-approve", "-vv"], &env).expect(0);
        assert_eq!(observes(&applied), 2, "{}", applied.stderr);

        let spec = work.write(
            "spec.yaml",
            &external_spec(&server, "observes", "{ name: observer_two }", "[]"),
        );
        let saved = work.path("plan.json");
        pgspec(&["plan", "-f", arg(&spec), "--out", arg(&saved)], &env).expect(0);
        let applied = pgspec(&["apply", arg(&saved), "-vv"], &env).expect(0);
        assert_eq!(observes(&applied), 2, "{}", applied.stderr);
    });
}

/// An extension already in a new database (copied from its template) is
/// not marked as pgspec's when the plan asked to create it, and so is not
/// dropped when it leaves the spec.
#[test]
fn extension_pgspec_did_not_create_is_not_claimed() {
    common::block_on(async {
        let server = Server::start(15).await;
        server.execute("template1", "CREATE EXTENSION hstore").await;
        let work = Workdir::new();
        let env = [(PASSWORD_ENV, server.password.as_str())];
        let spec = work.write(
            "spec.yaml",
            &external_spec(&server, "claim", "", "[hstore]"),
        );
        let plan = pgspec(&["plan", "-f", arg(&spec)], &env).expect(0);
        assert!(
            plan.stdout.contains("+ database.app/extension.hstore"),
            "{}",
            plan.stdout
        );
        pgspec(&["apply", "-f", arg(&spec), "--auto-approve"], &env).expect(0);
        let comment: Option<String> = server
            .client("app")
            .await
            .query_one(
                "SELECT obj_description(oid, 'pg_extension') FROM pg_extension WHERE extname = 'hstore'",
                &[],
            )
            .await
            .expect("hstore")
            .get(0);
        // Its control file's comment, not pgspec's mark.
        assert!(
            !comment.unwrap_or_default().starts_with("managed by pgspec"),
            "an extension pgspec did not create was marked"
        );

        let spec = work.write("spec.yaml", &external_spec(&server, "claim", "", "[]"));
        let plan = pgspec(&["apply", "-f", arg(&spec), "--auto-approve"], &env).expect(0);
        assert!(
            !plan.stdout.contains("- database.app/extension.hstore"),
            "{}",
            plan.stdout
        );
        let hstore: i64 = server
            .client("app")
            .await
            .query_one(
                "SELECT count(*) FROM pg_extension WHERE extname = 'hstore'",
                &[],
            )
            .await
            .expect("extensions")
            .get(0);
        assert_eq!(hstore, 1, "an extension pgspec did not create was dropped");
    });
}
