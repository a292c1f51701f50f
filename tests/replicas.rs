//! Issue 18: streaming replicas against real containers, PostgreSQL 17
//! only (one scenario, checked in sequence, to keep CI short).
//!
//! An ish-chat-like deployment comes up with two replicas and a read-only
//! pool: rows written on the server are read on each replica and through
//! the pool; a replica stopped by hand is drift, apply starts it and it
//! catches up; a replica whose container and volume are removed by hand is
//! cloned again; a rolling update to another tag of the same major keeps a
//! reader on the read-only pool answering (the longest gap is printed); a
//! plan after each apply is empty.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;
use common::{
    Cleanup, Workdir, arg, connect, docker, free_port, pgspec, postgres_image, unique_name,
};
use tokio_postgres::NoTls;

const PASSWORD_ENV: &str = "PGSPEC_IT_REPLICAS_PASSWORD";
const REPLICATION_ENV: &str = "PGSPEC_IT_REPLICAS_REPLICATION";
const READER_ENV: &str = "PGSPEC_IT_REPLICAS_READER";
const READER_PASSWORD: &str = "ish chat reader";
const POOLER_IMAGE: &str = "pgspec-test/pgbouncer:1";

struct Deployment {
    name: String,
    port: u16,
    pooler_port: u16,
    password: String,
    work: Workdir,
    cleanup: Cleanup,
}

impl Deployment {
    fn new() -> Deployment {
        let name = unique_name("rep");
        let mut cleanup = Cleanup::default();
        for suffix in [
            "pgbouncer",
            "postgres",
            "replica-1",
            "replica-2",
            "replica-1-clone",
            "replica-2-clone",
        ] {
            cleanup.containers.push(format!("{name}-{suffix}"));
        }
        for volume in ["pgdata", "replica-1-pgdata", "replica-2-pgdata"] {
            cleanup.volumes.push(format!("{name}-{volume}"));
        }
        cleanup.networks.push(format!("{name}-net"));
        Deployment {
            port: free_port(),
            pooler_port: free_port(),
            password: format!("pw-{}", unique_name("secret")),
            work: Workdir::new(),
            name,
            cleanup,
        }
    }

    /// ish-chat's spec, trimmed: two replicas, the `ish_chat_ro` pool.
    fn spec(&self, image: &str) -> String {
        let text = format!(
            "version: 1\n\
             name: {name}\n\
             postgres:\n  image: {image}\n  port: {port}\n  \
             superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n  \
             settings: {{ wal_level: replica, max_wal_senders: 10, max_replication_slots: 10 }}\n\
             access:\n  - {{ type: local, database: all, user: all, method: trust }}\n  \
             - {{ type: host, database: all, user: all, address: all, method: scram-sha-256 }}\n\
             replicas:\n  count: 2\n  role: replicator\n\
             pooler:\n  image: {POOLER_IMAGE}\n  port: {pooler_port}\n  pool_mode: transaction\n  \
             databases:\n    ish_chat_ro: {{ database: ish_chat, target: replica }}\n\
             roles:\n  - {{ name: ish_chat_readonly, login: true, password: {{ env: {READER_ENV} }} }}\n  \
             - {{ name: replicator, login: true, replication: true, password: {{ env: {REPLICATION_ENV} }} }}\n\
             databases:\n  - name: ish_chat\n    grants:\n      \
             - {{ role: ish_chat_readonly, privileges: [CONNECT] }}\n      \
             - {{ role: ish_chat_readonly, schema: public, privileges: [USAGE] }}\n      \
             - {{ role: ish_chat_readonly, schema: public, default_for: tables, for_role: postgres, privileges: [SELECT] }}\n",
            name = self.name,
            port = self.port,
            pooler_port = self.pooler_port,
        );
        arg(&self.work.write("spec.yaml", &text)).to_owned()
    }

    fn pgspec(&self, args: &[&str]) -> common::Run {
        pgspec(
            args,
            &[
                (PASSWORD_ENV, self.password.as_str()),
                (REPLICATION_ENV, "replication secret"),
                (READER_ENV, READER_PASSWORD),
            ],
        )
    }

    fn apply_and_settle(&self, spec: &str) -> common::Run {
        let run = self
            .pgspec(&["apply", "-f", spec, "--auto-approve"])
            .expect(0);
        self.pgspec(&["plan", "-f", spec, "--detailed-exitcode"])
            .expect(0);
        run
    }

    fn replica(&self, number: u32) -> String {
        format!("{}-replica-{number}", self.name)
    }

    async fn write_rows(&self, rows: u32) {
        let client = connect(self.port, &self.password, "ish_chat")
            .await
            .expect("connect to the server");
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS messages (id serial PRIMARY KEY, body text);
                 INSERT INTO messages (body) SELECT 'hello ' || n FROM generate_series(1, {rows}) n;"
            ))
            .await
            .expect("write rows");
    }

    async fn primary_count(&self) -> i64 {
        let client = connect(self.port, &self.password, "ish_chat")
            .await
            .expect("connect to the server");
        client
            .query_one("SELECT count(*) FROM messages", &[])
            .await
            .expect("count")
            .get(0)
    }

    /// `SELECT count(*)` on a replica, by `docker exec`: replicas are not
    /// published. Waits (bounded) until it reaches `expected`.
    async fn wait_replica_count(&self, docker: &Docker, number: u32, expected: i64) {
        let replica = self.replica(number);
        let started = Instant::now();
        loop {
            let output = pgspec::engine::container::exec(
                docker,
                &replica,
                &[
                    "psql".to_owned(),
                    "-U".to_owned(),
                    "postgres".to_owned(),
                    "-d".to_owned(),
                    "ish_chat".to_owned(),
                    "-Atc".to_owned(),
                    "SELECT count(*) || ' ' || pg_is_in_recovery() FROM messages".to_owned(),
                ],
                false,
            )
            .await
            .expect("exec psql");
            if output.stdout.trim() == format!("{expected} true") {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "replica {replica} reads {:?} / {:?}, expected {expected} rows in recovery",
                output.stdout,
                output.stderr
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    async fn pool_client(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.pooler_port)
            .user("ish_chat_readonly")
            .password(READER_PASSWORD)
            .dbname("ish_chat_ro")
            .connect_timeout(Duration::from_secs(3))
            .connect(NoTls)
            .await?;
        tokio::spawn(connection);
        Ok(client)
    }
}

/// Reads through the read-only pool until told to stop; returns the
/// longest time without a successful read and how many reads succeeded.
async fn poll_pool(deployment: Arc<Deployment>, stop: Arc<AtomicBool>) -> (Duration, u32) {
    let mut last_ok = Instant::now();
    let mut longest = Duration::ZERO;
    let mut reads = 0;
    let mut client = None;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            client = deployment.pool_client().await.ok();
        }
        let read = match &client {
            Some(client) => tokio::time::timeout(
                Duration::from_secs(3),
                client.query_one(
                    "SELECT count(*) FROM messages WHERE pg_is_in_recovery()",
                    &[],
                ),
            )
            .await
            .ok()
            .and_then(Result::ok),
            None => None,
        };
        match read {
            Some(row) if row.get::<_, i64>(0) > 0 => {
                longest = longest.max(last_ok.elapsed());
                last_ok = Instant::now();
                reads += 1;
            }
            _ => client = None,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (longest.max(last_ok.elapsed()), reads)
}

#[test]
fn two_replicas_a_read_only_pool_drift_and_a_rolling_update_pg17() {
    common::block_on(scenario());
}

async fn scenario() {
    let docker = docker().await;
    let mut deployment = Deployment::new();
    let second_tag = format!(
        "pgspec-test/postgres:17-{}",
        unique_name("roll").trim_start_matches("pgspec-test-")
    );
    deployment.cleanup.image_tags.push(second_tag.clone());
    let spec = deployment.spec(&postgres_image(17));

    // Two replicas, cloned and streaming; the plan after apply is empty.
    deployment.apply_and_settle(&spec);
    deployment.write_rows(100).await;
    let rows = deployment.primary_count().await;
    for number in [1, 2] {
        deployment.wait_replica_count(&docker, number, rows).await;
    }
    // The read-only pool reads on a standby.
    let pool = deployment
        .pool_client()
        .await
        .expect("connect to ish_chat_ro");
    let row = pool
        .query_one("SELECT count(*), pg_is_in_recovery() FROM messages", &[])
        .await
        .expect("read through the pool");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, bool>(1)), (rows, true));
    drop(pool);

    // A replica stopped by hand is drift; apply starts it; it catches up.
    pgspec::engine::container::stop(&docker, &deployment.replica(2))
        .await
        .expect("stop replica 2");
    let drift = deployment.pgspec(&["drift", "-f", &spec]).expect(2);
    assert!(drift.stdout.contains("~ replica.2"), "{}", drift.stdout);
    assert!(
        drift.stdout.contains("state = stopped -> running"),
        "{}",
        drift.stdout
    );
    deployment.write_rows(50).await;
    deployment.apply_and_settle(&spec);
    let rows = deployment.primary_count().await;
    deployment.wait_replica_count(&docker, 2, rows).await;

    // A replica whose container and volume are removed by hand is cloned
    // again.
    pgspec::engine::container::stop_and_remove(&docker, &deployment.replica(1))
        .await
        .expect("remove replica 1");
    docker
        .remove_volume(
            &format!("{}-pgdata", deployment.replica(1)),
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )
        .await
        .expect("remove replica 1's volume");
    let drift = deployment.pgspec(&["drift", "-f", &spec]).expect(2);
    assert!(
        drift.stdout.contains("its volume is gone"),
        "{}",
        drift.stdout
    );
    deployment.apply_and_settle(&spec);
    deployment.wait_replica_count(&docker, 1, rows).await;

    // A rolling update to another tag of the same major, with a reader on
    // the read-only pool throughout.
    docker
        .tag_image(
            &postgres_image(17),
            Some(bollard::query_parameters::TagImageOptions {
                repo: Some(second_tag.split(':').next().expect("repo").to_owned()),
                tag: Some(second_tag.split(':').nth(1).expect("tag").to_owned()),
            }),
        )
        .await
        .expect("tag the second image");
    let rolled = deployment.spec(&second_tag);
    let plan = deployment.pgspec(&["plan", "-f", &rolled]).expect(0);
    let order: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|line| line.starts_with("  # "))
        .collect();
    assert!(
        order[0].contains("replica.1") && order[1].contains("replica.2"),
        "{order:?}"
    );
    assert!(order[2].contains("container."), "{order:?}");
    let deployment = Arc::new(deployment);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(poll_pool(deployment.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let applied = tokio::task::spawn_blocking({
        let deployment = deployment.clone();
        let rolled = rolled.clone();
        move || deployment.apply_and_settle(&rolled)
    })
    .await
    .expect("apply");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (longest, reads) = reader.await.expect("reader");
    eprintln!(
        "rolling update: {reads} reads through ish_chat_ro, longest gap {:.2} s",
        longest.as_secs_f64()
    );
    assert!(
        applied.stderr.contains("replica.1: replaced"),
        "{}",
        applied.stderr
    );
    assert!(reads > 10, "the reader read {reads} times");
    assert!(longest < Duration::from_secs(10), "longest gap {longest:?}");
    deployment.write_rows(10).await;
    let rows = deployment.primary_count().await;
    for number in [1, 2] {
        deployment.wait_replica_count(&docker, number, rows).await;
    }
}
