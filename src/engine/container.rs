//! Containers: create, start, wait until ready or until exit, run a command
//! in one, read its logs, and remove it.
//!
//! Invariant: removing a container removes its anonymous volumes only;
//! named volumes (data, backups) stay.

use std::future::Future;
use std::time::{Duration, Instant};

use bollard::exec::StartExecResults;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerUpdateBody, ExecConfig, HostConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    RestartContainerOptions, StopContainerOptions, WaitContainerOptions,
};

use super::{
    Docker, EngineError, STREAM_STALL, found, is_not_found, labels, next_within, object_labels,
};

/// Seconds a server gets for a fast shutdown before it is killed.
pub const STOP_TIMEOUT_SECONDS: i32 = 60;

/// The port PostgreSQL listens on inside a server container.
pub const SERVER_PORT: &str = "5432/tcp";

/// Creates a container named `name`.
pub async fn create(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
) -> Result<(), EngineError> {
    docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.to_owned()),
                ..CreateContainerOptions::default()
            }),
            body,
        )
        .await
        .map(|_| ())
        .map_err(EngineError::call(format!("create container `{name}`")))
}

/// Starts a created or stopped container.
pub async fn start(docker: &Docker, name: &str) -> Result<(), EngineError> {
    docker
        .start_container(name, None)
        .await
        .map_err(EngineError::call(format!("start container `{name}`")))
}

/// Restarts a container, giving its process [`STOP_TIMEOUT_SECONDS`] to
/// stop.
pub async fn restart(docker: &Docker, name: &str) -> Result<(), EngineError> {
    docker
        .restart_container(
            name,
            Some(RestartContainerOptions {
                t: Some(STOP_TIMEOUT_SECONDS),
                signal: None,
            }),
        )
        .await
        .map_err(EngineError::call(format!("restart container `{name}`")))
}

/// Changes a container's resources or restart policy in place.
pub async fn update(
    docker: &Docker,
    name: &str,
    body: ContainerUpdateBody,
) -> Result<(), EngineError> {
    docker
        .update_container(name, body)
        .await
        .map_err(EngineError::call(format!("update container `{name}`")))
}

/// The names of the containers, running or not, carrying `label=value`,
/// sorted.
pub async fn names_with_label(
    docker: &Docker,
    label: &str,
    value: &str,
) -> Result<Vec<String>, EngineError> {
    let filters =
        std::collections::HashMap::from([("label".to_owned(), vec![format!("{label}={value}")])]);
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..ListContainersOptions::default()
        }))
        .await
        .map_err(EngineError::call(format!(
            "list the containers labelled `{label}={value}`"
        )))?;
    let mut names: Vec<String> = containers
        .into_iter()
        .flat_map(|container| container.names.unwrap_or_default())
        .map(|name| name.trim_start_matches('/').to_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// The containers, running or not, that mount the volume `volume`, with
/// their labels, sorted by name.
pub async fn using_volume(
    docker: &Docker,
    volume: &str,
) -> Result<Vec<(String, std::collections::HashMap<String, String>)>, EngineError> {
    let filters = std::collections::HashMap::from([("volume".to_owned(), vec![volume.to_owned()])]);
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..ListContainersOptions::default()
        }))
        .await
        .map_err(EngineError::call(format!(
            "list the containers that mount volume `{volume}`"
        )))?;
    let mut users: Vec<(String, std::collections::HashMap<String, String>)> = containers
        .into_iter()
        .filter_map(|container| {
            let name = container.names?.into_iter().next()?;
            Some((
                name.trim_start_matches('/').to_owned(),
                container.labels.unwrap_or_default(),
            ))
        })
        .collect();
    users.sort_by(|left, right| left.0.cmp(&right.0));
    Ok(users)
}

/// The container as the engine reports it; `None` when there is none.
pub async fn inspect(
    docker: &Docker,
    name: &str,
) -> Result<Option<ContainerInspectResponse>, EngineError> {
    found(
        docker.inspect_container(name, None).await,
        &format!("inspect container `{name}`"),
    )
}

/// Whether the container runs, and how often its restart policy restarted
/// it; not running when it cannot be inspected.
async fn run_state(docker: &Docker, name: &str) -> (bool, i64) {
    let inspect = docker.inspect_container(name, None).await.ok();
    let restarts = inspect
        .as_ref()
        .and_then(|inspect| inspect.restart_count)
        .unwrap_or(0);
    let running = inspect
        .and_then(|inspect| inspect.state)
        .and_then(|state| state.running)
        .unwrap_or(false);
    (running, restarts)
}

/// Stops a container (fast shutdown, with a timeout); a stopped one stays
/// stopped. Returns whether the container exists.
pub async fn stop(docker: &Docker, name: &str) -> Result<bool, EngineError> {
    match docker
        .stop_container(
            name,
            Some(StopContainerOptions {
                t: Some(STOP_TIMEOUT_SECONDS),
                signal: None,
            }),
        )
        .await
    {
        Ok(()) => Ok(true),
        Err(error) if is_not_found(&error) => Ok(false),
        // 304: already stopped.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(true),
        Err(source) => Err(EngineError::Call {
            what: format!("stop container `{name}`"),
            source,
        }),
    }
}

/// Stops a container (fast shutdown, with a timeout) and removes it with
/// its anonymous volumes; named volumes stay, and a missing container is
/// already gone.
pub async fn stop_and_remove(docker: &Docker, name: &str) -> Result<(), EngineError> {
    if !stop(docker, name).await? {
        return Ok(());
    }
    docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                // `v` removes only the container's anonymous volumes (an
                // image's VOLUME nothing was mounted on); named volumes —
                // data, backups — are never removed by it, and leaking one
                // anonymous volume per replaced container fills the disk.
                v: true,
                force: false,
                link: false,
            }),
        )
        .await
        .map_err(EngineError::call(format!("remove container `{name}`")))
}

/// Creates a container that holds no data and is removed again with
/// [`remove_throwaway`] (a check container, a scratch server): a leftover
/// of the same name goes first, it carries the deployment's labels and
/// `org.pgspec.role` `role`, and it has no network.
pub async fn create_throwaway(
    docker: &Docker,
    deployment: &str,
    name: &str,
    role: &str,
    body: ContainerCreateBody,
) -> Result<(), EngineError> {
    remove_throwaway(docker, name).await?;
    let mut container_labels = object_labels(deployment);
    container_labels.insert(labels::ROLE.to_owned(), role.to_owned());
    let host_config = body.host_config.clone().unwrap_or_default();
    create(
        docker,
        name,
        ContainerCreateBody {
            labels: Some(container_labels),
            host_config: Some(HostConfig {
                network_mode: Some("none".to_owned()),
                ..host_config
            }),
            ..body
        },
    )
    .await
}

/// The label `key` of a container; `None` when the container does not
/// exist, empty when it has no such label.
pub async fn label(docker: &Docker, name: &str, key: &str) -> Result<Option<String>, EngineError> {
    Ok(inspect(docker, name).await?.map(|found| {
        found
            .config
            .and_then(|config| config.labels)
            .and_then(|mut found_labels| found_labels.remove(key))
            .unwrap_or_default()
    }))
}

/// Removes a container that holds no data, running or not, with its
/// anonymous volumes; named volumes stay, and a missing container is
/// already gone. A container of that name pgspec did not make (no
/// `org.pgspec.managed` label) is refused, never removed.
pub async fn remove_throwaway(docker: &Docker, name: &str) -> Result<(), EngineError> {
    if label(docker, name, labels::MANAGED)
        .await?
        .is_some_and(|managed| managed != "true")
    {
        return Err(EngineError::NotOurs {
            name: name.to_owned(),
        });
    }
    match docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                v: true,
                force: true,
                link: false,
            }),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(error) if is_not_found(&error) => Ok(()),
        Err(source) => Err(EngineError::Call {
            what: format!("remove container `{name}`"),
            source,
        }),
    }
}

/// Why a started container did not become ready.
#[derive(Debug)]
pub enum NotReady {
    /// It stopped, or its restart policy restarted it twice.
    Stopped { last_error: String, logs: String },
    /// It kept running without becoming ready within the limit.
    TimedOut { last_error: String, logs: String },
}

/// How long [`wait_ready`] waits, and how patiently.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// Give up after this long.
    pub limit: Duration,
    /// A container that is not running this long after the wait began has
    /// stopped (before it, it may not have started yet).
    pub grace: Duration,
    /// Pause between probes.
    pub interval: Duration,
}

/// Probes a started container until `probe` says it is ready, it stops, or
/// `patience.limit` passes; a failed probe's message is kept for the error.
/// The error carries the container's last log lines.
pub async fn wait_ready<F, Fut>(
    docker: &Docker,
    name: &str,
    patience: Patience,
    mut probe: F,
) -> Result<(), NotReady>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        let last_error = match probe().await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        let (running, restarts) = run_state(docker, name).await;
        if (!running && started.elapsed() > patience.grace) || restarts >= 2 {
            let logs = last_logs(docker, name).await;
            return Err(NotReady::Stopped { last_error, logs });
        }
        if started.elapsed() > patience.limit {
            let logs = last_logs(docker, name).await;
            return Err(NotReady::TimedOut { last_error, logs });
        }
        tokio::time::sleep(patience.interval).await;
    }
}

/// Waits for a started container to exit and returns its exit code.
pub async fn wait_exit(docker: &Docker, name: &str, limit: Duration) -> anyhow::Result<i64> {
    let mut wait = docker.wait_container(name, None::<WaitContainerOptions>);
    match next_within(&mut wait, limit).await {
        Ok(Some(Ok(response))) => Ok(response.status_code),
        // The engine reports a non-zero exit as an error of the wait.
        Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => Ok(code),
        Ok(Some(Err(source))) => Err(EngineError::Call {
            what: format!("wait for `{name}`"),
            source,
        }
        .into()),
        Ok(None) => Ok(-1),
        Err(_) => anyhow::bail!("`{name}` did not finish within {}s", limit.as_secs()),
    }
}

/// The container's last 20 log lines, indented, for error messages.
pub async fn last_logs(docker: &Docker, name: &str) -> String {
    let mut logs = docker.logs(
        name,
        Some(LogsOptions {
            stdout: true,
            stderr: true,
            tail: "20".to_owned(),
            ..LogsOptions::default()
        }),
    );
    let mut text = format!("last log lines of `{name}`:\n");
    while let Ok(Some(Ok(line))) = next_within(&mut logs, STREAM_STALL).await {
        for line in line.to_string().lines() {
            text.push_str("  | ");
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// What a `docker exec` printed and how it ended.
pub struct ExecOutput {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command in a running container and collects its output; with
/// `forward`, each line of its stderr (progress) goes to our stderr as it
/// arrives.
pub async fn exec(
    docker: &Docker,
    container: &str,
    command: &[String],
    forward: bool,
) -> Result<ExecOutput, EngineError> {
    let what = || format!("run `{}` in container `{container}`", command.join(" "));
    let created = docker
        .create_exec(
            container,
            ExecConfig {
                cmd: Some(command.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..ExecConfig::default()
            },
        )
        .await
        .map_err(EngineError::call(what()))?;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let started = docker
        .start_exec(&created.id, None)
        .await
        .map_err(EngineError::call(what()))?;
    if let StartExecResults::Attached { mut output, .. } = started {
        use futures_util::StreamExt;
        while let Some(chunk) = output.next().await {
            match chunk.map_err(EngineError::call(what()))? {
                bollard::container::LogOutput::StdOut { message } => {
                    stdout.extend_from_slice(&message)
                }
                bollard::container::LogOutput::StdErr { message } => {
                    let start = stderr.len();
                    stderr.extend_from_slice(&message);
                    if forward {
                        for line in completed_lines(&stderr, start, message.len()) {
                            crate::output::status(&String::from_utf8_lossy(line));
                        }
                    }
                }
                _ => {}
            }
        }
        // The last line, when it had no newline.
        if forward
            && let Some(last) = stderr.split(|byte| *byte == b'\n').next_back()
            && !last.is_empty()
        {
            crate::output::status(&String::from_utf8_lossy(last));
        }
    }
    let inspect = docker
        .inspect_exec(&created.id)
        .await
        .map_err(EngineError::call(format!(
            "read how `{}` ended in container `{container}`",
            command.join(" ")
        )))?;
    Ok(ExecOutput {
        code: inspect.exit_code.unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// The lines of `buffer` that the `added` bytes at `start` complete.
fn completed_lines(buffer: &[u8], start: usize, added: usize) -> Vec<&[u8]> {
    // A line starts after the last newline before the new bytes.
    let line_start = buffer[..start]
        .iter()
        .rposition(|byte| *byte == b'\n')
        .map_or(0, |position| position + 1);
    let end = start + added;
    match buffer[start..end].iter().rposition(|byte| *byte == b'\n') {
        Some(position) => buffer[line_start..start + position]
            .split(|byte| *byte == b'\n')
            .collect(),
        None => Vec::new(),
    }
}

/// The host address and port a container publishes `port` (`5432/tcp`)
/// on: where the engine bound it when it runs (a port it picked among
/// them), else where it is configured to.
pub fn published(inspect: &ContainerInspectResponse, port: &str) -> Option<(String, u16)> {
    let bound = inspect
        .network_settings
        .as_ref()
        .and_then(|settings| settings.ports.as_ref())
        .and_then(|ports| ports.get(port)?.as_ref()?.first());
    let binding = bound.or_else(|| configured_binding(inspect, port))?;
    let host_port = binding.host_port.as_deref()?.parse().ok()?;
    Some((binding.host_ip.clone().unwrap_or_default(), host_port))
}

/// The host address and port a container is configured to publish `port`
/// on, as created: empty and 0 where it names none (0 also for a port the
/// engine picks).
pub fn configured(inspect: &ContainerInspectResponse, port: &str) -> (String, u16) {
    let binding = configured_binding(inspect, port);
    (
        binding
            .and_then(|binding| binding.host_ip.clone())
            .unwrap_or_default(),
        binding
            .and_then(|binding| binding.host_port.as_deref()?.parse().ok())
            .unwrap_or_default(),
    )
}

fn configured_binding<'a>(
    inspect: &'a ContainerInspectResponse,
    port: &str,
) -> Option<&'a bollard::models::PortBinding> {
    inspect
        .host_config
        .as_ref()?
        .port_bindings
        .as_ref()?
        .get(port)?
        .as_ref()?
        .first()
}

#[cfg(test)]
mod tests {
    use super::completed_lines;

    #[test]
    fn stderr_is_forwarded_a_whole_line_at_a_time() {
        let buffer = b"backing up da";
        assert!(completed_lines(buffer, 0, buffer.len()).is_empty());
        let buffer = b"backing up database `a`\nbackup `x`: ok\npart";
        let lines = completed_lines(buffer, 13, buffer.len() - 13);
        assert_eq!(
            lines,
            [&b"backing up database `a`"[..], &b"backup `x`: ok"[..]]
        );
        let buffer = b"one\ntwo\n";
        assert_eq!(completed_lines(buffer, 4, 4), [&b"two"[..]]);
    }
}
