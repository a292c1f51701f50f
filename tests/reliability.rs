//! Reliability and safety against the real engine and servers: applies cut
//! off at every action converge, concurrent applies never interleave, faults
//! are clear errors, hostile names are plain names, and nothing that holds
//! data is dropped.

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

    fn spec(&self, image: &str, databases: &str) -> String {
        let text = format!(
            "version: 1\nname: {}\nprune: true\npostgres:\n  image: {image}\n  port: {}\n  \
             superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\ndatabases:\n{databases}",
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

/// An apply stopped after its k-th action, for every k of a plan that
/// replaces the container and creates databases and extensions, is finished
/// by the next apply; the plan after that is empty and no row is lost.
#[test]
fn interrupted_applies_converge() {
    common::block_on(async {
        let docker = docker().await;
        for stop_after in 0..4 {
            let mut owned = Owned::new("cut");
            let image = postgres_image(15);
            let spec = owned.spec(&image, V1);
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
            // which replaces the container, and adds a database and extensions.
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
            let spec = owned.spec(&alternate, V2);
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
            assert_eq!(
                kinds,
                ["replace", "create", "create", "create"],
                "{}",
                plan.stdout
            );

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
        unreachable.stderr.contains("Docker Engine did not answer"),
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
        let spec = owned.spec(&postgres_image(17), V2);
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
        let empty = owned.spec(&postgres_image(17), "  []\n");
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
