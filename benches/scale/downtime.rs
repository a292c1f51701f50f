//! Downtime of a restart and of a replace: the longest gap between two
//! answers that a client polling `select 1` sees, for `docker restart` of
//! the server container (the reference), for a `pgspec apply` that changes
//! a setting needing a restart, and for one that replaces the container
//! (the same image under another tag).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::query_parameters::{RestartContainerOptions, TagImageOptions};
use serde::Serialize;

use crate::common::{
    Cleanup, Workdir, connect, docker, free_port, pgspec, postgres_image, unique_name,
};

const PASSWORD_ENV: &str = "PGSPEC_BENCH_DOWNTIME_PASSWORD";

/// Longest gaps in milliseconds, the median of the runs of each.
#[derive(Debug, Clone, Serialize)]
pub struct Downtime {
    pub docker_restart_ms: f64,
    pub pgspec_restart_ms: f64,
    pub pgspec_replace_ms: f64,
}

/// Measures each operation `runs` times on one idle deployment.
pub async fn measure(runs: usize) -> Downtime {
    let docker = docker().await;
    let name = unique_name("benchdt");
    let container = format!("{name}-postgres");
    let mut cleanup = Cleanup::default();
    cleanup.containers.push(container.clone());
    cleanup.volumes.push(format!("{name}-pgdata"));
    cleanup.networks.push(format!("{name}-net"));
    let image = postgres_image(17);
    let tag = format!("17-{name}");
    docker
        .tag_image(
            &image,
            Some(TagImageOptions {
                repo: Some("pgspec-test/postgres".to_owned()),
                tag: Some(tag.clone()),
            }),
        )
        .await
        .expect("tag the image under a second name");
    let alternate = format!("pgspec-test/postgres:{tag}");
    cleanup.image_tags.push(alternate.clone());

    let port = free_port();
    let password = format!("pw-{}", unique_name("secret"));
    let work = Workdir::new();
    let apply = |image: &str, max_connections: u32| {
        let text = format!(
            "version: 1\nname: {name}\npostgres:\n  image: {image}\n  port: {port}\n  \
             superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n  settings:\n    \
             max_connections: {max_connections}\n"
        );
        let path = work.write("downtime.yaml", &text);
        let password = password.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                pgspec(
                    &[
                        "apply",
                        "--auto-approve",
                        "-q",
                        "-f",
                        path.to_str().expect("utf-8 path"),
                    ],
                    &[(PASSWORD_ENV, password.as_str())],
                )
                .expect(0);
            })
            .await
            .expect("pgspec apply");
        }
    };
    apply(&image, 100).await;

    let (mut restarts, mut pgspec_restarts, mut replaces) = (Vec::new(), Vec::new(), Vec::new());
    let mut images = [image.as_str(), alternate.as_str()].into_iter().cycle();
    let mut current_image = images.next().expect("an image");
    for run in 0..runs {
        restarts.push(
            longest_gap(port, &password, async {
                docker
                    .restart_container(
                        &container,
                        Some(RestartContainerOptions {
                            t: Some(10),
                            ..RestartContainerOptions::default()
                        }),
                    )
                    .await
                    .expect("docker restart");
            })
            .await,
        );
        let max_connections = if run % 2 == 0 { 120 } else { 100 };
        pgspec_restarts
            .push(longest_gap(port, &password, apply(current_image, max_connections)).await);
        current_image = images.next().expect("an image");
        replaces.push(longest_gap(port, &password, apply(current_image, max_connections)).await);
    }
    drop(cleanup);
    Downtime {
        docker_restart_ms: median(restarts),
        pgspec_restart_ms: median(pgspec_restarts),
        pgspec_replace_ms: median(replaces),
    }
}

fn median(mut gaps: Vec<Duration>) -> f64 {
    gaps.sort();
    gaps.get(gaps.len() / 2)
        .map_or(0.0, |gap| gap.as_secs_f64() * 1000.0)
}

/// Polls `select 1` every few milliseconds (reconnecting after a failure)
/// while `operation` runs and until the server answers again after it, and
/// returns the longest time between two answers.
async fn longest_gap(
    port: u16,
    password: &str,
    operation: impl std::future::Future<Output = ()>,
) -> Duration {
    struct Poll {
        last_answer: Instant,
        longest: Duration,
        stop: bool,
    }
    let state = Arc::new(Mutex::new(Poll {
        last_answer: Instant::now(),
        longest: Duration::ZERO,
        stop: false,
    }));
    let poller = {
        let state = Arc::clone(&state);
        let password = password.to_owned();
        tokio::spawn(async move {
            let mut client = None;
            let deadline = Instant::now() + Duration::from_secs(300);
            while Instant::now() < deadline {
                if client.is_none() {
                    client = tokio::time::timeout(
                        Duration::from_secs(2),
                        connect(port, &password, "postgres"),
                    )
                    .await
                    .ok()
                    .and_then(Result::ok);
                }
                let answered = match &client {
                    Some(connected) => tokio::time::timeout(
                        Duration::from_secs(2),
                        connected.simple_query("select 1"),
                    )
                    .await
                    .is_ok_and(|result| result.is_ok()),
                    None => false,
                };
                if !answered {
                    client = None;
                }
                {
                    let mut poll = state.lock().expect("poll state");
                    if answered {
                        let now = Instant::now();
                        poll.longest = poll.longest.max(now - poll.last_answer);
                        poll.last_answer = now;
                        if poll.stop {
                            return;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("the server did not answer again within five minutes");
        })
    };
    // The poller has answered at least once before the operation starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    operation.await;
    state.lock().expect("poll state").stop = true;
    poller.await.expect("poller");
    state.lock().expect("poll state").longest
}
