//! Issue #6: the PgBouncer pooler against real containers — the server
//! (PostgreSQL 15 and 17 images) and the locally built PgBouncer image.
//!
//! A feedback-engine-like deployment comes up with its pooler; a client logs
//! in through the pooler with its role's password (SCRAM against verifiers
//! copied from the server); a pool size changes online while a client stays
//! connected; a value changed by hand on the admin console is drift and is
//! restored; a new password reaches the pooler's auth file; and a new port
//! replaces the pooler container and nothing else.

mod common;

use bollard::Docker;
use common::{Cleanup, Workdir, arg, docker, free_port, pgspec, postgres_image, unique_name};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const PASSWORD_ENV: &str = "PGSPEC_IT_POOLER_PASSWORD";
const ROLE_PASSWORD_ENV: &str = "PGSPEC_IT_POOLER_ROLE_PASSWORD";
const POOLER_IMAGE: &str = "pgspec-test/pgbouncer:1";
/// The contract of the common community PgBouncer images: an entrypoint
/// script, `pgbouncer /etc/pgbouncer/pgbouncer.ini` as CMD, a non-root user.
const COMMUNITY_POOLER_IMAGE: &str = "pgspec-test/pgbouncer:community";

struct Deployment {
    name: String,
    major: u32,
    pooler_image: &'static str,
    port: u16,
    password: String,
    role_password: String,
    work: Workdir,
    _cleanup: Cleanup,
}

impl Deployment {
    fn new(major: u32) -> Deployment {
        let name = unique_name("pool");
        let mut cleanup = Cleanup::default();
        cleanup.containers.push(format!("{name}-pgbouncer"));
        cleanup.containers.push(format!("{name}-postgres"));
        cleanup.volumes.push(format!("{name}-pgdata"));
        cleanup.networks.push(format!("{name}-net"));
        Deployment {
            major,
            pooler_image: POOLER_IMAGE,
            port: free_port(),
            password: format!("pw-{}", unique_name("secret")),
            role_password: "ffe's first password".to_owned(),
            work: Workdir::new(),
            name,
            _cleanup: cleanup,
        }
    }

    fn server(&self) -> String {
        format!("{}-postgres", self.name)
    }

    fn pooler(&self) -> String {
        format!("{}-pgbouncer", self.name)
    }

    /// The feedback-engine spec with a pooler on `pooler_port`.
    fn spec(&self, pooler_port: u16, default_pool_size: u32) -> String {
        let text = format!(
            "version: 1\n\
             name: {name}\n\
             postgres:\n  image: {image}\n  port: {port}\n  \
             superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n\
             pooler:\n  image: {pooler_image}\n  port: {pooler_port}\n  pool_mode: transaction\n  \
             default_pool_size: {default_pool_size}\n  max_client_conn: 1000\n  \
             server_idle_timeout: 10min\n  server_lifetime: 1h\n  reserve_pool_size: 2\n  \
             databases:\n    ffe_ro: {{ pool_size: 5, pool_mode: session, max_db_connections: 10 }}\n\
             roles:\n  - name: ffe_user\n    login: true\n    \
             password: {{ env: {ROLE_PASSWORD_ENV} }}\n\
             databases:\n  - name: ffe\n    owner: ffe_user\n  - name: ffe_ro\n    owner: ffe_user\n",
            name = self.name,
            image = postgres_image(self.major),
            port = self.port,
            pooler_image = self.pooler_image,
        );
        arg(&self.work.write("spec.yaml", &text)).to_owned()
    }

    /// The same deployment without its pooler, pruning what pgspec made.
    fn spec_without_pooler(&self) -> String {
        let full = std::fs::read_to_string(self.spec(free_port(), 40)).expect("read spec");
        let start = full.find("pooler:").expect("pooler section");
        let end = full.find("roles:").expect("roles section");
        let text = format!("prune: true\n{}{}", &full[..start], &full[end..]);
        arg(&self.work.write("spec.yaml", &text)).to_owned()
    }

    fn pgspec(&self, args: &[&str]) -> common::Run {
        pgspec(
            args,
            &[
                (PASSWORD_ENV, self.password.as_str()),
                (ROLE_PASSWORD_ENV, self.role_password.as_str()),
            ],
        )
    }

    /// A client of `ffe` through the pooler, as `ffe_user`.
    async fn client(&self, pooler_port: u16) -> Result<Client, tokio_postgres::Error> {
        self.client_with(pooler_port, &self.role_password).await
    }

    async fn client_with(
        &self,
        pooler_port: u16,
        password: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(pooler_port)
            .user("ffe_user")
            .password(password)
            .dbname("ffe")
            .connect(NoTls)
            .await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// PgBouncer's admin console, as the superuser.
    async fn admin(&self, pooler_port: u16) -> Client {
        let (client, connection) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(pooler_port)
            .user("postgres")
            .password(&self.password)
            .dbname("pgbouncer")
            .connect(NoTls)
            .await
            .expect("connect to the admin console");
        tokio::spawn(connection);
        client
    }

    /// A value of `SHOW CONFIG`.
    async fn config(&self, pooler_port: u16, key: &str) -> String {
        let messages = self
            .admin(pooler_port)
            .await
            .simple_query("SHOW CONFIG")
            .await
            .expect("SHOW CONFIG");
        rows(&messages)
            .into_iter()
            .find(|row| row[0] == key)
            .map(|row| row[1].clone())
            .unwrap_or_else(|| panic!("SHOW CONFIG has no `{key}`"))
    }

    async fn container_id(&self, docker: &Docker, name: &str) -> String {
        docker
            .inspect_container(name, None)
            .await
            .unwrap_or_else(|error| panic!("inspect {name}: {error}"))
            .id
            .expect("container id")
    }
}

/// The rows of a simple-protocol result, as text.
fn rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<String>> {
    messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|index| row.get(index).unwrap_or("").to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// One value of a query run through the pooler (simple protocol: in
/// transaction pooling, no statement outlives its transaction).
async fn one(client: &Client, sql: &str) -> String {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    rows(&messages)
        .last()
        .and_then(|row| row.first().cloned())
        .unwrap_or_default()
}

async fn feedback_engine(major: u32) {
    feedback_engine_with(major, POOLER_IMAGE).await;
}

async fn feedback_engine_with(major: u32, pooler_image: &'static str) {
    let docker = docker().await;
    let mut deployment = Deployment::new(major);
    deployment.pooler_image = pooler_image;
    let pooler_port = free_port();
    let spec = deployment.spec(pooler_port, 20);
    let address = format!("pooler.{}", deployment.pooler());

    // An empty host: server, role, database and pooler in one apply.
    let plan = deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(2);
    assert!(
        plan.stdout.contains(&format!("+ {address}")),
        "{}",
        plan.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(0);

    // A client logs in through the pooler with the role's password.
    let held = deployment
        .client(pooler_port)
        .await
        .expect("log in through the pooler");
    assert_eq!(one(&held, "SELECT current_user").await, "ffe_user");
    one(
        &held,
        "CREATE TABLE feedback (id int PRIMARY KEY, body text); \
         INSERT INTO feedback SELECT i, 'note ' || i FROM generate_series(1, 100) i",
    )
    .await;
    assert_eq!(one(&held, "SELECT count(*) FROM feedback").await, "100");
    assert_eq!(
        deployment.config(pooler_port, "pool_mode").await,
        "transaction"
    );
    assert_eq!(
        deployment.config(pooler_port, "max_client_conn").await,
        "1000"
    );
    assert_eq!(
        deployment.config(pooler_port, "auth_type").await,
        "scram-sha-256"
    );
    // The auth file holds verifiers, never a password.
    let auth_file = read_file(&docker, &deployment.pooler(), "/etc/pgbouncer/userlist.txt").await;
    assert!(
        auth_file.contains("\"ffe_user\" \"SCRAM-SHA-256$"),
        "{auth_file}"
    );
    assert!(!auth_file.contains(&deployment.role_password));
    assert!(!auth_file.contains(&deployment.password));
    // A wrong password is refused by the pooler.
    assert!(
        deployment
            .client_with(pooler_port, "not the password")
            .await
            .is_err()
    );

    // A bigger pool is an in-place change; the held client keeps working.
    let server_id = deployment.container_id(&docker, &deployment.server()).await;
    let pooler_id = deployment.container_id(&docker, &deployment.pooler()).await;
    let spec = deployment.spec(pooler_port, 40);
    let saved = deployment.work.path("bigger-pool.plan");
    let plan = deployment
        .pgspec(&[
            "plan",
            "-f",
            &spec,
            "--detailed-exitcode",
            "--out",
            arg(&saved),
        ])
        .expect(2);
    assert!(
        plan.stdout.contains(&format!("~ {address}")),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("~ default_pool_size = 20 -> 40"),
        "{}",
        plan.stdout
    );
    assert!(
        !plan.stdout.contains("clients reconnect"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("RELOAD"), "{}", plan.stdout);
    // The saved plan applies as it is: what PgBouncer reports is stable.
    deployment.pgspec(&["apply", arg(&saved)]).expect(0);
    assert_eq!(
        deployment.config(pooler_port, "default_pool_size").await,
        "40"
    );
    assert_eq!(one(&held, "SELECT count(*) FROM feedback").await, "100");
    assert_eq!(
        deployment.container_id(&docker, &deployment.pooler()).await,
        pooler_id,
        "a reload keeps the pooler container"
    );
    deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(0);

    // A value set by hand on the admin console is drift; apply restores it.
    let admin = deployment.admin(pooler_port).await;
    for command in ["SET default_pool_size = 5", "SET auth_type = 'trust'"] {
        admin
            .simple_query(command)
            .await
            .unwrap_or_else(|error| panic!("{command} on the admin console: {error}"));
    }
    let drift = deployment.pgspec(&["drift", "-f", &spec]).expect(2);
    assert!(
        drift.stdout.contains("~ default_pool_size = 5 -> 40"),
        "{}",
        drift.stdout
    );
    assert!(
        drift
            .stdout
            .contains("~ auth_type = trust -> scram-sha-256"),
        "{}",
        drift.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    assert_eq!(
        deployment.config(pooler_port, "default_pool_size").await,
        "40"
    );
    assert_eq!(one(&held, "SELECT 1").await, "1");
    assert_eq!(
        deployment.config(pooler_port, "auth_type").await,
        "scram-sha-256"
    );

    // A pooler stopped by hand is drift; apply writes its configuration and
    // starts it, and the server is not touched.
    docker
        .stop_container(&deployment.pooler(), None)
        .await
        .expect("stop the pooler");
    let drift = deployment.pgspec(&["drift", "-f", &spec]).expect(2);
    assert!(
        drift.stdout.contains("~ state = stopped -> running"),
        "{}",
        drift.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    let restarted = deployment
        .client(pooler_port)
        .await
        .expect("log in through the restarted pooler");
    assert_eq!(
        one(&restarted, "SELECT count(*) FROM feedback").await,
        "100"
    );
    assert_eq!(
        deployment.container_id(&docker, &deployment.server()).await,
        server_id
    );
    deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(0);

    // A new password reaches the auth file in the same apply.
    deployment.role_password = "ffe's second password".to_owned();
    let plan = deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(2);
    assert!(
        plan.stdout
            .contains("users.ffe_user = current -> new verifier"),
        "{}",
        plan.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    let fresh = deployment
        .client(pooler_port)
        .await
        .expect("log in through the pooler with the new password");
    assert_eq!(one(&fresh, "SELECT count(*) FROM feedback").await, "100");
    deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(0);

    // A new port replaces the pooler, and only the pooler.
    let new_port = free_port();
    let spec = deployment.spec(new_port, 40);
    let plan = deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(2);
    assert!(
        plan.stdout.contains(&format!("-/+ {address}")),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("clients reconnect"), "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains("Plan: 0 to add, 0 to change, 1 to replace"),
        "{}",
        plan.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    assert_eq!(
        deployment.container_id(&docker, &deployment.server()).await,
        server_id,
        "the server container is not touched"
    );
    assert_ne!(
        deployment.container_id(&docker, &deployment.pooler()).await,
        pooler_id
    );
    let moved = deployment
        .client(new_port)
        .await
        .expect("log in through the pooler on its new port");
    assert_eq!(one(&moved, "SELECT count(*) FROM feedback").await, "100");
    assert_eq!(deployment.config(new_port, "default_pool_size").await, "40");
    deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(0);

    // Out of the spec, with pruning on: the pooler goes, the server stays.
    let spec = deployment.spec_without_pooler();
    let plan = deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(2);
    assert!(
        plan.stdout.contains(&format!("- {address}")),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 0 to add, 0 to change, 0 to replace, 1 to destroy"),
        "{}",
        plan.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    assert!(
        docker
            .inspect_container(&deployment.pooler(), None)
            .await
            .is_err()
    );
    assert_eq!(
        deployment.container_id(&docker, &deployment.server()).await,
        server_id
    );
    deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(0);
}

for_each_major!(feedback_engine_pooler, super::feedback_engine);

/// The same scenario with a PgBouncer image made like the community ones,
/// running PgBouncer as a non-root user from its CMD.
#[test]
fn feedback_engine_pooler_on_a_community_style_image() {
    common::block_on(feedback_engine_with(17, COMMUNITY_POOLER_IMAGE));
}

/// A file of a container, through the archive endpoint.
async fn read_file(docker: &Docker, container: &str, path: &str) -> String {
    use futures_util::StreamExt;
    let mut archive = Vec::new();
    let mut stream = docker.download_from_container(
        container,
        Some(bollard::query_parameters::DownloadFromContainerOptions {
            path: path.to_owned(),
        }),
    );
    while let Some(chunk) = stream.next().await {
        archive.extend_from_slice(&chunk.expect("download from container"));
    }
    let mut reader = tar::Archive::new(archive.as_slice());
    let mut entry = reader
        .entries()
        .expect("tar entries")
        .next()
        .expect("one entry")
        .expect("tar entry");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut entry, &mut text).expect("read file");
    text
}
