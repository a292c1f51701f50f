//! Issue 25: `pgspec status` against real containers (PostgreSQL 15 and 17
//! with the locally built PgBouncer): the values it shows are the ones
//! plain SQL and the engine report, it goes red and exits 2 while the test
//! holds connections past a low threshold from the spec, and exits 0
//! otherwise.

mod common;

use common::{Cleanup, Workdir, arg, connect, free_port, pgspec, postgres_image, unique_name};
use serde_json::Value;

const PASSWORD_ENV: &str = "PGSPEC_IT_STATUS_PASSWORD";
const ROLE_PASSWORD_ENV: &str = "PGSPEC_IT_STATUS_ROLE_PASSWORD";
const POOLER_IMAGE: &str = "pgspec-test/pgbouncer:1";
const MONITOR_PASSWORD_ENV: &str = "PGSPEC_IT_STATUS_MONITOR_PASSWORD";
const MONITOR_PASSWORD: &str = "monitor:secret-of-the-exporters";
/// Free disk space never yellow nor red (see `Deployment::spec`).
const NO_DISK_THRESHOLD: &str = "    disk_free: { warn: 0%, critical: 0% }\n";

struct Deployment {
    name: String,
    major: u32,
    port: u16,
    pooler_port: u16,
    password: String,
    work: Workdir,
    _cleanup: Cleanup,
}

impl Deployment {
    fn new(major: u32) -> Deployment {
        let name = unique_name("status");
        let mut cleanup = Cleanup::default();
        cleanup
            .containers
            .push(format!("{name}-pgbouncer-exporter"));
        cleanup.containers.push(format!("{name}-postgres-exporter"));
        cleanup.containers.push(format!("{name}-pgbouncer"));
        cleanup.containers.push(format!("{name}-postgres"));
        cleanup.containers.push(format!("{name}-backup"));
        cleanup.volumes.push(format!("{name}-backups"));
        cleanup.volumes.push(format!("{name}-pgdata"));
        cleanup.networks.push(format!("{name}-net"));
        Deployment {
            major,
            port: free_port(),
            pooler_port: free_port(),
            password: format!("pw-{}", unique_name("secret")),
            work: Workdir::new(),
            name,
            _cleanup: cleanup,
        }
    }

    /// Writes the spec with `thresholds` (YAML lines under
    /// `monitoring.thresholds`) and `monitoring` (lines under `monitoring`).
    /// Free disk space is never judged unless `thresholds` asks: the file
    /// system is the machine's, as full as whatever else runs there made it.
    fn spec(&self, file: &str, thresholds: &str, monitoring: &str) -> String {
        let text = format!(
            "version: 1\nname: {name}\n\
             postgres:\n  image: {image}\n  port: {port}\n  \
             superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n\
             pooler:\n  image: {POOLER_IMAGE}\n  port: {pooler_port}\n  max_client_conn: 500\n  \
             databases:\n    app: {{ pool_size: 5 }}\n\
             roles:\n  - name: app\n    login: true\n    password: {{ env: {ROLE_PASSWORD_ENV} }}\n\
             databases:\n  - name: app\n    owner: app\n\
             monitoring:\n  thresholds:\n{thresholds}{monitoring}",
            thresholds = if thresholds.is_empty() {
                NO_DISK_THRESHOLD
            } else {
                thresholds
            },
            name = self.name,
            image = postgres_image(self.major),
            port = self.port,
            pooler_port = self.pooler_port,
        );
        arg(&self.work.write(file, &text)).to_owned()
    }

    /// A server with one yearly backup schedule and no pooler.
    fn backup_spec(&self) -> String {
        let text = format!(
            "version: 1\nname: {name}\n\
             postgres:\n  image: {image}\n  port: {port}\n  \
             superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n\
             databases:\n  - name: app\n\
             backup:\n  schedules:\n    - name: yearly\n      schedule: \"0 3 1 1 *\"\n  \
             destination: {{ volume: {name}-backups }}\n\
             monitoring:\n  thresholds:\n{NO_DISK_THRESHOLD}",
            name = self.name,
            image = postgres_image(self.major),
            port = self.port,
        );
        arg(&self.work.write("backup.yaml", &text)).to_owned()
    }

    fn pgspec(&self, args: &[&str]) -> common::Run {
        pgspec(
            args,
            &[
                (PASSWORD_ENV, self.password.as_str()),
                (ROLE_PASSWORD_ENV, "status test role"),
                (MONITOR_PASSWORD_ENV, MONITOR_PASSWORD),
                ("NO_COLOR", "1"),
            ],
        )
    }

    fn status_json(&self, spec: &str, code: i32) -> Value {
        let run = self.pgspec(&["status", "-f", spec, "--json"]).expect(code);
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|error| panic!("status --json is not JSON ({error}):\n{}", run.stdout))
    }
}

/// Client connections as plain SQL counts them (the asking one included,
/// which pgspec's own connection stands in for).
async fn client_connections(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
             AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("count connections")
        .get(0)
}

fn line<'a>(report: &'a Value, section: &str, item: &str) -> &'a Value {
    report["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|line| line["section"] == section && line["item"] == item)
        .unwrap_or_else(|| panic!("no line {section} {item} in {report:#}"))
}

async fn status_of_a_deployment(major: u32) {
    let deployment = Deployment::new(major);
    let normal = deployment.spec("normal.yaml", "", "");
    let low = deployment.spec(
        "low.yaml",
        &format!("{NO_DISK_THRESHOLD}    connections: {{ warn: 5%, critical: 10% }}\n"),
        "",
    );
    deployment
        .pgspec(&["apply", "-f", &normal, "--auto-approve"])
        .expect(0);
    let client = connect(deployment.port, &deployment.password, "postgres")
        .await
        .expect("connect");
    client
        .batch_execute("ALTER ROLE app CONNECTION LIMIT 10")
        .await
        .expect("connection limit");

    // Real values: the engine's and plain SQL's.
    let before = client_connections(&client).await;
    let report = deployment.status_json(&normal, 0);
    let after = client_connections(&client).await;
    assert_eq!(report["format_version"], 1);
    // The server's health check may still be `starting` (yellow).
    assert_ne!(report["level"], "red", "{report:#}");
    assert_eq!(
        line(&report, "connections", "max_connections")["level"],
        "green"
    );
    let containers = report["facts"]["containers"]
        .as_array()
        .expect("containers");
    let server = &containers[0];
    assert_eq!(server["name"], format!("{}-postgres", deployment.name));
    assert_eq!(server["state"], "running");
    assert_eq!(server["image"], postgres_image(major));
    assert_eq!(containers[1]["role"], "pooler");
    assert_eq!(containers[1]["state"], "running");
    let facts = &report["facts"]["server"];
    let counted: i64 = facts["connections_by_state"]
        .as_object()
        .expect("by state")
        .values()
        .map(|count| count.as_i64().expect("count"))
        .sum();
    // pgspec's own connection is left out; the test's is in.
    assert!(
        (before.min(after) + 1..=before.max(after) + 1).contains(&counted),
        "status counted {counted}, SQL {before}..{after} besides the asking connection"
    );
    let max_connections: String = client
        .query_one("SHOW max_connections", &[])
        .await
        .expect("max_connections")
        .get(0);
    assert_eq!(facts["max_connections"].to_string(), max_connections);
    let size: i64 = client
        .query_one("SELECT pg_database_size('app')", &[])
        .await
        .expect("size")
        .get(0);
    assert_eq!(facts["database_sizes"]["app"], size);
    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .expect("version")
        .get(0);
    assert_eq!(facts["version"], version.as_str());
    let app = facts["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .find(|role| role["role"] == "app")
        .expect("role app");
    assert_eq!(app["limit"], 10);
    assert_eq!(line(&report, "role", "app")["level"], "green");
    // The data directory's file system, as `df` in the container sees it.
    let docker = common::docker().await;
    let df = pgspec::engine::container::exec(
        &docker,
        &format!("{}-postgres", deployment.name),
        &["df", "-P", "-k", "/var/lib/postgresql/data"].map(str::to_owned),
        false,
    )
    .await
    .expect("df in the server container");
    let fields: Vec<u64> = df
        .stdout
        .lines()
        .nth(1)
        .expect("a line of df")
        .split_whitespace()
        .skip(1)
        .take(3)
        .map(|field| field.parse::<u64>().expect("a number of KiB") * 1024)
        .collect();
    let disk = &report["facts"]["disk"];
    assert_eq!(disk["size_bytes"], fields[0], "{report:#}");
    let available = disk["available_bytes"].as_u64().expect("available");
    // Other tests write to the same file system meanwhile.
    assert!(
        available.abs_diff(fields[2]) < 512 * 1024 * 1024,
        "status {available}, df {}",
        fields[2]
    );
    let free =
        available as f64 * 100.0 / (disk["used_bytes"].as_u64().expect("used") + available) as f64;
    assert_eq!(line(&report, "disk", "data directory")["level"], "green");
    // Thresholds from the spec judge the real free space: critical just
    // above what is free now (other tests write meanwhile) is red, exit 2.
    let tight = deployment.spec(
        "tight.yaml",
        &format!(
            "    disk_free: {{ warn: 100%, critical: {}% }}\n",
            (free + 2.0).min(100.0).ceil()
        ),
        "",
    );
    let report = deployment.status_json(&tight, 2);
    assert_eq!(
        line(&report, "disk", "data directory")["level"],
        "red",
        "{report:#}"
    );
    let pooler = &report["facts"]["pooler"];
    assert_eq!(pooler["max_client_conn"], 500, "{report:#}");
    assert_eq!(line(&report, "pooler", "clients")["level"], "green");

    let text = deployment.pgspec(&["status", "-f", &normal]).expect(0);
    assert!(
        text.stdout
            .lines()
            .any(|line| line.starts_with("  green  server version")
                && line.contains(&format!("PostgreSQL {version}, up"))),
        "{}",
        text.stdout
    );
    assert!(!text.stdout.contains('\x1b'), "NO_COLOR: {}", text.stdout);

    // Twelve connections held: past 10 % of max_connections 100.
    let mut held = Vec::new();
    for _ in 0..12 {
        held.push(
            connect(deployment.port, &deployment.password, "postgres")
                .await
                .expect("hold a connection"),
        );
    }
    let report = deployment.status_json(&low, 2);
    assert_eq!(report["level"], "red");
    assert_eq!(
        line(&report, "connections", "max_connections")["level"],
        "red"
    );
    let text = deployment.pgspec(&["status", "-f", &low]).expect(2);
    assert!(
        text.stdout.contains("red    connections max_connections"),
        "{}",
        text.stdout
    );
    // The defaults (70 %, 90 %) are far away.
    deployment.pgspec(&["status", "-f", &normal]).expect(0);

    drop(held);
    // Closed connections leave pg_stat_activity within moments.
    let started = std::time::Instant::now();
    while client_connections(&client).await > 2 {
        assert!(started.elapsed().as_secs() < 30, "connections linger");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    deployment.pgspec(&["status", "-f", &low]).expect(0);

    // A client through the pooler: its pool shows, against pool_size 5.
    let (pooled, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(deployment.pooler_port)
        .user("app")
        .password("status test role")
        .dbname("app")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect through the pooler");
    tokio::spawn(connection);
    pooled
        .simple_query("SELECT 1")
        .await
        .expect("query through the pooler");
    let report = deployment.status_json(&normal, 0);
    let pool = line(&report, "pool", "app/app");
    assert_eq!(pool["level"], "green", "{report:#}");
    let pools = report["facts"]["pooler"]["pools"]
        .as_array()
        .expect("pools");
    assert_eq!(pools[0]["pool_size"], 5, "{report:#}");
    assert_eq!(report["facts"]["pooler"]["clients"], 1, "{report:#}");
    drop(pooled);

    exporters(&deployment, &client).await;
}

/// `GET /metrics` on a published exporter, retried for a while: an exporter
/// answers a moment after its container starts. Returns the body once
/// `wanted` is in it.
fn metrics(port: u16, wanted: &str) -> String {
    use std::io::{Read, Write};
    let started = std::time::Instant::now();
    let mut last = String::new();
    while started.elapsed() < std::time::Duration::from_secs(60) {
        let body = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut stream| {
            stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
            stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
            let mut body = String::new();
            stream.read_to_string(&mut body)?;
            Ok(body)
        });
        match body {
            Ok(body) if body.lines().any(|line| line.starts_with(wanted)) => return body,
            Ok(body) => last = body,
            Err(error) => last = error.to_string(),
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("no `{wanted}` on port {port} within 60 s; last answer:\n{last}");
}

/// `monitoring.exporter` on the same deployment: both exporters serve the
/// server's and PgBouncer's numbers, the monitoring role is in `pg_monitor`
/// with its password nowhere in what the engine shows, a stopped exporter
/// is drift that apply repairs, and a re-plan is empty.
async fn exporters(deployment: &Deployment, client: &tokio_postgres::Client) {
    let (port, pooler_port) = (free_port(), free_port());
    let spec = deployment.spec(
        "exporter.yaml",
        "",
        &format!(
            "  exporter:\n    image: pgspec-test/postgres-exporter:1\n    \
             pooler_image: pgspec-test/pgbouncer-exporter:1\n    port: {port}\n    \
             pooler_port: {pooler_port}\n    password: {{ env: {MONITOR_PASSWORD_ENV} }}\n"
        ),
    );
    let plan = deployment.pgspec(&["plan", "-f", &spec]).expect(0);
    assert!(
        plan.stdout
            .contains(&format!("+ exporter.{}-postgres-exporter", deployment.name)),
        "{}",
        plan.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    deployment.pgspec(&["drift", "-f", &spec]).expect(0);
    // status shows the exporters' containers.
    let report = deployment.status_json(&spec, 0);
    for (role, kind) in [
        ("postgres exporter", "postgres"),
        ("pgbouncer exporter", "pgbouncer"),
    ] {
        let item = format!("{role} {}-{kind}-exporter", deployment.name);
        let shown = line(&report, "container", &item);
        // Yellow would be a restart: the exporter came up before what it reads.
        assert_ne!(shown["level"], "red", "{report:#}");
        assert!(
            shown["text"].as_str().expect("text").starts_with("running"),
            "{report:#}"
        );
    }

    let member: bool = client
        .query_one(
            "SELECT pg_has_role('pgspec_monitor', 'pg_monitor', 'MEMBER')",
            &[],
        )
        .await
        .expect("membership")
        .get(0);
    assert!(member);
    // The server's exporter is up and counts connections.
    let body = metrics(port, "pg_up 1");
    assert!(
        body.lines()
            .any(|line| line.starts_with("pg_stat_activity_count{")),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|line| line.starts_with("pg_settings_max_connections") && line.ends_with(" 100")),
        "{body}"
    );
    // PgBouncer's exporter reads the admin console as a stats user.
    let body = metrics(pooler_port, "pgbouncer_");
    assert!(
        body.lines()
            .any(|line| line.starts_with("pgbouncer_pool_size{")
                || line.starts_with("pgbouncer_databases ")),
        "{body}"
    );

    // The password is in a file, not in what `docker inspect` shows.
    let docker = common::docker().await;
    for kind in ["postgres", "pgbouncer"] {
        let name = format!("{}-{kind}-exporter", deployment.name);
        let inspect = docker
            .inspect_container(&name, None)
            .await
            .expect("inspect the exporter");
        let shown = serde_json::to_string(&inspect).expect("inspect as JSON");
        assert!(!shown.contains("secret"), "{name}: {shown}");
    }

    // A stopped exporter is drift; apply starts it again.
    let name = format!("{}-postgres-exporter", deployment.name);
    docker
        .stop_container(&name, None)
        .await
        .expect("stop the exporter");
    let drift = deployment.pgspec(&["drift", "-f", &spec]).expect(2);
    assert!(
        drift.stdout.contains("~ state = stopped -> running"),
        "{}",
        drift.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    deployment.pgspec(&["drift", "-f", &spec]).expect(0);
    metrics(port, "pg_up 1");
}

/// The last good backup against its schedule: none yet is yellow, a fresh
/// one green, one older than two periods red (exit 2).
#[test]
fn backup_age_against_the_schedule() {
    common::block_on(async {
        let deployment = Deployment::new(17);
        let spec = deployment.backup_spec();
        deployment
            .pgspec(&["apply", "-f", &spec, "--auto-approve"])
            .expect(0);
        let report = deployment.status_json(&spec, 0);
        let backup = line(&report, "backup", "yearly `0 3 1 1 *`");
        assert_eq!(backup["level"], "yellow", "{report:#}");
        assert_eq!(report["facts"]["containers"][1]["role"], "backup");

        deployment.pgspec(&["backup", "run", "-f", &spec]).expect(0);
        let report = deployment.status_json(&spec, 0);
        assert_eq!(
            line(&report, "backup", "yearly `0 3 1 1 *`")["level"],
            "green"
        );
        let id = report["facts"]["backups"][0]["last_good"]
            .as_str()
            .expect("a good backup")
            .to_owned();
        let verified = "yearly verified";
        assert_eq!(line(&report, "backup", verified)["level"], "yellow");

        // A verification is recorded in the manifest: passed is green...
        deployment
            .pgspec(&["backup", "verify", "-f", &spec])
            .expect(0);
        let report = deployment.status_json(&spec, 0);
        let line_of = |report: &Value| line(report, "backup", verified).clone();
        assert_eq!(line_of(&report)["level"], "green", "{report:#}");
        let recorded = &report["facts"]["backups"][0]["last_verification"];
        assert_eq!(recorded["backup"], id.as_str());
        assert_eq!(recorded["failed"], 0);
        assert!(recorded["checks"].as_u64().expect("checks") > 0);

        // ... and a failed one red, exit 2 (recorded as `backup verify`
        // records it, through the agent in the backup container).
        let docker = common::docker().await;
        let failed = pgspec::backup::docker::agent_command(&[
            "verified",
            "--deployment",
            &deployment.name,
            "--id",
            &id,
            "--checks",
            "3",
            "--failed",
            "1",
        ]);
        let output = pgspec::engine::container::exec(
            &docker,
            &format!("{}-backup", deployment.name),
            &failed,
            false,
        )
        .await
        .expect("exec the agent");
        assert_eq!(output.code, 0, "{}", output.stderr);
        let report = deployment.status_json(&spec, 2);
        assert_eq!(line_of(&report)["level"], "red", "{report:#}");

        // The same backup, as if taken in 2020: more than two years old.
        let script = format!(
            "sed -i 's/\"started_at\": *\"[^\"]*\"/\"started_at\": \"2020-01-01T03:00:00Z\"/' \
             /backups/{id}/manifest.json"
        );
        let output = pgspec::engine::container::exec(
            &docker,
            &format!("{}-backup", deployment.name),
            &["sh".to_owned(), "-c".to_owned(), script],
            false,
        )
        .await
        .expect("exec in the backup container");
        assert_eq!(output.code, 0, "{}", output.stderr);
        let report = deployment.status_json(&spec, 2);
        assert_eq!(
            line(&report, "backup", "yearly `0 3 1 1 *`")["level"],
            "red"
        );
    });
}

for_each_major!(status_reports_real_values, super::status_of_a_deployment);
