//! The server container through the Docker Engine API, against the real
//! engine and the locally built PostgreSQL 15 and 17 images: create from an
//! empty host, update in place, start, recreate, replace within a major
//! version without losing rows, and refuse a major version change.

mod common;

use bollard::Docker;
use bollard::models::ContainerUpdateBody;
use bollard::query_parameters::TagImageOptions;
use common::{
    Cleanup, Workdir, arg, connect, docker, free_port, pgspec, postgres_image, unique_name,
};

const PASSWORD_ENV: &str = "PGSPEC_IT_CONTAINER_PASSWORD";

struct Deployment {
    name: String,
    port: u16,
    password: String,
    work: Workdir,
    cleanup: Cleanup,
}

impl Deployment {
    fn new() -> Deployment {
        let name = unique_name("ctr");
        let mut cleanup = Cleanup::default();
        cleanup.containers.push(format!("{name}-postgres"));
        cleanup.volumes.push(format!("{name}-pgdata"));
        cleanup.networks.push(format!("{name}-net"));
        Deployment {
            port: free_port(),
            password: format!("pw-{}", unique_name("secret")),
            work: Workdir::new(),
            name,
            cleanup,
        }
    }

    fn container(&self) -> String {
        format!("{}-postgres", self.name)
    }

    /// Writes the spec and returns its path as an argument; a `memory` of
    /// `unlimited` leaves out the resources.
    fn spec(&self, image: &str, memory: &str) -> String {
        let resources = if memory == "unlimited" {
            String::new()
        } else {
            format!("  resources: {{ cpus: 1, memory: {memory} }}\n")
        };
        let text = format!(
            "# yaml-language-server: $schema=../schema/pgspec.schema.json\n\
             version: 1\nname: {}\npostgres:\n  image: {image}\n  port: {}\n\
             {resources}  superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n\
             databases:\n  - name: app\n    extensions: [pg_trgm]\n",
            self.name, self.port
        );
        arg(&self.work.write("spec.yaml", &text)).to_owned()
    }

    fn pgspec(&self, args: &[&str]) -> common::Run {
        pgspec(args, &[(PASSWORD_ENV, self.password.as_str())])
    }

    async fn rows(&self) -> i64 {
        let client = connect(self.port, &self.password, "app")
            .await
            .expect("connect");
        client
            .query_one("SELECT count(*) FROM ledger", &[])
            .await
            .expect("count rows")
            .get(0)
    }

    async fn inspect(&self, docker: &Docker) -> bollard::models::ContainerInspectResponse {
        docker
            .inspect_container(&self.container(), None)
            .await
            .expect("inspect container")
    }
}

async fn lifecycle(major: u32) {
    let docker = docker().await;
    let mut deployment = Deployment::new();
    let image = postgres_image(major);
    let spec = deployment.spec(&image, "512MiB");

    // Empty host: container, volume, database, extension in one apply.
    let plan = deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(2);
    assert!(
        plan.stdout
            .contains(&format!("+ container.{}", deployment.container())),
        "{}",
        plan.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    let inspect = deployment.inspect(&docker).await;
    let host_config = inspect.host_config.clone().expect("host config");
    assert_eq!(host_config.memory, Some(512 << 20));
    assert_eq!(host_config.nano_cpus, Some(1_000_000_000));
    let labels = inspect
        .config
        .clone()
        .and_then(|config| config.labels)
        .expect("labels");
    assert_eq!(labels.get("org.pgspec.deployment"), Some(&deployment.name));
    let env = inspect
        .config
        .clone()
        .and_then(|config| config.env)
        .unwrap_or_default();
    assert!(
        env.iter()
            .all(|entry| !entry.contains(&deployment.password)),
        "the superuser password must not be in the container's environment: {env:?}"
    );
    let networks = inspect
        .network_settings
        .clone()
        .and_then(|settings| settings.networks)
        .unwrap_or_default();
    assert!(
        networks.contains_key(&format!("{}-net", deployment.name)),
        "attached to the deployment's network: {:?}",
        networks.keys()
    );
    let binding = &host_config.port_bindings.expect("ports")["5432/tcp"]
        .clone()
        .expect("binding")[0];
    assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
    let client = connect(deployment.port, &deployment.password, "app")
        .await
        .expect("password works");
    let extension: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(extension, 1);
    client
        .batch_execute(
            "CREATE TABLE ledger (id int); INSERT INTO ledger SELECT generate_series(1, 1000)",
        )
        .await
        .expect("seed rows");
    deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(0);
    let first_id = inspect.id.clone();

    // A resource change is an in-place update: same container.
    let spec = deployment.spec(&image, "768MiB");
    let update = deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(2);
    assert!(
        update.stdout.contains("~ memory = 512MiB -> 768MiB"),
        "{}",
        update.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    let inspect = deployment.inspect(&docker).await;
    assert_eq!(inspect.id, first_id);
    assert_eq!(
        inspect.host_config.and_then(|config| config.memory),
        Some(768 << 20)
    );

    // A hand-made `docker update --memory` is drift, and apply restores it.
    docker
        .update_container(
            &deployment.container(),
            ContainerUpdateBody {
                memory: Some(1 << 30),
                memory_swap: Some(1 << 30),
                ..ContainerUpdateBody::default()
            },
        )
        .await
        .expect("docker update");
    let drift = deployment.pgspec(&["drift", "-f", &spec]).expect(2);
    assert!(
        drift.stdout.contains("~ memory = 1GiB -> 768MiB"),
        "{}",
        drift.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    deployment.pgspec(&["drift", "-f", &spec]).expect(0);

    // The engine runs pgspec's health check and finds the server healthy;
    // the configuration hash pgspec labelled the container with is the one
    // it would create it with now.
    let health_check = inspect_health_check(&deployment.inspect(&docker).await);
    assert_eq!(
        health_check.get(..2).map(<[String]>::to_vec),
        Some(vec!["CMD".to_owned(), "pg_isready".to_owned()]),
        "{health_check:?}"
    );
    // The same spec reading the password from a file, for observing from
    // this process.
    deployment
        .work
        .write("superuser-password", &deployment.password);
    let text = std::fs::read_to_string(&spec).expect("spec").replace(
        &format!("{{ env: {PASSWORD_ENV} }}"),
        "{ file: superuser-password }",
    );
    let file_spec = deployment.work.write("file-spec.yaml", &text);
    let loaded = pgspec::spec::load(&file_spec).expect("load spec");
    let validated = loaded.validate().expect("valid spec");
    let observed = wait_healthy(&validated.spec, &deployment).await;
    let labels = deployment
        .inspect(&docker)
        .await
        .config
        .and_then(|config| config.labels)
        .unwrap_or_default();
    assert_eq!(
        labels.get("org.pgspec.config-hash"),
        Some(&observed.config_hash),
        "the label is observed"
    );
    let desired = validated
        .spec
        .deployment
        .container
        .as_ref()
        .expect("container");
    // The desired container's data layout comes from its image, as the
    // plan reads it.
    let layout =
        pgspec::engine::image::facts(docker.inspect_image(&image).await.expect("inspect image"))
            .data_layout();
    assert_eq!(
        observed.config_hash,
        desired.with_layout(&layout).creation_hash()
    );
    assert_eq!(observed.health_check, desired.health_check);

    // `docker stop` is drift; apply starts it again.
    docker
        .stop_container(&deployment.container(), None)
        .await
        .expect("docker stop");
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
    assert_eq!(deployment.rows().await, 1000);

    // `docker rm -f` is drift; apply recreates the container on the same data.
    docker
        .remove_container(
            &deployment.container(),
            Some(bollard::query_parameters::RemoveContainerOptions {
                force: true,
                v: false,
                link: false,
            }),
        )
        .await
        .expect("docker rm -f");
    let drift = deployment.pgspec(&["drift", "-f", &spec]).expect(2);
    assert!(
        drift.stdout.contains("the existing volume"),
        "{}",
        drift.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    assert_eq!(
        deployment.rows().await,
        1000,
        "rows survive a recreated container"
    );
    deployment.pgspec(&["drift", "-f", &spec]).expect(0);

    // Another image of the same major version replaces the container; the
    // rows are still there.
    let alternate = format!("pgspec-test/postgres:{major}-{}", deployment.name);
    docker
        .tag_image(
            &image,
            Some(TagImageOptions {
                repo: Some("pgspec-test/postgres".to_owned()),
                tag: Some(format!("{major}-{}", deployment.name)),
            }),
        )
        .await
        .expect("tag image");
    deployment.cleanup.image_tags.push(alternate.clone());
    let before = deployment.inspect(&docker).await.id;
    let spec = deployment.spec(&alternate, "768MiB");
    let replace = deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(2);
    assert!(
        replace
            .stdout
            .contains(&format!("-/+ container.{}", deployment.container())),
        "{}",
        replace.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    assert_ne!(deployment.inspect(&docker).await.id, before);
    assert_eq!(
        deployment.rows().await,
        1000,
        "rows survive a replaced container"
    );
    deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(0);

    // A new port is planned against the server where it still listens, and
    // replaces the container onto the new port with its data.
    let old_port = deployment.port;
    deployment.port = free_port();
    let spec = deployment.spec(&alternate, "768MiB");
    let moved = deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(2);
    assert!(
        moved.stdout.contains(&format!(
            "~ port = 127.0.0.1:{old_port} -> 127.0.0.1:{}",
            deployment.port
        )),
        "{}",
        moved.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    assert_eq!(deployment.rows().await, 1000, "rows survive a port change");
    deployment.pgspec(&["drift", "-f", &spec]).expect(0);

    // Limits the spec no longer sets are lifted: the engine keeps a limit
    // through `docker update`, so the container is replaced, with its data.
    let limited = deployment.inspect(&docker).await.id;
    let spec = deployment.spec(&alternate, "unlimited");
    let lifted = deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(2);
    assert!(
        lifted
            .stdout
            .contains(&format!("-/+ container.{}", deployment.container()))
            && lifted.stdout.contains("~ memory = 768MiB -> unlimited")
            && lifted
                .stdout
                .contains("cannot lift a container's CPU and memory limit"),
        "{}",
        lifted.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    let inspect = deployment.inspect(&docker).await;
    assert_ne!(inspect.id, limited);
    let host_config = inspect.host_config.expect("host config");
    assert_eq!(host_config.memory.unwrap_or(0), 0, "no memory limit");
    assert_eq!(host_config.nano_cpus.unwrap_or(0), 0, "no CPU limit");
    assert_eq!(deployment.rows().await, 1000, "rows survive lifted limits");
    deployment.pgspec(&["drift", "-f", &spec]).expect(0);
}

fn inspect_health_check(inspect: &bollard::models::ContainerInspectResponse) -> Vec<String> {
    inspect
        .config
        .clone()
        .and_then(|config| config.healthcheck)
        .and_then(|check| check.test)
        .unwrap_or_default()
}

/// Observes the deployment until the engine reports the server container
/// healthy (its first check runs ten seconds after a start); gives up after
/// two minutes.
async fn wait_healthy(
    spec: &pgspec::model::Desired,
    deployment: &Deployment,
) -> pgspec::model::Container {
    let connections = pgspec::live::Connections::open(spec)
        .await
        .expect("connections");
    for _ in 0..120 {
        let live = pgspec::live::observe(spec, &connections)
            .await
            .expect("observe");
        let container = live.container.expect("container observed");
        if container.health.as_deref() == Some("healthy") {
            return container;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    panic!(
        "container `{}` did not become healthy",
        deployment.container()
    );
}

/// Moving a spec from PostgreSQL 15 to 17 on an existing volume is refused at
/// plan time, and the server keeps running.
async fn major_upgrade_refused(_major: u32) {
    let docker = docker().await;
    let deployment = Deployment::new();
    let spec = deployment.spec(&postgres_image(15), "512MiB");
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    let before = deployment.inspect(&docker).await.id;

    let spec = deployment.spec(&postgres_image(17), "512MiB");
    let refused = deployment.pgspec(&["plan", "-f", &spec]).expect(1);
    assert!(
        refused
            .stdout
            .contains("runs PostgreSQL 17 but the data directory"),
        "{}",
        refused.stdout
    );
    let refused = deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(1);
    assert!(
        refused.stderr.contains("nothing was applied"),
        "{}",
        refused.stderr
    );
    let inspect = deployment.inspect(&docker).await;
    assert_eq!(inspect.id, before);
    assert_eq!(inspect.state.and_then(|state| state.running), Some(true));

    // With the server stopped, the data directory's PG_VERSION still tells.
    docker
        .stop_container(&deployment.container(), None)
        .await
        .expect("docker stop");
    let refused = deployment.pgspec(&["plan", "-f", &spec]).expect(1);
    assert!(
        refused.stdout.contains("created by PostgreSQL 15"),
        "{}",
        refused.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(1);
    let inspect = deployment.inspect(&docker).await;
    assert_eq!(inspect.id, before, "nothing was replaced");
    assert_eq!(
        inspect.state.and_then(|state| state.running),
        Some(false),
        "nothing was started"
    );
}

for_each_major!(container_lifecycle, super::lifecycle);

#[test]
fn major_version_change_is_refused() {
    common::block_on(major_upgrade_refused(15));
}

/// A restart-required setting in the spec restarts the container exactly
/// once, at the end, and the new value is live afterwards.
async fn restart_once_for_settings(major: u32) {
    let docker = docker().await;
    let deployment = Deployment::new();
    let spec = deployment.spec(&postgres_image(major), "512MiB");
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);

    let text = std::fs::read_to_string(&spec).expect("spec");
    let text = text.replace(
        "databases:",
        "  settings:\n    shared_buffers: 64MB\n    work_mem: 8MB\ndatabases:",
    );
    std::fs::write(&spec, text).expect("write spec");
    let plan = deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(2);
    assert!(plan.stdout.contains("↻ container."), "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains("Plan: 0 to add, 2 to change, 0 to replace, 0 to destroy, 1 to restart."),
        "{}",
        plan.stdout
    );

    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .saturating_sub(1);
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 1;
    let events: Vec<String> = futures_util::StreamExt::collect::<Vec<_>>(
        docker.events(Some(bollard::query_parameters::EventsOptions {
            since: Some(since.to_string()),
            until: Some(until.to_string()),
            filters: Some(
                [
                    ("container".to_owned(), vec![deployment.container()]),
                    ("event".to_owned(), vec!["start".to_owned()]),
                ]
                .into(),
            ),
        })),
    )
    .await
    .into_iter()
    .filter_map(|event| event.ok().and_then(|event| event.action))
    .collect();
    assert_eq!(events, ["start"], "exactly one restart");

    let client = connect(deployment.port, &deployment.password, "postgres")
        .await
        .expect("connect");
    let shared_buffers: String = client
        .query_one("SHOW shared_buffers", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(shared_buffers, "64MB");
    let pending: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_settings WHERE pending_restart",
            &[],
        )
        .await
        .expect("pending")
        .get(0);
    assert_eq!(pending, 0);
    deployment
        .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
        .expect(0);
}

#[test]
fn restart_required_settings_restart_once() {
    common::block_on(restart_once_for_settings(17));
}

// Issue 15, part 1: the data directory is on pgspec's named volume for any
// image, proven before anything is replaced.

/// The image with the layout of the official image from PostgreSQL 18 on
/// (PGDATA=/var/lib/postgresql/17/docker under VOLUME /var/lib/postgresql),
/// under a tag that does not spell the major.
const LATEST_IMAGE: &str = "pgspec-test/postgres:latest";

/// Mounts of a container as (type, name, destination).
fn mounts(inspect: &bollard::models::ContainerInspectResponse) -> Vec<(String, String, String)> {
    let mut mounts: Vec<(String, String, String)> = inspect
        .mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|mount| {
            (
                mount.typ.map(|kind| kind.to_string()).unwrap_or_default(),
                mount.name.unwrap_or_default(),
                mount.destination.unwrap_or_default(),
            )
        })
        .collect();
    mounts.sort();
    mounts
}

fn env_of(inspect: &bollard::models::ContainerInspectResponse) -> Vec<String> {
    inspect
        .config
        .clone()
        .and_then(|config| config.env)
        .unwrap_or_default()
}

/// A deployment applied from `image`, with 1000 rows in `ledger`, and its
/// container as it runs.
async fn running_with_rows(
    docker: &Docker,
    image: &str,
) -> (Deployment, bollard::models::ContainerInspectResponse) {
    let deployment = Deployment::new();
    let spec = deployment.spec(image, "512MiB");
    deployment
        .pgspec(&["apply", "-f", &spec, "--auto-approve"])
        .expect(0);
    seed_rows(&deployment).await;
    let running = deployment.inspect(docker).await;
    (deployment, running)
}

async fn seed_rows(deployment: &Deployment) {
    connect(deployment.port, &deployment.password, "app")
        .await
        .expect("connect")
        .batch_execute(
            "CREATE TABLE ledger (id int); INSERT INTO ledger SELECT generate_series(1, 1000)",
        )
        .await
        .expect("seed rows");
}

#[test]
fn rows_survive_a_replace_with_the_18_layout_under_latest() {
    common::block_on(async {
        let docker = docker().await;
        let mut deployment = Deployment::new();
        let spec = deployment.spec(LATEST_IMAGE, "512MiB");
        deployment
            .pgspec(&["apply", "-f", &spec, "--auto-approve"])
            .expect(0);
        let inspect = deployment.inspect(&docker).await;
        // The named volume is where the image declares its volume, PGDATA
        // is set explicitly inside it, and nothing is on an anonymous one.
        assert_eq!(
            mounts(&inspect),
            vec![(
                "volume".to_owned(),
                format!("{}-pgdata", deployment.name),
                "/var/lib/postgresql".to_owned()
            )]
        );
        assert!(
            env_of(&inspect).contains(&"PGDATA=/var/lib/postgresql/17/docker".to_owned()),
            "{:?}",
            env_of(&inspect)
        );
        seed_rows(&deployment).await;
        deployment
            .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
            .expect(0);

        // A port change replaces the container; the rows stay.
        deployment.port = free_port();
        let spec = deployment.spec(LATEST_IMAGE, "512MiB");
        let plan = deployment
            .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
            .expect(2);
        assert!(
            plan.stdout.contains("-/+ container.") || plan.stdout.contains("will be replaced"),
            "{}",
            plan.stdout
        );
        deployment
            .pgspec(&["apply", "-f", &spec, "--auto-approve"])
            .expect(0);
        let replaced = deployment.inspect(&docker).await;
        assert_ne!(replaced.id, inspect.id, "the container was replaced");
        assert_eq!(deployment.rows().await, 1000);
        assert_eq!(mounts(&replaced), mounts(&inspect));
        deployment
            .pgspec(&["plan", "-f", &spec, "--detailed-exitcode"])
            .expect(0);
    });
}

#[test]
fn a_container_with_its_data_on_an_anonymous_volume_is_refused_not_replaced() {
    common::block_on(async {
        let docker = docker().await;
        let deployment = Deployment::new();
        // A container as `docker run` makes it from an image with the 18
        // layout: its data on the image's anonymous volume, labelled as
        // pgspec's own (as an earlier pgspec, mounting its volume where the
        // tag suggested, left it).
        let mut labels = std::collections::HashMap::new();
        labels.insert("org.pgspec.deployment".to_owned(), deployment.name.clone());
        labels.insert("org.pgspec.managed".to_owned(), "true".to_owned());
        let body = bollard::models::ContainerCreateBody {
            image: Some(LATEST_IMAGE.to_owned()),
            env: Some(vec![format!("POSTGRES_PASSWORD={}", deployment.password)]),
            labels: Some(labels),
            exposed_ports: Some(vec!["5432/tcp".to_owned()]),
            host_config: Some(bollard::models::HostConfig {
                port_bindings: Some(std::collections::HashMap::from([(
                    "5432/tcp".to_owned(),
                    Some(vec![bollard::models::PortBinding {
                        host_ip: Some("127.0.0.1".to_owned()),
                        host_port: Some(deployment.port.to_string()),
                    }]),
                )])),
                ..bollard::models::HostConfig::default()
            }),
            ..bollard::models::ContainerCreateBody::default()
        };
        docker
            .create_container(
                Some(bollard::query_parameters::CreateContainerOptions {
                    name: Some(deployment.container()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .expect("create container");
        docker
            .start_container(&deployment.container(), None)
            .await
            .expect("start container");
        let mut ready = false;
        for _ in 0..120 {
            if let Ok(client) = connect(deployment.port, &deployment.password, "postgres").await
                && client.batch_execute("CREATE DATABASE app").await.is_ok()
            {
                ready = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        assert!(ready, "the hand-made server never answered");
        seed_rows(&deployment).await;
        let before = deployment.inspect(&docker).await;
        let anonymous = mounts(&before);
        assert!(
            anonymous.len() == 1 && anonymous[0].2 == "/var/lib/postgresql",
            "{anonymous:?}"
        );

        let spec = deployment.spec(LATEST_IMAGE, "512MiB");
        let refused = deployment.pgspec(&["plan", "-f", &spec]).expect(1);
        assert!(
            refused.stdout.contains("pgspec will not replace container")
                && refused.stdout.contains("anonymous volume"),
            "{}",
            refused.stdout
        );
        deployment
            .pgspec(&["apply", "-f", &spec, "--auto-approve"])
            .expect(1);
        let after = deployment.inspect(&docker).await;
        assert_eq!(after.id, before.id, "the container was not touched");
        assert_eq!(
            after.state.and_then(|state| state.running),
            Some(true),
            "it still runs"
        );
        assert_eq!(deployment.rows().await, 1000);
    });
}

#[test]
fn an_image_that_would_not_find_the_data_is_refused_before_the_old_server_stops() {
    common::block_on(async {
        let docker = docker().await;
        let (deployment, before) = running_with_rows(&docker, &postgres_image(17)).await;

        // Same major, other layout: a container from it would look for
        // PGDATA in /var/lib/postgresql/17/docker on the volume, where there
        // is nothing, and initialise an empty cluster there.
        let spec = deployment.spec(LATEST_IMAGE, "512MiB");
        let refused = deployment
            .pgspec(&["apply", "-f", &spec, "--auto-approve"])
            .expect(1);
        assert!(
            refused.stderr.contains("would not find the data directory"),
            "{}",
            refused.stderr
        );
        let after = deployment.inspect(&docker).await;
        assert_eq!(after.id, before.id, "the old container keeps running");
        assert_eq!(deployment.rows().await, 1000);
        // The never-started check container is gone, and no volume but the
        // deployment's was made.
        assert!(
            docker
                .inspect_container(&format!("{}-pgspec-check", deployment.container()), None)
                .await
                .is_err()
        );
    });
}

#[test]
fn an_image_that_cannot_be_pulled_leaves_the_old_server_running() {
    common::block_on(async {
        let docker = docker().await;
        let (deployment, before) = running_with_rows(&docker, &postgres_image(15)).await;

        let missing = format!("pgspec-test/postgres:{}", unique_name("missing"));
        let spec = deployment.spec(&missing, "512MiB");
        let refused = deployment
            .pgspec(&["apply", "-f", &spec, "--auto-approve"])
            .expect(1);
        assert!(
            refused.stderr.contains("neither local nor pullable"),
            "{}",
            refused.stderr
        );
        let after = deployment.inspect(&docker).await;
        assert_eq!(after.id, before.id);
        assert_eq!(after.state.and_then(|state| state.running), Some(true));
        assert_eq!(deployment.rows().await, 1000);
    });
}
