//! `pgspec backup restore` against the real engine (issue #19): one
//! database into a new one beside the live ones, one database in place
//! with the one it replaces kept under a new name, and the whole server
//! restored beside it and swapped in, its former data kept in a new volume
//! named in the output. Without a terminal and without `--auto-approve`
//! nothing happens. On PostgreSQL 17 the image keeps its data directory
//! below the volume's root (PostgreSQL 18's layout), so the swap finds it
//! there.

mod common;

use bollard::Docker;
use bollard::query_parameters::ListVolumesOptions;
use common::{Cleanup, Workdir, arg, connect, docker, free_port, pgspec, unique_name};

const PASSWORD_ENV: &str = "PGSPEC_IT_RESTORE_PASSWORD";

/// The image: 15's with PGDATA at the volume's root, `latest` (17 in
/// PostgreSQL 18's layout) with it below.
fn image(major: u32) -> String {
    match major {
        15 => "pgspec-test/postgres:15".to_owned(),
        _ => "pgspec-test/postgres:latest".to_owned(),
    }
}

async fn count(port: u16, password: &str, database: &str) -> i64 {
    let client = connect(port, password, database)
        .await
        .unwrap_or_else(|error| panic!("connect to {database}: {error}"));
    client
        .query_one("SELECT count(*) FROM letters", &[])
        .await
        .unwrap_or_else(|error| panic!("count in {database}: {error}"))
        .get(0)
}

async fn execute(port: u16, password: &str, database: &str, sql: &str) {
    connect(port, password, database)
        .await
        .unwrap_or_else(|error| panic!("connect to {database}: {error}"))
        .batch_execute(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

async fn databases(port: u16, password: &str) -> Vec<String> {
    let client = connect(port, password, "postgres").await.expect("connect");
    client
        .query(
            "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1",
            &[],
        )
        .await
        .expect("list databases")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The volumes whose names start with `prefix`.
async fn volumes_named(docker: &Docker, prefix: &str) -> Vec<String> {
    let listed = docker
        .list_volumes(None::<ListVolumesOptions>)
        .await
        .expect("list volumes");
    let mut names: Vec<String> = listed
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|volume| volume.name)
        .filter(|name| name.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// The name between backquotes after `marker` in `text`.
fn quoted_after(text: &str, marker: &str) -> String {
    let rest = &text[text
        .find(marker)
        .unwrap_or_else(|| panic!("`{marker}` in:\n{text}"))
        + marker.len()..];
    let start = rest.find('`').expect("opening backquote") + 1;
    let end = start + rest[start..].find('`').expect("closing backquote");
    rest[start..end].to_owned()
}

async fn restores(major: u32) {
    let docker = docker().await;
    let name = unique_name("rs");
    let mut cleanup = Cleanup::default();
    cleanup.containers.push(format!("{name}-postgres"));
    cleanup.containers.push(format!("{name}-backup"));
    cleanup.volumes.push(format!("{name}-pgdata"));
    cleanup.volumes.push(format!("{name}-backups"));
    cleanup.networks.push(format!("{name}-net"));
    let port = free_port();
    let password = format!("pw-{}", unique_name("secret"));
    let work = Workdir::new();
    let text = format!(
        "version: 1\nname: {name}\npostgres:\n  image: {image}\n  port: {port}\n  \
         superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n  \
         settings: {{ work_mem: 8MB }}\n\
         databases:\n  - name: letters\n  - name: other\n\
         backup:\n  schedules:\n    - {{ name: yearly, schedule: \"0 3 1 1 *\" }}\n  \
         destination: {{ volume: {name}-backups }}\n",
        image = image(major)
    );
    let spec = arg(&work.write("spec.yaml", &text)).to_owned();
    let run = |args: &[&str]| pgspec(args, &[(PASSWORD_ENV, password.as_str())]);
    run(&["apply", "-f", &spec, "--auto-approve"]).expect(0);
    execute(
        port,
        &password,
        "letters",
        "CREATE TABLE letters (id int PRIMARY KEY, body text);
         INSERT INTO letters SELECT i, 'letter ' || i FROM generate_series(1, 3) AS i;",
    )
    .await;
    run(&["backup", "run", "-f", &spec]).expect(0);
    // Written after the backup: a restore takes it back.
    execute(
        port,
        &password,
        "letters",
        "INSERT INTO letters VALUES (4, 'after'), (5, 'after');",
    )
    .await;
    execute(port, &password, "postgres", "CREATE DATABASE later").await;

    // Without a terminal, only --auto-approve restores.
    let refused = run(&["backup", "restore", "-f", &spec]).expect(1);
    assert!(
        refused
            .stderr
            .contains("refusing to restore without confirmation"),
        "{}",
        refused.stderr
    );
    assert_eq!(count(port, &password, "letters").await, 5);

    // One database into a new one: the live one is not touched.
    let into = run(&[
        "backup",
        "restore",
        "-f",
        &spec,
        "--database",
        "letters",
        "--into",
        "letters_copy",
    ])
    .expect(0);
    assert!(
        into.stdout.contains("into `letters_copy`"),
        "{}",
        into.stdout
    );
    assert_eq!(count(port, &password, "letters_copy").await, 3);
    assert_eq!(count(port, &password, "letters").await, 5);
    let again = run(&[
        "backup",
        "restore",
        "-f",
        &spec,
        "--database",
        "letters",
        "--into",
        "letters_copy",
    ])
    .expect(1);
    assert!(
        again.stderr.contains("database `letters_copy` exists"),
        "{}",
        again.stderr
    );
    assert_eq!(count(port, &password, "letters_copy").await, 3);

    // One database in place: the one it replaces is kept.
    let in_place = run(&[
        "backup",
        "restore",
        "-f",
        &spec,
        "--database",
        "letters",
        "--auto-approve",
    ])
    .expect(0);
    let kept_database = quoted_after(&in_place.stdout, "is kept as");
    assert_eq!(count(port, &password, "letters").await, 3);
    assert_eq!(count(port, &password, &kept_database).await, 5);

    // The whole server: swapped in, the former data kept in a new volume.
    execute(
        port,
        &password,
        "letters",
        "INSERT INTO letters VALUES (6, 'x');",
    )
    .await;
    let whole = run(&["backup", "restore", "-f", &spec, "--auto-approve"]);
    let kept_volume = quoted_after(&whole.stdout, "is kept in volume");
    cleanup.volumes.push(kept_volume.clone());
    let whole = whole.expect(0);
    assert!(
        whole.stdout.contains("every count matches the backup's"),
        "the restored copy was checked: {}",
        whole.stdout
    );
    assert_eq!(count(port, &password, "letters").await, 3);
    assert_eq!(
        databases(port, &password).await,
        ["letters", "other", "postgres"],
        "the databases made after the backup are gone from the server"
    );
    assert_eq!(
        volumes_named(&docker, &format!("{name}-pgdata-before-restore-")).await,
        [kept_volume]
    );
    assert!(
        volumes_named(&docker, &format!("{name}-restore-"))
            .await
            .is_empty(),
        "the scratch volume is gone once its data is in place"
    );
    // The server kept its configuration: the spec's settings hold.
    run(&["plan", "-f", &spec, "--detailed-exitcode"]).expect(0);
}

for_each_major!(
    backups_are_restored_beside_what_they_replace,
    crate::restores
);
