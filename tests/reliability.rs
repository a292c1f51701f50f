//! Reliability and safety against the real engine and servers: applies cut
//! off at every action converge, concurrent applies never interleave, faults
//! (a killed server, a full disk, a statement timeout among them) are clear
//! errors, hostile names are plain names, no secret reaches Docker, and
//! nothing that holds data is dropped.

mod common;

use bollard::query_parameters::TagImageOptions;
use common::{
    Cleanup, Server, Workdir, arg, connect, docker, free_port, pgspec, postgres_image, unique_name,
};

const PASSWORD_ENV: &str = "PGSPEC_IT_RELIABILITY_PASSWORD";

/// A container deployment the test owns.
struct Owned {
    name: String,
    port: u16,
    password: String,
    work: Workdir,
    cleanup: Cleanup,
}

impl Owned {
    fn new(purpose: &str) -> Owned {
        let name = unique_name(purpose);
        let mut cleanup = Cleanup::default();
        cleanup.containers.push(format!("{name}-postgres"));
        cleanup.volumes.push(format!("{name}-pgdata"));
        cleanup.networks.push(format!("{name}-net"));
        Owned {
            port: free_port(),
            password: format!("pw-{}", unique_name("secret")),
            work: Workdir::new(),
            name,
            cleanup,
        }
    }

    /// Writes a spec; `settings` is the `postgres.settings` block, if any.
    fn spec(&self, image: &str, settings: &str, databases: &str) -> String {
        let text = format!(
            "version: 1\nname: {}\nprune: true\npostgres:\n  image: {image}\n  port: {}\n  \
             superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n{settings}databases:\n{databases}",
            self.name, self.port
        );
        arg(&self.work.write("spec.yaml", &text)).to_owned()
    }

    fn pgspec(&self, args: &[&str], extra: &[(&str, &str)]) -> common::Run {
        let mut env = vec![(PASSWORD_ENV, self.password.as_str())];
        env.extend_from_slice(extra);
        pgspec(args, &env)
    }

    async fn rows(&self) -> i64 {
        connect(self.port, &self.password, "app")
            .await
            .expect("connect")
            .query_one("SELECT count(*) FROM items", &[])
            .await
            .expect("count")
            .get(0)
    }
}

const V1: &str = "  - name: app\n    extensions: [pg_trgm]\n";
const V2: &str =
    "  - name: app\n    extensions: [pg_trgm, hstore]\n  - name: other\n    extensions: [citext]\n";
/// A setting that takes effect only after a server restart.
const V2_SETTINGS: &str = "  settings: { shared_buffers: 64MB }\n";
/// The kinds of the actions that take a deployment from V1 to V2.
const V1_TO_V2: [&str; 6] = ["replace", "update", "create", "create", "create", "restart"];

/// An apply stopped after its k-th action, for every k of a plan that
/// replaces the container, changes a setting, creates databases and
/// extensions and restarts the server, is finished by the next apply; the
/// plan after that is empty and no row is lost.
#[test]
fn interrupted_applies_converge() {
    common::block_on(async {
        let docker = docker().await;
        assert_eq!(V1_TO_V2.last(), Some(&"restart"), "the restart comes last");
        for stop_after in 0..V1_TO_V2.len() {
            let mut owned = Owned::new("cut");
            let image = postgres_image(15);
            let spec = owned.spec(&image, "", V1);
            owned
                .pgspec(&["apply", "-f", &spec, "--auto-approve"], &[])
                .expect(0);
            connect(owned.port, &owned.password, "app")
                .await
                .expect("connect")
                .batch_execute(
                    "CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, 500)",
                )
                .await
                .expect("seed");

            // The next spec moves to another image of the same major version,
            // which replaces the container, lowers shared_buffers, which needs
            // a restart, and adds a database and extensions.
            let alternate_tag = format!("15-{}", owned.name);
            docker
                .tag_image(
                    &image,
                    Some(TagImageOptions {
                        repo: Some("pgspec-test/postgres".to_owned()),
                        tag: Some(alternate_tag.clone()),
                    }),
                )
                .await
                .expect("tag");
            let alternate = format!("pgspec-test/postgres:{alternate_tag}");
            owned.cleanup.image_tags.push(alternate.clone());
            let spec = owned.spec(&alternate, V2_SETTINGS, V2);
            let plan = owned
                .pgspec(&["plan", "-f", &spec, "--json"], &[])
                .expect(0);
            let document: serde_json::Value = serde_json::from_str(&plan.stdout).expect("json");
            let kinds: Vec<&str> = document["actions"]
                .as_array()
                .expect("actions")
                .iter()
                .map(|action| action["kind"].as_str().unwrap_or_default())
                .collect();
            assert_eq!(kinds, V1_TO_V2, "{}", plan.stdout);

            let stop = stop_after.to_string();
            let cut = owned
                .pgspec(
                    &["apply", "-f", &spec, "--auto-approve"],
                    &[("PGSPEC_TEST_STOP_AFTER", &stop)],
                )
                .expect(1);
            assert!(cut.stderr.contains("stopped after"), "{}", cut.stderr);
            owned
                .pgspec(&["apply", "-f", &spec, "--auto-approve"], &[])
                .expect(0);
            owned
                .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"], &[])
                .expect(0);
            assert_eq!(owned.rows().await, 500, "stopped after {stop_after}");
            let shared_buffers: String = connect(owned.port, &owned.password, "postgres")
                .await
                .expect("connect")
                .query_one("SHOW shared_buffers", &[])
                .await
                .expect("shared_buffers")
                .get(0);
            assert_eq!(shared_buffers, "64MB", "stopped after {stop_after}");
        }
    });
}

/// Two applies of one deployment at once: the second waits for the first's
/// lock, then plans against its result and has nothing left to do.
#[test]
fn concurrent_applies_never_interleave() {
    common::block_on(async {
        let server = Server::start(17).await;
        server.execute("postgres", "CREATE DATABASE app").await;
        let work = Workdir::new();
        let spec = work.write(
            "spec.yaml",
            &format!(
                "version: 1\nname: concurrent\npostgres:\n{}databases:\n  - name: app\n    extensions: [pg_trgm, hstore, citext, cube, \"uuid-ossp\"]\n  - name: second\n    extensions: [ltree]\n",
                server.connection_yaml(PASSWORD_ENV)
            ),
        );
        let runs: Vec<_> = (0..2)
            .map(|_| {
                let spec = arg(&spec).to_owned();
                let password = server.password.clone();
                std::thread::spawn(move || {
                    pgspec(
                        &["apply", "-f", &spec, "--auto-approve"],
                        &[(PASSWORD_ENV, password.as_str())],
                    )
                })
            })
            .collect();
        let runs: Vec<_> = runs
            .into_iter()
            .map(|run| run.join().expect("thread"))
            .collect();
        for run in &runs {
            assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        }
        let applied = runs
            .iter()
            .filter(|run| run.stdout.contains("Apply complete"))
            .count();
        let waited = runs
            .iter()
            .filter(|run| run.stdout.contains("No changes."))
            .count();
        assert_eq!(
            (applied, waited),
            (1, 1),
            "one applies, the other finds it done"
        );
        pgspec(
            &["drift", "-f", arg(&spec)],
            &[(PASSWORD_ENV, server.password.as_str())],
        )
        .expect(0);
    });
}

/// A port where something accepts connections and never speaks (a wrong
/// port, a hung proxy) is a clear error naming the address, not a plan
/// that waits forever: the connection's whole startup has a bound.
/// Regression test for issue 15, part 6.
#[test]
fn faults_silent_server_is_a_clear_error() {
    common::block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let port = listener.local_addr().expect("address").port();
        // Accepts every connection and keeps it open without a word.
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let work = Workdir::new();
        let spec = work.write(
            "spec.yaml",
            &format!(
                "version: 1\nname: silent\npostgres:\n  connection:\n    host: 127.0.0.1\n    \
                 port: {port}\n    user: postgres\n    password: {{ env: {PASSWORD_ENV} }}\n\
                 databases:\n  - name: app\n"
            ),
        );
        let spec = arg(&spec).to_owned();
        let run = tokio::task::spawn_blocking(move || {
            pgspec(&["plan", "-f", &spec], &[(PASSWORD_ENV, "x")])
        });
        // Only a guard for the test harness, far above pgspec's own bound:
        // without one a regression would hang the whole suite.
        let run = tokio::time::timeout(std::time::Duration::from_secs(300), run)
            .await
            .expect("pgspec plan must give up on a server that never answers")
            .expect("run pgspec")
            .expect(1);
        silent.abort();
        assert!(
            run.stderr.contains(&format!(
                "cannot connect to PostgreSQL at `postgres@127.0.0.1:{port}"
            )),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("no answer within"), "{}", run.stderr);
        assert!(
            run.stderr.contains("help: something accepts connections"),
            "{}",
            run.stderr
        );
    });
}

/// Faults are one clear error with exit code 1, never a hang or a panic.
#[test]
fn faults_are_clear_errors() {
    let work = Workdir::new();
    let spec = work.write(
        "spec.yaml",
        &format!(
            "version: 1\nname: {}\npostgres:\n  image: {}\n  port: {}\n  superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n",
            unique_name("fault"),
            postgres_image(15),
            free_port()
        ),
    );
    let unreachable = pgspec(
        &["plan", "-f", arg(&spec)],
        &[
            (PASSWORD_ENV, "x"),
            ("DOCKER_HOST", "unix:///nonexistent/pgspec-test.sock"),
        ],
    )
    .expect(1);
    assert!(
        unreachable.stderr.contains(
            "Docker Engine at unix:///nonexistent/pgspec-test.sock, from DOCKER_HOST did not answer"
        ),
        "{}",
        unreachable.stderr
    );
    assert!(
        unreachable.stderr.contains("help: start dockerd"),
        "{}",
        unreachable.stderr
    );
    assert!(
        !unreachable.stderr.contains("panicked"),
        "{}",
        unreachable.stderr
    );

    let missing_secret = pgspec(&["plan", "-f", arg(&spec)], &[]).expect(1);
    assert!(
        missing_secret
            .stderr
            .contains(&format!("environment variable `{PASSWORD_ENV}` is not set")),
        "{}",
        missing_secret.stderr
    );

    // A missing image that cannot be pulled is said plainly.
    // The apply creates the network and volume before the container fails;
    // the guard removes them.
    let no_image_name = unique_name("noimg");
    let mut cleanup = Cleanup::default();
    cleanup.volumes.push(format!("{no_image_name}-pgdata"));
    cleanup.networks.push(format!("{no_image_name}-net"));
    cleanup.containers.push(format!("{no_image_name}-postgres"));
    let no_image = work.write(
        "noimage.yaml",
        &format!(
            "version: 1\nname: {no_image_name}\npostgres:\n  image: pgspec-test/no-such-image:1\n  port: {}\n  superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n",
            free_port()
        ),
    );
    let failed = pgspec(
        &["apply", "-f", arg(&no_image), "--auto-approve"],
        &[(PASSWORD_ENV, "x")],
    )
    .expect(1);
    assert!(
        failed.stderr.contains("is neither local nor pullable"),
        "{}",
        failed.stderr
    );
    assert!(
        failed.stderr.contains("action 1 of 1 failed"),
        "{}",
        failed.stderr
    );
}

/// Writes a spec for deployment `name` on an external server, with
/// `roles` and `databases` blocks as given.
fn external_spec(
    work: &Workdir,
    name: &str,
    server: &Server,
    roles: &str,
    databases: &str,
) -> String {
    let text = format!(
        "version: 1\nname: {name}\npostgres:\n{}{roles}databases:\n{databases}",
        server.connection_yaml(PASSWORD_ENV)
    );
    arg(&work.write("spec.yaml", &text)).to_owned()
}

/// Asserts what every failed apply says: the action that failed, what was
/// done before it and what to run next, as one error and no panic.
fn assert_failed_action(run: &common::Run, action: &str, done: &str, help: &str) {
    let stderr = &run.stderr;
    let expected = [
        action,
        &format!("done before the failure: {done}"),
        "run `pgspec plan` to see what remains",
        &format!("help: {help}"),
    ];
    for line in expected {
        assert!(stderr.contains(line), "missing `{line}` in\n{stderr}");
    }
    assert_eq!(stderr.matches("error:").count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Whether an index is valid, or `None` when there is none of that name.
/// A fresh apply finishes the job: the plan after it is empty, `items`
/// still holds `rows` rows and `index` is valid.
async fn assert_converges(server: &Server, spec: &str, rows: i64, index: &str) {
    let env = [(PASSWORD_ENV, server.password.as_str())];
    pgspec(&["apply", "-f", spec, "--auto-approve"], &env).expect(0);
    pgspec(&["plan", "-f", spec, "--detailed-exitcode"], &env).expect(0);
    let client = server.client("app").await;
    let count: i64 = client
        .query_one("SELECT count(*) FROM items", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(count, rows);
    assert_eq!(index_valid(&client, index).await, Some(true));
}

async fn index_valid(client: &tokio_postgres::Client, index: &str) -> Option<bool> {
    client
        .query_opt(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = $1",
            &[&index],
        )
        .await
        .expect("read pg_index")
        .map(|row| row.get(0))
}

/// The server is killed while apply's index build waits for a lock another
/// session holds: apply ends with one error naming the action and the lost
/// connection; with the server back, a fresh apply finishes and no row is
/// lost.
#[test]
fn faults_server_killed_mid_apply() {
    common::block_on(async {
        let docker = docker().await;
        let mut server = Server::start(17).await;
        server.execute("postgres", "CREATE DATABASE app").await;
        server
            .execute(
                "app",
                "CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, 1000)",
            )
            .await;
        let work = Workdir::new();
        let roles = "roles:\n  - name: reader\n";
        let databases =
            "  - name: app\n    indexes: [{ name: items_id, table: items, columns: [id] }]\n";
        let name = unique_name("killed");
        let spec = external_spec(&work, &name, &server, roles, databases);

        // The index build waits for this lock until the server dies; the
        // long lock timeout keeps apply from giving up first.
        let holder = server.client("app").await;
        holder
            .batch_execute("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
            .await
            .expect("hold the lock");
        let password = server.password.clone();
        let apply_spec = spec.clone();
        let apply = tokio::task::spawn_blocking(move || {
            pgspec(
                &[
                    "apply",
                    "-f",
                    &apply_spec,
                    "--auto-approve",
                    "--lock-timeout",
                    "600000",
                ],
                &[(PASSWORD_ENV, password.as_str())],
            )
        });
        let watcher = server.client("postgres").await;
        let started = std::time::Instant::now();
        loop {
            let waiting: i64 = watcher
                .query_one(
                    // A plain build (the table is small) waits in its
                    // LOCK TABLE, a concurrent one in CREATE INDEX.
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgspec' \
                     AND wait_event_type = 'Lock' \
                     AND (query LIKE 'CREATE INDEX%' OR query LIKE 'BEGIN; LOCK TABLE%')",
                    &[],
                )
                .await
                .expect("read pg_stat_activity")
                .get(0);
            if waiting > 0 {
                break;
            }
            if apply.is_finished() {
                let run = apply.await.expect("apply thread");
                panic!(
                    "apply ended before its index build waited:\n{}\n{}",
                    run.stdout, run.stderr
                );
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(120),
                "pgspec's index build never waited for the lock"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        docker
            .kill_container(
                &server.container,
                None::<bollard::query_parameters::KillContainerOptions>,
            )
            .await
            .expect("kill the server");
        let failed = tokio::time::timeout(std::time::Duration::from_secs(120), apply)
            .await
            .expect("apply hangs after the server was killed")
            .expect("apply thread")
            .expect(1);
        assert_failed_action(
            &failed,
            "action 2 of 2 failed: create `database.app/index.items_id`",
            "role.reader (created)",
            "the connection to the server was lost (it stopped, restarted or crashed); \
             once it is back, run `pgspec apply` again to do what remains",
        );
        drop((holder, watcher));

        server.restart().await;
        let spec = external_spec(&work, &name, &server, roles, databases);
        assert_converges(&server, &spec, 1000, "items_id").await;
    });
}

/// An index build that fills the disk its sort files go to fails with one
/// error saying the disk is full; once there is room, a fresh apply repairs
/// the invalid index the failed build left, and no row is lost.
#[test]
fn faults_disk_full_during_index_build() {
    common::block_on(async {
        // Temporary files go to a tablespace on a 1 MB tmpfs; sorting 300 000
        // keys of 32 characters with 1 MB of memory spills far more than that.
        let server = Server::start_with_small_disk(15, "/small", "1m").await;
        server.execute("postgres", "CREATE DATABASE app").await;
        server
            .execute(
                "app",
                "CREATE TABLE items (id int, body text); \
                 INSERT INTO items SELECT i, md5(i::text) FROM generate_series(1, 300000) i",
            )
            .await;
        // CREATE TABLESPACE cannot run in the transaction a batch makes.
        server
            .execute("postgres", "CREATE TABLESPACE small LOCATION '/small'")
            .await;
        server
            .execute(
                "postgres",
                "ALTER ROLE postgres SET temp_tablespaces = small; \
                 ALTER ROLE postgres SET maintenance_work_mem = '1MB'; \
                 ALTER ROLE postgres SET max_parallel_maintenance_workers = 0",
            )
            .await;
        let work = Workdir::new();
        let databases = "  - name: app\n    extensions: [pg_trgm]\n    \
                         indexes: [{ name: items_body, table: items, columns: [body] }]\n";
        let spec = external_spec(&work, &unique_name("full"), &server, "", databases);
        let env = [(PASSWORD_ENV, server.password.as_str())];

        let failed = pgspec(&["apply", "-f", &spec, "--auto-approve"], &env).expect(1);
        assert_failed_action(
            &failed,
            "action 2 of 2 failed: create `database.app/index.items_body`",
            "database.app/extension.pg_trgm (created)",
            "the server's disk is full: free space on the disk that holds the file named above",
        );
        assert!(
            failed.stderr.contains("No space left on device"),
            "{}",
            failed.stderr
        );

        // Room again: temporary files go back to the data directory.
        server
            .execute("postgres", "ALTER ROLE postgres RESET temp_tablespaces")
            .await;
        assert_converges(&server, &spec, 300_000, "items_body").await;
    });
}

/// An index build cancelled by the statement_timeout of the role pgspec
/// connects as fails with one error naming statement_timeout and how to
/// raise it for that role; done as the error says, a fresh apply converges.
#[test]
fn faults_statement_timeout() {
    common::block_on(async {
        let server = Server::start(17).await;
        server.execute("postgres", "CREATE DATABASE app").await;
        // The index's expression sleeps 10 ms a row, so building it takes at
        // least 3 s however fast the machine: three times the timeout, while
        // pgspec's catalog reads take milliseconds.
        server
            .execute(
                "app",
                "CREATE FUNCTION slow(value int) RETURNS int IMMUTABLE LANGUAGE plpgsql \
                   AS $$ BEGIN PERFORM pg_sleep(0.01); RETURN value; END $$; \
                 CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, 300)",
            )
            .await;
        server
            .execute(
                "postgres",
                "ALTER ROLE postgres SET statement_timeout = '1s'",
            )
            .await;
        let work = Workdir::new();
        let databases = "  - name: app\n    \
                         indexes: [{ name: items_slow, table: items, columns: [{ expression: slow(id) }] }]\n";
        let spec = external_spec(&work, &unique_name("timeout"), &server, "", databases);
        let env = [(PASSWORD_ENV, server.password.as_str())];

        let failed = pgspec(&["apply", "-f", &spec, "--auto-approve"], &env).expect(1);
        let raise = r#"`ALTER ROLE "postgres" SET statement_timeout = '1h'`"#;
        assert_failed_action(
            &failed,
            "action 1 of 1 failed: create `database.app/index.items_slow`",
            "nothing",
            &format!(
                "the statement ran longer than statement_timeout allows (index builds on large \
                 tables can take hours): raise it for the role pgspec connects as, e.g. {raise}"
            ),
        );
        assert!(
            failed
                .stderr
                .contains("canceling statement due to statement timeout"),
            "{}",
            failed.stderr
        );

        // Done as the hint says.
        server.execute("postgres", &raise.replace('`', "")).await;
        assert_converges(&server, &spec, 300, "items_slow").await;
    });
}

/// Fails when `text` (what Docker shows of `object`) holds a secret, as
/// itself or base64-encoded.
fn assert_no_secret(object: &str, text: &str, secrets: &[&str]) {
    use base64::Engine as _;
    for secret in secrets {
        let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
        assert!(
            !text.contains(secret) && !text.contains(&encoded),
            "{object} shows a secret:\n{text}"
        );
    }
}

/// Waits until the engine calls a container healthy.
async fn wait_until_healthy(docker: &bollard::Docker, container: &str) {
    for _ in 0..600 {
        let inspect = docker
            .inspect_container(container, None)
            .await
            .expect("inspect container");
        let health = inspect
            .state
            .and_then(|state| state.health)
            .and_then(|health| health.status);
        if health == Some(bollard::models::HealthStatusEnum::HEALTHY) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("`{container}` did not become healthy");
}

/// Fails when a run's output holds a secret (as itself or base64-encoded),
/// a SCRAM verifier or a line of a libpq password file. The message shows
/// only the neighbourhood of the leak: a trace log can be very long.
fn assert_no_secret_in_output(command: &str, run: &common::Run, secrets: &[&str]) {
    use base64::Engine as _;
    let mut needles: Vec<String> = vec!["SCRAM-SHA-256$".to_owned(), "*:*:*:*:".to_owned()];
    for secret in secrets {
        needles.push((*secret).to_owned());
        needles.push(base64::engine::general_purpose::STANDARD.encode(secret));
    }
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        for needle in &needles {
            if let Some(at) = text.find(needle.as_str()) {
                let start = (0..=at.saturating_sub(300))
                    .rev()
                    .find(|index| text.is_char_boundary(*index))
                    .unwrap_or(0);
                let end = ((at + needle.len() + 300).min(text.len())..=text.len())
                    .find(|index| text.is_char_boundary(*index))
                    .unwrap_or(text.len());
                panic!(
                    "the {stream} of `pgspec {command}` ({} bytes) shows `{needle}`:\n…{}…",
                    text.len(),
                    &text[start..end]
                );
            }
        }
    }
}

/// No secret reaches Docker or the logs: the inspect output, labels
/// included, of every container, volume and network pgspec made for a
/// deployment with a pooler, a backup schedule and TLS holds none of the
/// deployment's passwords nor its TLS key, and neither does anything pgspec prints while it
/// creates them and later changes a role's password, at trace level
/// (`RUST_LOG=trace` and `-vvv`, so the HTTP and PostgreSQL client crates
/// would log their requests and statements if they could).
///
/// Regression test for issue 15, part 4.
#[test]
fn secrets_stay_out_of_docker_inspect() {
    use std::collections::{BTreeSet, HashMap};

    use bollard::query_parameters::{
        ListContainersOptions, ListNetworksOptions, ListVolumesOptions,
    };

    const ROLE_PASSWORD_ENV: &str = "PGSPEC_IT_RELIABILITY_ROLE_PASSWORD";
    const TLS_KEY_ENV: &str = "PGSPEC_IT_RELIABILITY_TLS_KEY";
    common::block_on(async {
        let docker = docker().await;
        let mut owned = Owned::new("inspect");
        let name = owned.name.clone();
        let expected_containers = [
            format!("{name}-backup"),
            format!("{name}-pgbouncer"),
            format!("{name}-postgres"),
        ];
        let expected_volumes = [format!("{name}-backups"), format!("{name}-pgdata")];
        owned.cleanup.containers.extend(expected_containers.clone());
        owned.cleanup.volumes.extend(expected_volumes.clone());
        let role_password = format!("role-{}", unique_name("secret"));
        let file_password = format!("file-{}", unique_name("secret"));
        let password_file = owned.work.write("reporting.password", &file_password);
        // A TLS certificate from a file, its key from the environment.
        let tls_key = rcgen::KeyPair::generate().expect("TLS key");
        let tls_certificate = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .and_then(|params| params.self_signed(&tls_key))
            .expect("TLS certificate");
        let certificate_file = owned.work.write("server.crt", &tls_certificate.pem());
        let tls_key = tls_key.serialize_pem();
        // Any line of the key's body, and the PEM label itself.
        let key_line = tls_key.lines().nth(1).expect("a PEM body").to_owned();
        let text = format!(
            "version: 1\nname: {name}\n\
             postgres:\n  image: {image}\n  port: {port}\n  \
             superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n  \
             tls: {{ certificate: {{ file: '{certificate}' }}, key: {{ env: {TLS_KEY_ENV} }} }}\n\
             pooler:\n  image: pgspec-test/pgbouncer:1\n  port: {pooler_port}\n\
             roles:\n  \
             - {{ name: app_user, login: true, password: {{ env: {ROLE_PASSWORD_ENV} }} }}\n  \
             - {{ name: reporting, login: true, password: {{ file: '{file}' }} }}\n\
             databases:\n  - {{ name: app, owner: app_user }}\n\
             backup:\n  schedules:\n    - {{ name: nightly, schedule: \"0 2 * * *\" }}\n  \
             destination: {{ volume: {name}-backups }}\n",
            image = postgres_image(17),
            port = owned.port,
            pooler_port = free_port(),
            file = arg(&password_file),
            certificate = arg(&certificate_file),
        );
        let spec = arg(&owned.work.write("spec.yaml", &text)).to_owned();
        let new_role_password = format!("role-{}", unique_name("secret"));
        let secrets = [
            owned.password.as_str(),
            role_password.as_str(),
            new_role_password.as_str(),
            file_password.as_str(),
            key_line.as_str(),
            "PRIVATE KEY",
        ];
        let apply = ["apply", "-f", &spec, "--auto-approve", "-vvv"];
        let plan = ["plan", "-f", &spec, "--detailed-exitcode", "-vvv"];
        for (password, args, code) in [
            // Creates the server, the roles with their passwords, the
            // pooler with its auth file and the backup container with its
            // password file.
            (&role_password, &apply[..], 0),
            (&role_password, &plan[..], 0),
            // A changed password: set on the live role and copied into
            // the pooler's auth file.
            (&new_role_password, &plan[..], 2),
            (&new_role_password, &apply[..], 0),
            (&new_role_password, &plan[..], 0),
        ] {
            let env = [
                (ROLE_PASSWORD_ENV, password.as_str()),
                (TLS_KEY_ENV, tls_key.as_str()),
                ("RUST_LOG", "trace"),
            ];
            let run = owned.pgspec(args, &env);
            assert_no_secret_in_output(&args.join(" "), &run, &secrets);
            let run = run.expect(code);
            if args[0] == "apply" {
                // pgspec's own debug logs (the statements it runs) are on.
                assert!(run.stderr.contains("DEBUG"), "{}", run.stderr);
                // The server's health verdict is part of the live state; a
                // later apply that sees it move from `starting` between its
                // plan and its re-observe refuses the plan as stale.
                wait_until_healthy(&docker, &format!("{name}-postgres")).await;
            }
        }

        // Everything that carries the deployment's label, found rather than
        // assumed, so an object added later is checked (and removed) too.
        let filters = Some(HashMap::from([(
            "label".to_owned(),
            vec![format!("org.pgspec.deployment={name}")],
        )]));
        let mut containers = BTreeSet::new();
        for summary in docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: filters.clone(),
                ..ListContainersOptions::default()
            }))
            .await
            .expect("list containers")
        {
            let container = summary
                .names
                .and_then(|names| names.into_iter().next())
                .expect("container name")
                .trim_start_matches('/')
                .to_owned();
            owned.cleanup.containers.push(container.clone());
            let inspect = docker
                .inspect_container(&container, None)
                .await
                .expect("inspect container");
            let shown = serde_json::to_string(&inspect).expect("json");
            // The labels are part of what is searched.
            let label = format!("\"org.pgspec.deployment\":\"{name}\"");
            assert!(shown.contains(&label), "{shown}");
            assert_no_secret(&format!("container `{container}`"), &shown, &secrets);
            containers.insert(container);
        }
        let mut volumes = BTreeSet::new();
        for volume in docker
            .list_volumes(Some(ListVolumesOptions {
                filters: filters.clone(),
            }))
            .await
            .expect("list volumes")
            .volumes
            .unwrap_or_default()
        {
            owned.cleanup.volumes.push(volume.name.clone());
            let inspect = docker
                .inspect_volume(&volume.name)
                .await
                .expect("inspect volume");
            let shown = serde_json::to_string(&inspect).expect("json");
            assert_no_secret(&format!("volume `{}`", volume.name), &shown, &secrets);
            volumes.insert(volume.name);
        }
        let mut networks = BTreeSet::new();
        for network in docker
            .list_networks(Some(ListNetworksOptions { filters }))
            .await
            .expect("list networks")
        {
            let network = network.name.expect("network name");
            owned.cleanup.networks.push(network.clone());
            let inspect = docker
                .inspect_network(
                    &network,
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
                .expect("inspect network");
            let shown = serde_json::to_string(&inspect).expect("json");
            assert_no_secret(&format!("network `{network}`"), &shown, &secrets);
            networks.insert(network);
        }
        for container in &expected_containers {
            assert!(
                containers.contains(container),
                "{container} in {containers:?}"
            );
        }
        for volume in &expected_volumes {
            assert!(volumes.contains(volume), "{volume} in {volumes:?}");
        }
        assert!(networks.contains(&format!("{name}-net")), "{networks:?}");
    });
}

/// Names with quotes, semicolons, spaces, capitals and unicode survive a
/// full apply/plan round trip as plain names.
#[test]
fn hostile_names_are_plain_names() {
    common::block_on(async {
        let server = Server::start(15).await;
        let work = Workdir::new();
        let hostile = r#"Ünï "db"; DROP TABLE x; --"#;
        let spec = work.write(
            "spec.yaml",
            &format!(
                "version: 1\nname: hostile\npostgres:\n{}databases:\n  - name: '{}'\n    extensions: [{{ name: pg_trgm, schema: 'My Schema; --' }}]\n",
                server.connection_yaml(PASSWORD_ENV),
                hostile.replace('\'', "''")
            ),
        );
        let env = [(PASSWORD_ENV, server.password.as_str())];
        let plan = pgspec(&["plan", "-f", arg(&spec)], &env).expect(0);
        assert!(
            plan.stdout
                .contains(r#"CREATE DATABASE "Ünï ""db""; DROP TABLE x; --""#),
            "{}",
            plan.stdout
        );
        // The extension's schema does not exist yet: the database is created,
        // the extension fails, and the error says what was done.
        let failed = pgspec(&["apply", "-f", arg(&spec), "--auto-approve"], &env).expect(1);
        assert!(
            failed.stderr.contains("action 2 of 2 failed"),
            "{}",
            failed.stderr
        );
        assert!(
            failed.stderr.contains("done before the failure: database."),
            "{}",
            failed.stderr
        );
        // The application's migrations make the schema.
        server
            .execute(hostile, r#"CREATE SCHEMA "My Schema; --""#)
            .await;
        pgspec(&["apply", "-f", arg(&spec), "--auto-approve"], &env).expect(0);
        pgspec(&["drift", "-f", arg(&spec)], &env).expect(0);
        let schema: String = server
            .client(hostile)
            .await
            .query_one(
                "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'",
                &[],
            )
            .await
            .expect("extension schema")
            .get(0);
        assert_eq!(schema, "My Schema; --");
    });
}

/// Every command, pruning included, on a deployment holding data leaves the
/// volume, databases and tables in place.
#[test]
fn nothing_that_holds_data_is_dropped() {
    common::block_on(async {
        let docker = docker().await;
        let owned = Owned::new("keep");
        let spec = owned.spec(&postgres_image(17), "", V2);
        owned
            .pgspec(&["apply", "-f", &spec, "--auto-approve"], &[])
            .expect(0);
        connect(owned.port, &owned.password, "app")
            .await
            .expect("connect")
            .batch_execute(
                "CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, 100)",
            )
            .await
            .expect("seed");

        // A spec that lists no databases at all, with pruning on.
        let empty = owned.spec(&postgres_image(17), "", "  []\n");
        let plan = owned
            .pgspec(&["plan", "-f", &empty, "--show-unmanaged"], &[])
            .expect(0);
        assert!(plan.stdout.contains("? database.app"), "{}", plan.stdout);
        owned
            .pgspec(&["apply", "-f", &empty, "--auto-approve"], &[])
            .expect(0);
        owned.pgspec(&["drift", "-f", &empty], &[]).expect(0);
        let saved = owned.work.path("saved.plan");
        owned
            .pgspec(&["plan", "-f", &empty, "--out", arg(&saved)], &[])
            .expect(0);
        owned.pgspec(&["apply", arg(&saved)], &[]).expect(0);

        assert_eq!(owned.rows().await, 100);
        let databases: Vec<String> = connect(owned.port, &owned.password, "postgres")
            .await
            .expect("connect")
            .query("SELECT datname::text FROM pg_database ORDER BY 1", &[])
            .await
            .expect("databases")
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert!(databases.contains(&"app".to_owned()) && databases.contains(&"other".to_owned()));
        docker
            .inspect_volume(&format!("{}-pgdata", owned.name))
            .await
            .expect("the data volume is still there");
    });
}
