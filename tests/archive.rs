//! Continuous archiving and point-in-time recovery against the real engine
//! and the PostgreSQL 15 and 17 test images (issue #19), one scenario per
//! major: a `physical` schedule takes a base backup and streams WAL on its
//! own slot; the archiver survives a restart of the backup container
//! without a gap; `backup list` shows the recoverable window; `backup
//! restore --to-time` a time between two commits brings back exactly the
//! rows committed before it, keeps the former data in a volume it names,
//! leaves nothing to plan, and the archiver goes on on the new timeline.

mod common;

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::ListVolumesOptions;
use common::{
    Cleanup, Workdir, arg, connect, docker, free_port, pgspec, postgres_image, unique_name,
};

const PASSWORD_ENV: &str = "PGSPEC_IT_ARCHIVE_PASSWORD";
const TIMEOUT: Duration = Duration::from_secs(120);

struct Deployment {
    name: String,
    port: u16,
    password: String,
    image: String,
    work: Workdir,
    cleanup: Cleanup,
}

impl Deployment {
    fn new(major: u32) -> Deployment {
        let name = unique_name("arc");
        let mut cleanup = Cleanup::default();
        for suffix in ["backup", "postgres"] {
            cleanup.containers.push(format!("{name}-{suffix}"));
        }
        for suffix in ["pgdata", "backups"] {
            cleanup.volumes.push(format!("{name}-{suffix}"));
        }
        cleanup.networks.push(format!("{name}-net"));
        Deployment {
            port: free_port(),
            password: format!("pw:{}", unique_name("secret")),
            work: Workdir::new(),
            image: postgres_image(major),
            name,
            cleanup,
        }
    }

    /// Autovacuum is off: its commits (catalogs analysed after the
    /// deployment's DDL) land at times of their own, and would make a
    /// recovery target after the test's last commit reachable.
    fn write_spec(&self, backup: &str) -> String {
        let text = format!(
            "version: 1\nname: {name}\npostgres:\n  image: {image}\n  port: {port}\n  \
             superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n  \
             settings: {{ autovacuum: off }}\n\
             databases:\n  - name: app\n{backup}",
            name = self.name,
            image = self.image,
            port = self.port,
        );
        arg(&self.work.write("spec.yaml", &text)).to_owned()
    }

    /// Base backups and dumps once a year (only `backup run` takes them
    /// here), each with a yearly restore test (run at once through the
    /// agent's hidden `verify-now`), WAL streamed all along, at most an
    /// hour behind.
    fn physical_spec(&self) -> String {
        self.write_spec(&format!(
            "backup:\n  schedules:\n    \
             - {{ name: base, schedule: \"0 3 1 1 *\", kind: physical, verify: \"0 4 1 1 *\" }}\n    \
             - {{ name: nightly, schedule: \"0 2 1 1 *\", verify: \"0 5 1 1 *\" }}\n  \
             max_lag: 1h\n  destination: {{ volume: {}-backups }}\n",
            self.name
        ))
    }

    fn pgspec(&self, args: &[&str]) -> common::Run {
        pgspec(args, &[(PASSWORD_ENV, self.password.as_str())])
    }

    async fn exec(&self, docker: &Docker, container: &str, script: &str) -> String {
        let output = pgspec::engine::container::exec(
            docker,
            container,
            &["sh".to_owned(), "-c".to_owned(), script.to_owned()],
            false,
        )
        .await
        .expect("exec");
        assert_eq!(output.code, 0, "{script}: {}", output.stderr);
        output.stdout
    }

    /// TEST-ONLY WORKAROUND: the image's pg_hba.conf lets replication
    /// connections in from the container itself only (the entrypoint's
    /// `host all all all scram-sha-256` does not match `replication`), so
    /// the backup container's `pg_receivewal` and `pg_basebackup` need
    /// `host replication <superuser> all scram-sha-256`. pgspec writes no
    /// pg_hba.conf yet (`access:` will); until then this line is what a
    /// user adds.
    async fn allow_replication_for_test(&self, docker: &Docker) {
        self.exec(
            docker,
            &format!("{}-postgres", self.name),
            "echo 'host replication all all scram-sha-256' >> \"$PGDATA/pg_hba.conf\"",
        )
        .await;
        let client = connect(self.port, &self.password, "postgres")
            .await
            .expect("connect");
        client
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .expect("reload");
    }
}

/// Waits until `probe` says yes, within the test's bound.
async fn wait_for<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !probe().await {
        assert!(started.elapsed() < TIMEOUT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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

/// The server's clock now, RFC 3339 in UTC.
async fn server_time(client: &tokio_postgres::Client) -> String {
    client
        .query_one(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', \
             'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[],
        )
        .await
        .expect("read the time")
        .get(0)
}

/// Switches to a new WAL segment and waits until the archiver has
/// everything written so far.
async fn archive_everything(client: &tokio_postgres::Client, slot: &str) {
    let written: String = client
        .query_one(
            "SELECT pg_current_wal_lsn()::text FROM (SELECT pg_switch_wal()) AS switched",
            &[],
        )
        .await
        .expect("switch the WAL segment")
        .get(0);
    let caught_up = || async {
        client
            .query_opt(
                "SELECT 1 FROM pg_replication_slots \
                 WHERE slot_name = $1 AND active AND restart_lsn >= $2::text::pg_lsn",
                &[&slot, &written],
            )
            .await
            .expect("read slots")
            .is_some()
    };
    wait_for("the archiver to archive everything written", caught_up).await;
}

async fn archive_and_recover(major: u32) {
    // The recovery preparation copies the agent binary into a container:
    // pgspec's, not this test's. Every test of this file sets the same value.
    // SAFETY: set before any other thread of this test reads the variable.
    unsafe {
        std::env::set_var(
            pgspec::backup::docker::AGENT_BINARY_ENV,
            env!("CARGO_BIN_EXE_pgspec"),
        )
    };
    let docker = docker().await;
    let mut deployment = Deployment::new(major);
    let name = deployment.name.clone();
    let server = deployment.write_spec("");
    deployment
        .pgspec(&["apply", "-f", &server, "--auto-approve"])
        .expect(0);
    deployment.allow_replication_for_test(&docker).await;
    let client = connect(deployment.port, &deployment.password, "app")
        .await
        .expect("connect to app");
    client
        .batch_execute("CREATE TABLE events (id int PRIMARY KEY, note text)")
        .await
        .expect("create table");

    let spec = deployment.physical_spec();
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);

    // The archiver streams on its own slot.
    let slot = format!("pgspec_{}", name.replace('-', "_"));
    let slot_active = || async {
        client
            .query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active",
                &[&slot],
            )
            .await
            .expect("read slots")
            .is_some()
    };
    wait_for("the archiver's slot to be active", slot_active).await;
    // Taken while the archiver streams, so the archive carries it forward.
    let run = deployment.pgspec(&["backup", "run", "-f", &spec]).expect(0);
    assert!(run.stdout.contains(" ok (physical tar"), "{}", run.stdout);
    assert!(run.stdout.contains(" ok (full custom"), "{}", run.stdout);
    deployment.pgspec(&["drift", "-f", &spec]).expect(0);

    // Rows one second apart; the target lies between the second and third.
    let insert = |id: i32| {
        let client = &client;
        async move {
            client
                .execute("INSERT INTO events VALUES ($1, 'row')", &[&id])
                .await
                .expect("insert");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    insert(1).await;
    insert(2).await;
    let target = server_time(&client).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The backup container is down while rows 3 and 4 are written: the
    // slot keeps their WAL until the archiver is back.
    let backup = format!("{name}-backup");
    docker
        .stop_container(&backup, None)
        .await
        .expect("stop the backup container");
    let stopped = deployment.pgspec(&["drift", "-f", &spec]);
    assert_eq!(stopped.code, 2, "{}\n{}", stopped.stdout, stopped.stderr);
    insert(3).await;
    insert(4).await;
    let written: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .expect("read the LSN")
        .get(0);
    docker
        .start_container(&backup, None)
        .await
        .expect("start the backup container");
    let caught_up = || async {
        client
            .query_opt(
                "SELECT 1 FROM pg_replication_slots \
                 WHERE slot_name = $1 AND active AND restart_lsn >= $2::text::pg_lsn",
                &[&slot, &written],
            )
            .await
            .expect("read slots")
            .is_some()
    };
    wait_for("the archiver to catch up after its restart", caught_up).await;

    archive_everything(&client, &slot).await;
    let list = deployment
        .pgspec(&["backup", "list", "-f", &spec])
        .expect(0);
    assert!(
        list.stdout.contains("WAL archive: recoverable from ")
            && list.stdout.contains("recovery-point lag: "),
        "{}",
        list.stdout
    );

    // Targets outside the window, and combinations that make no sense,
    // are refused before anything changes.
    let restore = |extra: &[&str]| {
        let mut args = vec!["backup", "restore", "-f", spec.as_str()];
        args.extend_from_slice(extra);
        deployment.pgspec(&args)
    };
    let refused = restore(&["--to-time", &target, "--database", "app"]).expect(1);
    assert!(
        refused
            .stderr
            .contains("cannot be combined with --database"),
        "{}",
        refused.stderr
    );
    let refused = restore(&["--to-time", "2000-01-01 00:00:00+00", "--auto-approve"]).expect(1);
    assert!(
        refused
            .stderr
            .contains("is before the oldest base backup's end, outside the recoverable window"),
        "{}",
        refused.stderr
    );
    let refused = restore(&["--to-time", "2999-01-01 00:00:00+00", "--auto-approve"]).expect(1);
    assert!(
        refused.stderr.contains("is after the last archived WAL"),
        "{}",
        refused.stderr
    );

    // A time after the last commit, with WAL archived after it but no
    // commit: PostgreSQL will not open short of its target. The restore
    // says so, removes what it made, and the live deployment is untouched.
    let unreachable = server_time(&client).await;
    client
        .batch_execute("SELECT pg_logical_emit_message(false, 'pgspec-test', 'no commit')")
        .await
        .expect("write WAL without a commit");
    archive_everything(&client, &slot).await;
    let unreached = restore(&["--to-time", &unreachable, "--auto-approve"]).expect(1);
    assert!(
        unreached
            .stderr
            .contains("did not finish; the server and its data were not touched")
            && unreached
                .stderr
                .contains("stopped before it reached the target"),
        "{}",
        unreached.stderr
    );
    assert!(
        volumes_named(&docker, &format!("{name}-restore-"))
            .await
            .is_empty()
            && volumes_named(&docker, &format!("{name}-pgdata-before-restore-"))
                .await
                .is_empty(),
        "a failed recovery leaves no volume behind"
    );
    let rows: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .expect("the live server still serves")
        .get(0);
    assert_eq!(rows, 4);

    // The whole server back to the target: rows 1 and 2, not 3 and 4.
    let restored = restore(&["--to-time", &target, "--auto-approve"]);
    let kept = quoted_after(&restored.stdout, "is kept in volume");
    deployment.cleanup.volumes.push(kept.clone());
    let restored = restored.expect(0);
    assert!(
        restored
            .stdout
            .contains(&format!("pgspec will restore deployment `{name}` to "))
            && restored.stdout.contains(&format!(
                "everything written after the target is only in `{kept}`"
            )),
        "{}",
        restored.stdout
    );
    assert!(
        restored.stdout.contains(&format!(
            "is kept in the destination as `wal/{name}-before-restore-"
        )),
        "{}",
        restored.stdout
    );
    let new_base = quoted_after(&restored.stdout, "New base backup");
    assert_eq!(
        volumes_named(&docker, &format!("{name}-pgdata-before-restore-")).await,
        std::slice::from_ref(&kept)
    );
    assert!(
        volumes_named(&docker, &format!("{name}-restore-"))
            .await
            .is_empty(),
        "the scratch volume is gone once its data is in place"
    );
    let client = connect(deployment.port, &deployment.password, "app")
        .await
        .expect("connect to the restored server");
    let rows: String = client
        .query_one(
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM events",
            &[],
        )
        .await
        .expect("read the rows")
        .get(0);
    assert_eq!(rows, "1,2", "{}", restored.stderr);
    let settings: String = client
        .query_one(
            "SELECT pg_is_in_recovery()::text || current_setting('restore_command') \
                    || current_setting('recovery_target_time')",
            &[],
        )
        .await
        .expect("read the recovery settings")
        .get(0);
    assert_eq!(
        settings, "false",
        "no recovery setting is left for a restart"
    );
    deployment.pgspec(&["drift", "-f", &spec]).expect(0);

    // New writes are archived on the new timeline, and the window starts
    // at the base backup the restore took.
    client
        .execute("INSERT INTO events VALUES (10, 'after the restore')", &[])
        .await
        .expect("write after the restore");
    archive_everything(&client, &slot).await;
    let list = deployment
        .pgspec(&["backup", "list", "-f", &spec])
        .expect(0);
    assert!(
        list.stdout.contains("WAL archive: recoverable from "),
        "{}",
        list.stdout
    );
    assert!(
        list.stdout.contains(&format!("(base backup `{new_base}`"))
            && list.stdout.contains("(segment 00000002"),
        "{}",
        list.stdout
    );
    let json = deployment
        .pgspec(&["backup", "list", "-f", &spec, "--json"])
        .expect(0);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(json["archive"]["window"]["from_backup"], new_base.as_str());
    assert_eq!(json["archive"]["window"]["timeline"], 2);
    let status = deployment.pgspec(&["status", "-f", &spec]);
    assert!(
        status.stdout.contains("WAL archive") && status.stdout.contains("recoverable from "),
        "{}\n{}",
        status.stdout,
        status.stderr
    );

    // Scheduled restore tests, run now: a base backup recovers and opens,
    // a dump restores with every row count; both are recorded and listed.
    for schedule in ["base", "nightly"] {
        let report = deployment
            .exec(
                &docker,
                &backup,
                &format!("/opt/pgspec/bin/pgspec backup agent verify-now --schedule {schedule}"),
            )
            .await;
        let report: serde_json::Value = serde_json::from_str(&report).expect("a report");
        let checks = report["checks"].as_array().expect("checks");
        assert!(
            checks.iter().all(|check| check["ok"] == true),
            "{schedule}: {report}"
        );
    }
    let list = deployment
        .pgspec(&["backup", "list", "-f", &spec])
        .expect(0);
    assert!(
        list.stdout.contains("last restore test of `base`: backup ")
            && list
                .stdout
                .contains("last restore test of `nightly`: backup "),
        "{}",
        list.stdout
    );
    assert!(!list.stdout.contains("FAILED"), "{}", list.stdout);
    deployment.pgspec(&["drift", "-f", &spec]).expect(0);

    // A damaged base backup fails its restore test, and drift says so.
    deployment
        .exec(
            &docker,
            &backup,
            "cd /backups && for d in *-base; do printf x >> \"$d/base.tar\"; done",
        )
        .await;
    let report = deployment
        .exec(
            &docker,
            &backup,
            "/opt/pgspec/bin/pgspec backup agent verify-now --schedule base",
        )
        .await;
    assert!(report.contains("\"ok\": false"), "{report}");
    let list = deployment
        .pgspec(&["backup", "list", "-f", &spec])
        .expect(0);
    assert!(list.stdout.contains("FAILED"), "{}", list.stdout);
    let drift = deployment.pgspec(&["drift", "-f", &spec]);
    assert_eq!(drift.code, 2, "{}\n{}", drift.stdout, drift.stderr);
    assert!(
        drift
            .stdout
            .contains("restore test of schedule `base` failed"),
        "{}",
        drift.stdout
    );

    // Without a physical schedule the new agent drops the abandoned slot,
    // which would otherwise keep every WAL segment on the server.
    let dumps_only = deployment.write_spec(&format!(
        "backup:\n  schedules:\n    - {{ name: nightly, schedule: \"0 2 1 1 *\" }}\n  \
         destination: {{ volume: {name}-backups }}\n"
    ));
    deployment
        .pgspec(&["apply", "-f", &dumps_only, "--auto-approve"])
        .expect(0);
    let slot_gone = || async {
        client
            .query_opt(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .expect("read slots")
            .is_none()
    };
    wait_for("the abandoned slot to be dropped", slot_gone).await;
    drop(deployment);
}

for_each_major!(
    archive_restart_and_point_in_time_recovery,
    super::archive_and_recover
);
