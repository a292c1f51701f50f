//! Issue 24: fitting into an existing Compose setup, against the real
//! engine. A server container started the way a runbook starts it (`docker
//! run` with a name, the image, a named volume at the data directory, the
//! password in the environment and a published port) is adopted by apply
//! without a restart and then plans empty; its reservations are set and
//! changed in place. A spec joining an existing network is reachable there
//! by its alias from another container, its pooler and backup agent reach
//! it by the container name the spec gives, and a lost alias is drift that
//! apply puts back without a new container.
//!
//! Each scenario runs once per major version, and the two differ in where
//! the deployment's network is: on PostgreSQL 15 pgspec's own
//! (`<name>-net`) with the Compose network joined beside it; on 17 the
//! Compose network itself (`postgres.network`), joined instead, where the
//! runbook's container already is, so its adoption is recorded by the mark
//! file in its data directory and `<name>-net` is never created.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HostConfig, Mount, MountType,
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest, NetworkingConfig,
    PortBinding,
};
use common::{
    Cleanup, TEST_LABEL, Workdir, arg, connect, docker, free_port, pgspec, postgres_image,
    unique_name,
};

const PASSWORD_ENV: &str = "PGSPEC_IT_COMPOSE_PASSWORD";
const DATA: &str = "/var/lib/postgresql/data";

fn test_labels() -> HashMap<String, String> {
    HashMap::from([(TEST_LABEL.to_owned(), "1".to_owned())])
}

async fn create_and_start(docker: &Docker, name: &str, body: ContainerCreateBody) {
    pgspec::engine::container::create(docker, name, body)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    pgspec::engine::container::start(docker, name)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
}

async fn inspect(docker: &Docker, name: &str) -> ContainerInspectResponse {
    docker
        .inspect_container(name, None)
        .await
        .unwrap_or_else(|error| panic!("inspect {name}: {error}"))
}

/// The container's id and when it last started: both stay while pgspec
/// changes it in place.
fn identity(inspect: &ContainerInspectResponse) -> (String, String) {
    (
        inspect.id.clone().unwrap_or_default(),
        inspect
            .state
            .as_ref()
            .and_then(|state| state.started_at.clone())
            .unwrap_or_default(),
    )
}

async fn wait_for_server(port: u16, password: &str) {
    for _ in 0..360 {
        if let Ok(client) = connect(port, password, "postgres").await
            && client.simple_query("SELECT 1").await.is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the server on port {port} did not become ready");
}

async fn create_network(docker: &Docker, name: &str) {
    docker
        .create_network(NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".to_owned()),
            labels: Some(test_labels()),
            ..NetworkCreateRequest::default()
        })
        .await
        .unwrap_or_else(|error| panic!("create network {name}: {error}"));
}

/// A container started as a runbook starts one: `docker run -d --name NAME
/// -e POSTGRES_PASSWORD=… -v VOLUME:/var/lib/postgresql/data -p PORT:5432
/// IMAGE` — no restart policy, no health check, none of pgspec's labels.
async fn run_like_a_runbook(
    docker: &Docker,
    name: &str,
    image: &str,
    volume: &str,
    port: u16,
    password: &str,
    network: Option<(&str, &str)>,
) {
    let body = ContainerCreateBody {
        image: Some(image.to_owned()),
        env: Some(vec![format!("POSTGRES_PASSWORD={password}")]),
        labels: Some(test_labels()),
        exposed_ports: Some(vec!["5432/tcp".to_owned()]),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                "5432/tcp".to_owned(),
                Some(vec![PortBinding {
                    host_ip: None,
                    host_port: Some(port.to_string()),
                }]),
            )])),
            mounts: Some(vec![Mount {
                target: Some(DATA.to_owned()),
                source: Some(volume.to_owned()),
                typ: Some(MountType::VOLUME),
                ..Mount::default()
            }]),
            network_mode: network.map(|(network, _)| network.to_owned()),
            ..HostConfig::default()
        }),
        networking_config: network.map(|(network, alias)| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.to_owned(),
                EndpointSettings {
                    aliases: Some(vec![alias.to_owned()]),
                    ..EndpointSettings::default()
                },
            )])),
        }),
        ..ContainerCreateBody::default()
    };
    create_and_start(docker, name, body).await;
}

/// Whether a network exists.
async fn network_exists(docker: &Docker, name: &str) -> bool {
    pgspec::engine::objects::network_exists(docker, name)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

async fn adopts_a_runbook_container(major: u32) {
    let docker = docker().await;
    let name = unique_name("adopt");
    let container = format!("{name}-runbook");
    let volume = format!("{name}-data");
    // On 17 the runbook's container is on the Compose network as
    // `postgres`, and the spec names that network as the deployment's.
    let compose = (major == 17).then(|| format!("{name}-app"));
    let mut cleanup = Cleanup::default();
    cleanup.containers.push(container.clone());
    cleanup.volumes.push(volume.clone());
    cleanup.networks.push(format!("{name}-net"));
    if let Some(network) = &compose {
        cleanup.networks.push(network.clone());
        create_network(&docker, network).await;
    }
    let port = free_port();
    let password = format!("pw-{}", unique_name("secret"));
    let image = postgres_image(major);
    let attachment = compose.as_deref().map(|network| (network, "postgres"));
    run_like_a_runbook(
        &docker, &container, &image, &volume, port, &password, attachment,
    )
    .await;
    wait_for_server(port, &password).await;
    let before = identity(&inspect(&docker, &container).await);

    let work = Workdir::new();
    let network_line = compose
        .as_deref()
        .map(|network| format!("  network: {{ name: {network}, aliases: [postgres] }}\n"))
        .unwrap_or_default();
    let write_spec = |reserved_cpus: &str, reserved_memory: &str| {
        let text = format!(
            "version: 1\nname: {name}\npostgres:\n  image: {image}\n  container_name: {container}\n\
             {network_line}  \
             port: {port}\n  bind_address: 0.0.0.0\n  volume: {volume}\n  \
             resources: {{ memory: 512MiB, reservations: {{ cpus: {reserved_cpus}, memory: {reserved_memory} }} }}\n  \
             superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n\
             databases:\n  - name: app\n"
        );
        arg(&work.write("spec.yaml", &text)).to_owned()
    };
    let run = |args: &[&str]| pgspec(args, &[(PASSWORD_ENV, password.as_str())]);

    let spec = write_spec("0.5", "256MiB");
    let plan = run(&["plan", "-f", &spec, "--detailed-exitcode"]).expect(2);
    assert!(
        plan.stdout
            .contains(&format!("# container.{container} will be adopted")),
        "{}",
        plan.stdout
    );
    assert!(
        !plan.stdout.contains("must be replaced"),
        "adoption replaces nothing:\n{}",
        plan.stdout
    );
    run(&["apply", "-f", &spec, "--auto-approve"]).expect(0);

    let adopted = inspect(&docker, &container).await;
    assert_eq!(
        identity(&adopted),
        before,
        "the container was neither recreated nor restarted"
    );
    let host_config = adopted.host_config.clone().expect("host config");
    assert_eq!(host_config.memory_reservation, Some(256 << 20));
    assert_eq!(host_config.cpu_shares, Some(512));
    assert_eq!(host_config.memory, Some(512 << 20));
    assert_eq!(
        host_config
            .restart_policy
            .and_then(|policy| policy.name)
            .map(|name| name.to_string())
            .as_deref(),
        Some("unless-stopped")
    );
    let networks = adopted
        .network_settings
        .and_then(|settings| settings.networks)
        .unwrap_or_default();
    match &compose {
        None => assert!(
            networks.contains_key(&format!("{name}-net")),
            "joined the deployment's network: {:?}",
            networks.keys()
        ),
        Some(network) => {
            assert!(
                !network_exists(&docker, &format!("{name}-net")).await,
                "pgspec's own network is not created when the spec names another"
            );
            assert!(networks.contains_key(network), "{:?}", networks.keys());
            let pgdata = adopted
                .config
                .as_ref()
                .and_then(|config| config.env.as_ref())
                .and_then(|env| env.iter().find_map(|line| line.strip_prefix("PGDATA=")))
                .unwrap_or(DATA)
                .to_owned();
            let mark = pgspec::engine::files::read_text(
                &docker,
                &container,
                &format!("{pgdata}/pgspec.adopted"),
            )
            .await;
            assert_eq!(
                mark.as_deref(),
                Some(format!("managed by pgspec; deployment={name}\n").as_str()),
                "the adoption is recorded in the data directory"
            );
        }
    }
    let client = connect(port, &password, "app")
        .await
        .expect("the database the spec names exists");
    drop(client);
    run(&["plan", "-f", &spec, "--detailed-exitcode"]).expect(0);

    // A changed reservation is a `docker update`, not a new container.
    let spec = write_spec("1", "384MiB");
    let plan = run(&["plan", "-f", &spec, "--detailed-exitcode"]).expect(2);
    assert!(
        plan.stdout
            .contains(&format!("# container.{container} will be updated in place")),
        "{}",
        plan.stdout
    );
    run(&["apply", "-f", &spec, "--auto-approve"]).expect(0);
    let updated = inspect(&docker, &container).await;
    assert_eq!(identity(&updated), before);
    let host_config = updated.host_config.expect("host config");
    assert_eq!(host_config.memory_reservation, Some(384 << 20));
    assert_eq!(host_config.cpu_shares, Some(1024));
    run(&["plan", "-f", &spec, "--detailed-exitcode"]).expect(0);
}

for_each_major!(
    runbook_container_is_adopted_without_a_restart,
    crate::adopts_a_runbook_container
);

/// Runs `pg_isready -h HOST` in a throwaway container of the test image on
/// `network`; returns its exit code and output.
async fn pg_isready_on(docker: &Docker, cleanup: &mut Cleanup, network: &str, host: &str) -> i64 {
    let name = unique_name("isready");
    cleanup.containers.push(name.clone());
    let body = ContainerCreateBody {
        image: Some(postgres_image(15)),
        entrypoint: Some(vec!["pg_isready".to_owned()]),
        cmd: Some(
            ["--host", host, "--port", "5432", "--timeout", "10"]
                .map(str::to_owned)
                .to_vec(),
        ),
        labels: Some(test_labels()),
        host_config: Some(HostConfig {
            network_mode: Some(network.to_owned()),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    };
    create_and_start(docker, &name, body).await;
    let mut wait = docker.wait_container(
        &name,
        None::<bollard::query_parameters::WaitContainerOptions>,
    );
    let code = match futures_util::StreamExt::next(&mut wait).await {
        Some(Ok(response)) => response.status_code,
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
        other => panic!("wait for {name}: {other:?}"),
    };
    let _ = docker
        .remove_container(
            &name,
            Some(bollard::query_parameters::RemoveContainerOptions {
                force: true,
                v: true,
                link: false,
            }),
        )
        .await;
    code
}

/// The aliases the container answers to on `network`.
async fn aliases(docker: &Docker, container: &str, network: &str) -> Vec<String> {
    inspect(docker, container)
        .await
        .network_settings
        .and_then(|settings| settings.networks)
        .and_then(|mut networks| networks.remove(network))
        .and_then(|endpoint| endpoint.aliases)
        .unwrap_or_default()
}

async fn joins_an_existing_network(major: u32) {
    let docker = docker().await;
    let name = unique_name("join");
    let app_network = format!("{name}-app");
    // On 17 the Compose network is the deployment's: the pooler and the
    // backup agent join it too, and `<name>-net` is never created.
    let instead = major == 17;
    let network_line = if instead {
        format!("  network: {{ name: {app_network}, aliases: [postgres] }}\n")
    } else {
        format!("  networks: [{{ name: {app_network}, aliases: [postgres] }}]\n")
    };
    // Named by the spec: the pooler and the backup agent reach it by this
    // name on the deployment's network.
    let container = format!("{name}-db");
    let mut cleanup = Cleanup::default();
    for suffix in ["db", "pgbouncer", "backup"] {
        cleanup.containers.push(format!("{name}-{suffix}"));
    }
    cleanup.volumes.push(format!("{name}-pgdata"));
    cleanup.volumes.push(format!("{name}-backups"));
    cleanup.networks.push(format!("{name}-net"));
    cleanup.networks.push(app_network.clone());
    let password = format!("pw-{}", unique_name("secret"));
    let port = free_port();
    let pooler_port = free_port();
    let work = Workdir::new();
    // Backups once a year: only `backup run` takes one here.
    let spec_text = format!(
        "version: 1\nname: {name}\npostgres:\n  image: {}\n  container_name: {container}\n  \
         port: {port}\n{network_line}  \
         superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n\
         pooler:\n  image: pgspec-test/pgbouncer:1\n  port: {pooler_port}\n\
         backup:\n  schedules:\n    - {{ name: yearly, schedule: \"0 3 1 1 *\" }}\n  \
         destination: {{ volume: {name}-backups }}\n",
        postgres_image(major)
    );
    let spec = arg(&work.write("spec.yaml", &spec_text)).to_owned();
    let run = |args: &[&str]| pgspec(args, &[(PASSWORD_ENV, password.as_str())]);

    // pgspec creates no network it does not own.
    let plan = run(&["plan", "-f", &spec]);
    assert_ne!(plan.code, 0, "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains(&format!("network `{app_network}` does not exist")),
        "{}\n{}",
        plan.stdout,
        plan.stderr
    );

    create_network(&docker, &app_network).await;
    run(&["apply", "-f", &spec, "--auto-approve"]).expect(0);
    assert!(
        aliases(&docker, &container, &app_network)
            .await
            .contains(&"postgres".to_owned())
    );
    assert_eq!(
        pg_isready_on(&docker, &mut cleanup, &app_network, "postgres").await,
        0,
        "the server answers as `postgres` on `{app_network}`"
    );
    run(&["plan", "-f", &spec, "--detailed-exitcode"]).expect(0);
    // The pooler and the backup agent reach the server by the spec's name.
    let through_pooler = connect(pooler_port, &password, "postgres")
        .await
        .expect("connect through the pooler");
    through_pooler
        .simple_query("SELECT 1")
        .await
        .expect("query through the pooler");
    let backup = run(&["backup", "run", "-f", &spec]).expect(0);
    assert!(backup.stdout.contains(" ok ("), "{}", backup.stdout);
    if instead {
        assert!(
            !network_exists(&docker, &format!("{name}-net")).await,
            "pgspec's own network is not created when the spec names another"
        );
        for helper in ["pgbouncer", "backup"] {
            let attached = inspect(&docker, &format!("{name}-{helper}"))
                .await
                .network_settings
                .and_then(|settings| settings.networks)
                .unwrap_or_default();
            assert!(
                attached.contains_key(&app_network),
                "the {helper} container is on the deployment's network: {:?}",
                attached.keys()
            );
        }
    }

    // By hand: the container loses its alias on the network.
    let before = identity(&inspect(&docker, &container).await);
    docker
        .disconnect_network(
            &app_network,
            NetworkDisconnectRequest {
                container: container.clone(),
                force: None,
            },
        )
        .await
        .expect("disconnect");
    docker
        .connect_network(
            &app_network,
            NetworkConnectRequest {
                container: container.clone(),
                endpoint_config: Some(EndpointSettings {
                    aliases: Some(vec!["db".to_owned()]),
                    ..EndpointSettings::default()
                }),
            },
        )
        .await
        .expect("connect");
    let drift = run(&["drift", "-f", &spec]).expect(2);
    assert!(
        drift.stdout.contains(&format!(
            "networks.{app_network} = aliases db -> aliases db, postgres"
        )),
        "{}",
        drift.stdout
    );
    run(&["apply", "-f", &spec, "--auto-approve"]).expect(0);
    assert_eq!(
        identity(&inspect(&docker, &container).await),
        before,
        "the alias came back without a new container or a restart"
    );
    let now = aliases(&docker, &container, &app_network).await;
    assert!(
        now.contains(&"postgres".to_owned()) && now.contains(&"db".to_owned()),
        "{now:?}"
    );
    assert_eq!(
        pg_isready_on(&docker, &mut cleanup, &app_network, "postgres").await,
        0
    );
    run(&["plan", "-f", &spec, "--detailed-exitcode"]).expect(0);
}

for_each_major!(
    spec_joining_a_network_is_reachable_by_its_alias,
    crate::joins_an_existing_network
);
