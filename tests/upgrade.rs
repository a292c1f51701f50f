//! A declared major version upgrade against the real engine (issue #20):
//! a deployment on the local PostgreSQL 15 image, with a login role, grants,
//! an extension, an index, a pooler and backups, moves to the local
//! PostgreSQL 17 image by `upgrade: { method: dump-restore }`. The apply is
//! cut off after the copy and finishes on the next run; every row and
//! sequence value survives, the role logs in with its password, through
//! the pooler too, the old data is kept in its own volume, a further plan
//! is empty, and the rollback the README describes brings the old server
//! back on the kept volume. Without the declaration the change is a plan
//! error, and so is an extension the new image lacks, read from the image
//! by the plan before anything changes.

mod common;

use common::{Cleanup, Workdir, arg, connect, docker, free_port, pgspec, unique_name};

const PASSWORD_ENV: &str = "PGSPEC_IT_UPGRADE_PASSWORD";
const APP_PASSWORD_ENV: &str = "PGSPEC_IT_UPGRADE_APP_PASSWORD";

fn spec_text(name: &str, major: u32, port: u16, pooler_port: u16, declared: bool) -> String {
    let upgrade = if declared {
        "  upgrade: { method: dump-restore }\n"
    } else {
        ""
    };
    format!(
        "version: 1\nname: {name}\npostgres:\n  image: pgspec-test/postgres:{major}\n  \
         port: {port}\n  superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n{upgrade}\
         roles:\n  - name: app\n    login: true\n    password: {{ env: {APP_PASSWORD_ENV} }}\n\
         databases:\n  - name: shop\n    owner: app\n    extensions: [pg_trgm]\n    \
         indexes:\n      - {{ name: orders_note, table: orders, columns: [note] }}\n    \
         grants:\n      - {{ role: app, schema: public, tables: all, privileges: [ALL] }}\n\
         pooler:\n  image: pgspec-test/pgbouncer:1\n  port: {pooler_port}\n\
         backup:\n  schedules:\n    - {{ name: yearly, schedule: \"0 3 1 1 *\" }}\n  \
         destination: {{ volume: {name}-backups }}\n"
    )
}

/// A connection as the role `app`.
async fn connect_app(
    port: u16,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("app")
        .password(password)
        .dbname("shop")
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn snapshot(port: u16, password: &str) -> (i64, i64, String) {
    let client = connect(port, password, "shop")
        .await
        .expect("connect to shop");
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM orders), \
                    (SELECT last_value FROM orders_id_seq), \
                    (SELECT string_agg(note, ',' ORDER BY id) FROM orders)",
            &[],
        )
        .await
        .expect("read the orders");
    (row.get(0), row.get(1), row.get(2))
}

#[test]
fn a_declared_upgrade_moves_15_to_17_and_keeps_the_old_data() {
    common::block_on(upgrades());
}

async fn upgrades() {
    let docker = docker().await;
    let name = unique_name("up");
    let mut cleanup = Cleanup::default();
    for suffix in ["postgres", "pgbouncer", "backup", "upgrade"] {
        cleanup.containers.push(format!("{name}-{suffix}"));
    }
    for volume in ["pgdata", "backups", "pgdata-pg15", "upgrade"] {
        cleanup.volumes.push(format!("{name}-{volume}"));
    }
    cleanup.networks.push(format!("{name}-net"));
    let port = free_port();
    let pooler_port = free_port();
    let password = format!("pw-{}", unique_name("secret"));
    let app_password = format!("app-{}", unique_name("secret"));
    let work = Workdir::new();
    let write = |major: u32, declared: bool| {
        let text = spec_text(&name, major, port, pooler_port, declared);
        arg(&work.write("spec.yaml", &text)).to_owned()
    };
    let run = |args: &[&str], extra: &[(&str, &str)]| {
        let mut env = vec![
            (PASSWORD_ENV, password.as_str()),
            (APP_PASSWORD_ENV, app_password.as_str()),
        ];
        env.extend_from_slice(extra);
        pgspec(args, &env)
    };

    let spec = write(15, true);
    run(&["apply", "-f", &spec, "--auto-approve"], &[]).expect(0);
    connect_app(port, &app_password)
        .await
        .expect("the role logs in before the upgrade");
    connect(port, &password, "shop")
        .await
        .expect("connect to shop")
        .batch_execute(
            "CREATE TABLE orders (id bigserial PRIMARY KEY, note text);
             ALTER TABLE orders OWNER TO app;
             INSERT INTO orders (note) SELECT 'order ' || i FROM generate_series(1, 250) AS i;
             DELETE FROM orders WHERE id > 240;",
        )
        .await
        .expect("seed the orders");
    run(&["apply", "-f", &spec, "--auto-approve"], &[]).expect(0);
    run(&["backup", "run", "-f", &spec], &[]).expect(0);
    let before = snapshot(port, &password).await;
    assert_eq!((before.0, before.1), (240, 250));

    // Undeclared, a major change is refused with how to declare one.
    let spec = write(17, false);
    let refused = run(&["plan", "-f", &spec], &[]).expect(1);
    assert!(
        refused
            .stdout
            .contains("`postgres.upgrade: { method: dump-restore }`")
            || refused
                .stderr
                .contains("`postgres.upgrade: { method: dump-restore }`"),
        "{}\n{}",
        refused.stdout,
        refused.stderr
    );

    // An extension the new image lacks stops it before anything changes:
    // one installed in the old server only.
    let old_server = format!("{name}-postgres");
    let control =
        "comment = 'only in the old image'\ndefault_version = '1.0'\nrelocatable = true\n";
    let entries = [
        pgspec::engine::archive::Entry::file(
            "/usr/share/postgresql/15/extension/pgspec_only_old.control",
            0o644,
            control.as_bytes(),
        ),
        pgspec::engine::archive::Entry::file(
            "/usr/share/postgresql/15/extension/pgspec_only_old--1.0.sql",
            0o644,
            b"CREATE FUNCTION pgspec_only_old() RETURNS int LANGUAGE sql AS 'SELECT 1';\n",
        ),
    ];
    pgspec::engine::files::upload_entries(&docker, &old_server, &entries, "a test extension")
        .await
        .expect("install a test extension");
    connect(port, &password, "shop")
        .await
        .expect("connect")
        .batch_execute("CREATE EXTENSION pgspec_only_old")
        .await
        .expect("create the test extension");
    let spec = write(17, true);
    let refused = run(&["plan", "-f", &spec], &[]).expect(1);
    let missing = "extension `pgspec_only_old` 1.0 (in `shop`) is not in the new image";
    assert!(
        refused.stdout.contains(missing) || refused.stderr.contains(missing),
        "{}\n{}",
        refused.stdout,
        refused.stderr
    );
    let stopped = run(&["apply", "-f", &spec, "--auto-approve"], &[]).expect(1);
    assert!(
        stopped.stdout.contains(missing) || stopped.stderr.contains(missing),
        "{}\n{}",
        stopped.stdout,
        stopped.stderr
    );
    // The plan read the new image's extensions from a container it never
    // started and removed again; the apply began nothing.
    let leftovers = pgspec::engine::container::names_with_label(
        &docker,
        pgspec::model::labels::DEPLOYMENT,
        &name,
    )
    .await
    .expect("list the deployment's containers");
    assert!(
        leftovers
            .iter()
            .all(|container| !container.contains("check") && !container.ends_with("-upgrade")),
        "{leftovers:?}"
    );
    assert_eq!(
        snapshot(port, &password).await,
        before,
        "the old server runs on"
    );
    connect(port, &password, "shop")
        .await
        .expect("connect")
        .batch_execute(
            "INSERT INTO orders (note) VALUES ('writable'); DROP EXTENSION pgspec_only_old",
        )
        .await
        .expect("the old server is writable again");
    let before = snapshot(port, &password).await;
    assert_eq!((before.0, before.1), (241, 251));

    let plan = run(&["plan", "-f", &spec], &[]).expect(0);
    assert!(
        plan.stdout
            .contains(&format!("# container.{old_server} will be upgraded"))
            && plan
                .stdout
                .contains("database(s) (pg_database_size), assuming")
            && plan
                .stdout
                .contains(&format!("PgBouncer in `{name}-pgbouncer` paused (PAUSE)")),
        "{}",
        plan.stdout
    );

    // Cut off after the copy and the switch of the data...
    run(
        &["apply", "-f", &spec, "--auto-approve"],
        &[("PGSPEC_TEST_STOP_AFTER", "1")],
    )
    .expect(1);
    assert!(
        pgspec::engine::objects::volume_exists(&docker, &format!("{name}-pgdata-pg15"))
            .await
            .expect("inspect the kept volume"),
        "the old data is kept"
    );
    // PgBouncer, paused for the copy, waits for the new server: the next
    // plan resumes it after the replace...
    let pending = run(&["plan", "-f", &spec], &[]).expect(0);
    assert!(
        pending.stdout.contains("~ paused = yes -> no")
            && pending.stdout.contains("RESUME through the admin console"),
        "{}",
        pending.stdout
    );
    // ...and finished by the next apply.
    run(&["apply", "-f", &spec, "--auto-approve"], &[]).expect(0);
    let client = connect(port, &password, "shop").await.expect("connect");
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .expect("version")
        .get(0);
    assert_eq!(version / 10_000, 17);
    assert_eq!(
        snapshot(port, &password).await,
        before,
        "rows and sequences"
    );
    let app = connect_app(port, &app_password)
        .await
        .expect("the role logs in with its password");
    app.batch_execute("INSERT INTO orders (note) VALUES ('after the upgrade')")
        .await
        .expect("the role writes as it did");
    let through_pooler = connect_app(pooler_port, &app_password)
        .await
        .expect("connect through the pooler");
    through_pooler
        .simple_query("SELECT count(*) FROM orders")
        .await
        .expect("query through the pooler");
    run(&["plan", "-f", &spec, "--detailed-exitcode"], &[]).expect(0);
    let backup = run(&["backup", "run", "-f", &spec], &[]).expect(0);
    assert!(backup.stdout.contains(" ok ("), "{}", backup.stdout);

    // Rolled back as the README says: the new server's container goes, and
    // the spec names the old image and the kept volume.
    pgspec::engine::container::stop_and_remove(&docker, &old_server)
        .await
        .expect("remove the new server's container");
    let text = spec_text(&name, 15, port, pooler_port, true).replacen(
        "  port:",
        &format!("  volume: {name}-pgdata-pg15\n  port:"),
        1,
    );
    let spec = arg(&work.write("spec.yaml", &text)).to_owned();
    run(&["apply", "-f", &spec, "--auto-approve"], &[]).expect(0);
    let client = connect(port, &password, "shop").await.expect("connect");
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .expect("version")
        .get(0);
    assert_eq!(version / 10_000, 15);
    assert_eq!(
        snapshot(port, &password).await,
        before,
        "the old data as it was"
    );
    connect_app(port, &app_password)
        .await
        .expect("the role logs in on the old server")
        .batch_execute("INSERT INTO orders (note) VALUES ('rolled back')")
        .await
        .expect("the old server is writable");
}
