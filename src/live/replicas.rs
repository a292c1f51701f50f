//! Observing the streaming replicas: each replica's container and volume
//! through the engine, and, on the server, the replicas' slots with what
//! `pg_stat_replication` says of the walsender on each (one query).
//!
//! Invariant: only reads.

use std::collections::{BTreeMap, BTreeSet};

use crate::engine::{self, Docker};
use crate::live::{ObserveError, Target};
use crate::model::replicas::{LABEL_NAME, LABEL_ROLE, Replica, Replication, replica_of_slot};
use crate::model::{ContainerState, Deployment};

/// What the server says of one replica's slot.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    pub streaming: bool,
    pub lag_bytes: Option<u64>,
}

/// The replicas' containers, by replica name: the spec's and any other
/// container labelled as a replica of this deployment.
pub async fn observe_containers(
    docker: &Docker,
    desired: &Deployment,
) -> Result<BTreeMap<String, Replica>, ObserveError> {
    let mut found = BTreeMap::new();
    if desired.container.is_none() {
        return Ok(found);
    }
    let mut names: BTreeSet<(String, String)> = desired
        .replication
        .iter()
        .flat_map(|replication| replication.replicas.values())
        .map(|replica| (replica.name.clone(), replica.container.clone()))
        .collect();
    for container in
        engine::container::names_with_label(docker, engine::labels::ROLE, LABEL_ROLE).await?
    {
        let Some(inspect) = engine::container::inspect(docker, &container).await? else {
            continue;
        };
        let labels = inspect
            .config
            .as_ref()
            .and_then(|config| config.labels.clone())
            .unwrap_or_default();
        if labels.get(engine::labels::DEPLOYMENT) != Some(&desired.name) {
            continue;
        }
        if let Some(name) = labels.get(LABEL_NAME) {
            names.insert((name.clone(), container));
        }
    }
    for (name, container) in names {
        let mut replica = Replica::named(&desired.name, &name);
        replica.container = container.clone();
        replica.volume_exists = engine::objects::volume_exists(docker, &replica.volume).await?;
        match engine::container::inspect(docker, &container).await? {
            None => replica.state = ContainerState::Missing,
            Some(inspect) => {
                let config = inspect.config.clone().unwrap_or_default();
                let labels = config.labels.clone().unwrap_or_default();
                let state = inspect.state.clone().unwrap_or_default();
                replica.state = if state.restarting == Some(true) {
                    ContainerState::Restarting
                } else if state.running == Some(true) {
                    ContainerState::Running
                } else {
                    ContainerState::Stopped
                };
                replica.settings = command_settings(config.cmd.as_deref().unwrap_or_default());
                replica.image = config.image.unwrap_or_default();
                replica.image_id = inspect.image.clone().unwrap_or_default();
                replica.config_hash = labels
                    .get(engine::labels::CONFIG_HASH)
                    .cloned()
                    .unwrap_or_default();
            }
        }
        found.insert(name, replica);
    }
    Ok(found)
}

/// The replicas' slots on the server, by replica name: whether a
/// walsender streams on each and how far its replay is behind.
pub async fn observe_slots(
    target: &Target,
    deployment: &str,
) -> Result<BTreeMap<String, Slot>, ObserveError> {
    let client = target.connect_to_read().await?;
    let rows = client
        .query(
            "SELECT s.slot_name::text, coalesce(r.state = 'streaming', false), \
                    (pg_current_wal_lsn() - r.replay_lsn)::bigint \
             FROM pg_replication_slots s \
             LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid \
             WHERE s.slot_type = 'physical' AND s.slot_name LIKE 'pgspec\\_replica\\_%' \
               AND s.slot_name <> $1 \
             ORDER BY 1",
            &[&crate::model::backup::slot_name(deployment)],
        )
        .await
        .map_err(|source| ObserveError::Query {
            database: "postgres".to_owned(),
            what: "the replicas' replication slots",
            source,
        })?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let slot: String = row.get(0);
            let lag: Option<i64> = row.get(2);
            Some((
                replica_of_slot(&slot)?.to_owned(),
                Slot {
                    streaming: row.get(1),
                    lag_bytes: lag.map(|lag| lag.max(0) as u64),
                },
            ))
        })
        .collect())
}

/// The live replication: containers, and the slots when the server
/// answered (`None`: unknown, so no slot is missing). A replica that does
/// not stream yet is read again for a few seconds (one just started).
pub async fn observe(
    docker: &Docker,
    target: &Target,
    desired: &Deployment,
    server_answered: bool,
) -> Result<Option<Replication>, ObserveError> {
    let mut replicas = observe_containers(docker, desired).await?;
    if replicas.is_empty() && desired.replication.is_none() {
        return Ok(None);
    }
    let mut slots = None;
    if server_answered {
        let mut attempts = 0;
        loop {
            let read = observe_slots(target, &desired.name).await?;
            attempts += 1;
            let settling = replicas.iter().any(|(name, replica)| {
                replica.state == ContainerState::Running
                    && read.get(name).is_some_and(|slot| !slot.streaming)
            });
            if !settling || attempts >= SETTLE_ATTEMPTS {
                slots = Some(read);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
    if let Some(slots) = &slots {
        for (name, slot) in slots {
            let replica = replicas.entry(name.clone()).or_insert_with(|| Replica {
                state: ContainerState::Missing,
                ..Replica::named(&desired.name, name)
            });
            replica.slot_exists = true;
            replica.streaming = slot.streaming;
            replica.lag_bytes = slot.lag_bytes;
        }
    } else {
        // Unknown: taken as there, so that no plan re-clones a replica
        // because the server did not answer.
        for replica in replicas.values_mut() {
            replica.slot_exists = true;
            replica.streaming = true;
        }
    }
    for replica in replicas.values_mut() {
        if replica.state == ContainerState::Running && !replica.streaming {
            replica.last_error =
                last_error(&engine::container::last_logs(docker, &replica.container).await);
        }
    }
    let role = desired
        .replication
        .as_ref()
        .map(|replication| replication.role.clone())
        .unwrap_or_default();
    Ok(Some(Replication {
        role,
        password: None,
        max_lag_bytes: None,
        replicas,
    }))
}

/// How often a running replica that does not stream is read, half a second
/// apart, before it counts as not streaming: a walreceiver whose server
/// restarted tries again every 5 s (`wal_retrieve_retry_interval`).
const SETTLE_ATTEMPTS: u32 = 24;

/// The last `FATAL` or `ERROR` line of a log tail, without its prefix.
fn last_error(logs: &str) -> Option<String> {
    logs.lines()
        .rev()
        .find_map(|line| {
            let at = line.find("FATAL:").or_else(|| line.find("ERROR:"))?;
            Some(line[at..].trim().to_owned())
        })
        .map(|line| line.chars().take(300).collect())
}

/// The settings a replica's command line gives (`-c name=value`).
fn command_settings(command: &[String]) -> BTreeMap<String, String> {
    command
        .windows(2)
        .filter(|pair| pair[0] == "-c")
        .filter_map(|pair| pair[1].split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn settings_are_read_from_the_command_line() {
        let command: Vec<String> = [
            "postgres",
            "-c",
            "max_connections=200",
            "-c",
            "work_mem=8MB",
        ]
        .map(str::to_owned)
        .into();
        let settings = super::command_settings(&command);
        assert_eq!(settings["max_connections"], "200");
        assert_eq!(settings["work_mem"], "8MB");
        assert_eq!(settings.len(), 2);
    }

    #[test]
    fn the_last_error_of_the_log_is_the_reason() {
        let logs = "last log lines of `x`:\n  | 2026-01-01 LOG:  started\n  | 2026-01-01 FATAL:  \
                    could not connect to the primary server: connection refused\n  | LOG:  waiting\n";
        assert_eq!(
            super::last_error(logs).as_deref(),
            Some("FATAL:  could not connect to the primary server: connection refused")
        );
        assert_eq!(super::last_error("  | LOG: fine\n"), None);
    }
}
