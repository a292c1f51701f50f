//! Harness for tests against a real Docker engine and real PostgreSQL.
//!
//! Every object a test makes carries the label `org.pgspec.test=1` and a name
//! starting with `pgspec-test-` plus a unique suffix, and is removed when its
//! guard drops (panics included) unless PGSPEC_TEST_KEEP=1. A test that
//! cannot reach Docker fails and says how to fix it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, PortBinding};
use bollard::query_parameters::{CreateContainerOptions, RemoveContainerOptions};
use tokio_postgres::{Client, NoTls};

/// Images the test scripts build (scripts/images.sh).
pub fn postgres_image(major: u32) -> String {
    format!("pgspec-test/postgres:{major}")
}

pub const TEST_LABEL: &str = "org.pgspec.test";

/// A name no user object has: prefix, process id, counter and time.
pub fn unique_name(purpose: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!(
        "pgspec-test-{purpose}-{}-{}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos & 0xfffff
    )
}

fn keep() -> bool {
    std::env::var("PGSPEC_TEST_KEEP").is_ok_and(|value| value == "1")
}

/// Connects to the engine or fails the test with what to do.
pub async fn docker() -> Docker {
    let docker = Docker::connect_with_local_defaults().unwrap_or_else(|error| {
        panic!("cannot reach the Docker engine ({error}); run scripts/test-env.sh")
    });
    let docker = docker.negotiate_version().await.unwrap_or_else(|error| {
        panic!("the Docker engine does not answer ({error}); run scripts/test-env.sh")
    });
    docker
        .inspect_image(&postgres_image(15))
        .await
        .unwrap_or_else(|error| {
            panic!(
                "test image {} is missing ({error}); run scripts/test-env.sh",
                postgres_image(15)
            )
        });
    docker
}

/// Removes containers and volumes by name when dropped.
#[derive(Default)]
pub struct Cleanup {
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub networks: Vec<String>,
    /// Image tags (not images) a test added.
    pub image_tags: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if keep() {
            eprintln!(
                "PGSPEC_TEST_KEEP=1: leaving containers {:?}, volumes {:?}, networks {:?}",
                self.containers, self.volumes, self.networks
            );
            return;
        }
        let containers = std::mem::take(&mut self.containers);
        let volumes = std::mem::take(&mut self.volumes);
        let networks = std::mem::take(&mut self.networks);
        let image_tags = std::mem::take(&mut self.image_tags);
        // Drop may run inside a runtime; clean up on a thread of our own.
        let cleaner = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for cleanup");
            runtime.block_on(async move {
                let Ok(docker) = Docker::connect_with_local_defaults() else {
                    return;
                };
                let Ok(docker) = docker.negotiate_version().await else {
                    return;
                };
                for name in containers {
                    let _ = docker
                        .remove_container(
                            &name,
                            Some(RemoveContainerOptions {
                                force: true,
                                v: true,
                                link: false,
                            }),
                        )
                        .await;
                }
                for name in networks {
                    let _ = docker.remove_network(&name).await;
                }
                for tag in image_tags {
                    let _ = docker
                        .remove_image(
                            &tag,
                            None::<bollard::query_parameters::RemoveImageOptions>,
                            None,
                        )
                        .await;
                }
                for name in volumes {
                    let _ = docker
                        .remove_volume(
                            &name,
                            None::<bollard::query_parameters::RemoveVolumeOptions>,
                        )
                        .await;
                }
            });
        });
        let _ = cleaner.join();
    }
}

/// A PostgreSQL server in a container the test owns.
pub struct Server {
    pub major: u32,
    pub container: String,
    pub port: u16,
    pub password: String,
    pub cleanup: Cleanup,
}

impl Server {
    /// Starts a server from the local test image and waits until it accepts
    /// connections. Docker picks the host port.
    pub async fn start(major: u32) -> Server {
        Server::start_with(major, None).await
    }

    /// Starts a server with a tmpfs of `size` (`1m`) at `path`, owned by the
    /// image's postgres user: a disk that fills up, for a tablespace.
    pub async fn start_with_small_disk(major: u32, path: &str, size: &str) -> Server {
        // The official images run the server as uid and gid 999.
        let options = format!("size={size},uid=999,gid=999,mode=700");
        Server::start_with(major, Some(HashMap::from([(path.to_owned(), options)]))).await
    }

    async fn start_with(major: u32, tmpfs: Option<HashMap<String, String>>) -> Server {
        let docker = docker().await;
        let container = unique_name(&format!("pg{major}"));
        let volume = format!("{container}-data");
        let mut cleanup = Cleanup::default();
        cleanup.containers.push(container.clone());
        cleanup.volumes.push(volume.clone());
        let password = format!("pw-{}", unique_name("secret"));
        let body = ContainerCreateBody {
            image: Some(postgres_image(major)),
            env: Some(vec![format!("POSTGRES_PASSWORD={password}")]),
            labels: Some(HashMap::from([(TEST_LABEL.to_owned(), "1".to_owned())])),
            exposed_ports: Some(vec!["5432/tcp".to_owned()]),
            host_config: Some(HostConfig {
                port_bindings: Some(HashMap::from([(
                    "5432/tcp".to_owned(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".to_owned()),
                        host_port: Some(String::new()),
                    }]),
                )])),
                mounts: Some(vec![Mount {
                    target: Some("/var/lib/postgresql/data".to_owned()),
                    source: Some(volume.clone()),
                    typ: Some(MountType::VOLUME),
                    ..Mount::default()
                }]),
                tmpfs,
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(container.clone()),
                    ..CreateContainerOptions::default()
                }),
                body,
            )
            .await
            .expect("create test server container");
        docker
            .start_container(&container, None)
            .await
            .expect("start test server container");
        let inspect = docker
            .inspect_container(&container, None)
            .await
            .expect("inspect test server container");
        let port = published_port(inspect).expect("published port of the test server");
        let server = Server {
            major,
            container,
            port,
            password,
            cleanup,
        };
        server.wait_ready().await;
        server
    }

    /// Restarts the server's container and waits for it; Docker may publish
    /// it on another host port, which `port` then holds.
    pub async fn restart(&mut self) {
        let docker = docker().await;
        docker
            .restart_container(
                &self.container,
                None::<bollard::query_parameters::RestartContainerOptions>,
            )
            .await
            .expect("restart the test server");
        let inspect = docker
            .inspect_container(&self.container, None)
            .await
            .expect("inspect the test server");
        self.port = published_port(inspect).expect("published port after the restart");
        self.wait_ready().await;
    }

    pub async fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            match self.try_client("postgres").await {
                Ok(client) if client.simple_query("SELECT 1").await.is_ok() => return,
                _ if started.elapsed() > Duration::from_secs(90) => {
                    panic!("server in {} did not become ready", self.container)
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    async fn try_client(&self, database: &str) -> Result<Client, tokio_postgres::Error> {
        connect(self.port, &self.password, database).await
    }

    /// A superuser connection to a database, independent of pgspec.
    pub async fn client(&self, database: &str) -> Client {
        self.try_client(database)
            .await
            .unwrap_or_else(|error| panic!("connect to {database}: {error}"))
    }

    /// Runs SQL as the superuser.
    pub async fn execute(&self, database: &str, sql: &str) {
        self.client(database)
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
    }

    /// The `postgres.connection` block of a spec pointing at this server,
    /// with the password read from `password_env`.
    pub fn connection_yaml(&self, password_env: &str) -> String {
        format!(
            "  connection:\n    host: 127.0.0.1\n    port: {}\n    user: postgres\n    password: {{ env: {password_env} }}\n",
            self.port
        )
    }
}

/// The host port a container publishes the server's 5432 on.
fn published_port(inspect: bollard::models::ContainerInspectResponse) -> Option<u16> {
    inspect
        .network_settings
        .and_then(|settings| settings.ports)
        .and_then(|ports| ports.get("5432/tcp").cloned().flatten())
        .and_then(|bindings| {
            bindings
                .first()
                .and_then(|binding| binding.host_port.clone())
        })
        .and_then(|port| port.parse().ok())
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port")
}

/// A superuser connection to a server on a local port.
pub async fn connect(
    port: u16,
    password: &str,
    database: &str,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .password(password)
        .dbname(database)
        .connect(NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

/// A scratch directory with a spec file in it.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The result of running the pgspec binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, showing both streams when it differs.
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `pgspec ARGS` with extra environment variables, no terminal.
pub fn pgspec(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgspec"));
    command
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    for name in ["PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    Run::from(command.output().expect("run pgspec"))
}

/// A spec path as a string argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Runs an async test body for one PostgreSQL major version on a runtime of
/// its own.
pub fn block_on<F: std::future::Future<Output = ()>>(future: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime")
        .block_on(future);
}

/// Defines `NAME_pg15` and `NAME_pg17` tests calling `body(major)`.
#[macro_export]
macro_rules! for_each_major {
    ($name:ident, $body:path) => {
        mod $name {
            #[test]
            fn pg15() {
                $crate::common::block_on($body(15));
            }
            #[test]
            fn pg17() {
                $crate::common::block_on($body(17));
            }
        }
    };
}
