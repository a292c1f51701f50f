//! The loop of `pgspec backup agent schedule`: asks `cron` what is due
//! next, sleeps until then, takes the due backups one after another, and
//! stops on SIGTERM or SIGINT, even in the middle of a backup.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Utc;

use super::cron::{Next, Schedules};
use super::take::take_and_prune;
use crate::backup::AgentConfig;

/// The longest the scheduler sleeps before it looks at the clock again.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// Runs the schedules until SIGTERM or SIGINT: sleeps until the next due
/// time, takes the due backups one after another, prunes, repeats. A
/// backup that overruns the next time skips it rather than queueing.
pub async fn schedule(config: &AgentConfig, root: &Path) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let schedules = Schedules::parse(config)?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    crate::output::status(&format!(
        "pgspec backup agent {}: {} schedule(s) for `{}`: {}",
        env!("CARGO_PKG_VERSION"),
        config.schedules.len(),
        config.deployment,
        schedules.describe()
    ));
    // WAL streaming runs beside the schedules for as long as the agent
    // does; its `pg_receivewal` is killed with the task.
    let streams = config
        .schedules
        .values()
        .any(|schedule| schedule.kind == "physical");
    if !streams {
        let config = config.clone();
        tokio::spawn(async move { super::physical::drop_abandoned_slot(&config).await });
    }
    let _archiver = streams.then(|| {
        let config = config.clone();
        let root = root.to_path_buf();
        AbortOnDrop(tokio::spawn(async move {
            super::physical::archive(&config, &root).await;
        }))
    });
    let _restore_tests = config
        .schedules
        .values()
        .any(|schedule| schedule.verify.is_some())
        .then(|| {
            AbortOnDrop(tokio::spawn(super::scheduled::run_schedules(
                config.clone(),
                root.to_path_buf(),
            )))
        });
    let mut after = Utc::now();
    loop {
        let Next { due, stuck } = schedules.next_after(after);
        for (schedule, error) in stuck {
            crate::output::status(&format!(
                "schedule `{}`: no next run time: {error}",
                schedule.name
            ));
        }
        let Some((next, due)) = due else {
            bail!("no schedule has a next run time");
        };
        // Sleep in short steps against the wall clock, so a suspended host
        // or a clock step delays a backup by at most one step.
        while let Ok(wait) = (next - Utc::now()).to_std() {
            if wait.is_zero() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait.min(MAX_SLEEP)) => {}
                _ = terminate.recv() => return Ok(()),
                _ = interrupt.recv() => return Ok(()),
            }
        }
        for schedule in due {
            // A stop during a backup ends it at once (its dump tools are
            // killed with it), so `docker stop` never waits out its
            // timeout. The directory has no manifest yet: retention never
            // removes it, and `backup list` shows it as incomplete.
            let result = tokio::select! {
                result = take_and_prune(config, schedule, root) => result,
                _ = terminate.recv() => return Ok(()),
                _ = interrupt.recv() => return Ok(()),
            };
            if let Err(error) = result {
                crate::output::status(&format!("schedule `{}`: {error:#}", schedule.name));
            }
        }
        // Never the same minute twice, even when the clock lags the timer.
        after = next.max(Utc::now());
    }
}

/// A task aborted when dropped, so the archiver ends with the scheduler.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
