//! Progress of SQL steps that take a while: an index build reports its
//! phase and the blocks and tuples done; a statement waiting for a lock
//! reports whose lock it is.
//!
//! A step that finishes within [`QUIET`] costs nothing but a timer. After
//! that, a second connection to the step's database polls
//! `pg_stat_activity`, `pg_stat_progress_create_index`, `pg_locks` and
//! `pg_blocking_pids` for pgspec's busy backend, and prints a status line on
//! stderr whenever the phase or the lock waited for changes, and at least
//! every [`REPEAT`]. When the step fails after waiting for a lock, the error
//! says which lock and which session held it. The watcher only reads; if it
//! cannot connect it stays silent, and the step is never affected.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::live::Target;

/// How long a step runs before it is watched.
const QUIET: Duration = Duration::from_millis(200);
/// How often a watched step is polled.
const POLL: Duration = Duration::from_millis(100);
/// How often an unchanged status line is repeated.
const REPEAT: Duration = Duration::from_secs(5);

/// Runs `work` (a SQL step in `database`, `None` for the maintenance
/// database) and reports its progress meanwhile.
pub async fn watched<T>(
    target: &Target,
    database: Option<&str>,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let last_wait = Mutex::new(None::<String>);
    let result = {
        let target = match database {
            Some(name) => target.with_database(name),
            None => target.clone(),
        };
        let watch = watch(&target, &last_wait);
        tokio::pin!(work);
        tokio::pin!(watch);
        tokio::select! {
            result = &mut work => result,
            never = &mut watch => match never {},
        }
    };
    let last_wait = last_wait
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match (result, last_wait) {
        (Err(error), Some(wait)) => Err(error.context(format!("waited for {wait}"))),
        (result, _) => result,
    }
}

/// Polls until dropped.
async fn watch(target: &Target, last_wait: &Mutex<Option<String>>) -> Infallible {
    tokio::time::sleep(QUIET).await;
    let client = match target.connect().await {
        Ok(client) => client,
        Err(error) => {
            tracing::debug!(%error, "no connection to watch progress");
            return std::future::pending().await;
        }
    };
    let mut shown: Option<(String, Instant)> = None;
    loop {
        match poll(&client).await {
            Ok(Some(status)) => {
                if let Some(wait) = &status.wait {
                    *last_wait
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(wait.clone());
                }
                let key = status.key();
                let repeat = shown
                    .as_ref()
                    .is_none_or(|(last, at)| *last != key || at.elapsed() >= REPEAT);
                if repeat {
                    crate::output::status(&format!("  {}", status.line()));
                    shown = Some((key, Instant::now()));
                }
            }
            Ok(None) => {}
            Err(error) => tracing::debug!(%error, "cannot read progress"),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What pgspec's busy backend is doing.
struct Status {
    /// `building index "idx" on "t"` or `running`.
    subject: String,
    phase: Option<String>,
    /// `blocks 10/20 (50%), tuples 0/0`.
    counts: Option<String>,
    /// `a ShareLock on table `t`, held by pid 80 (idle in transaction,
    /// transaction open for 4.1s, last statement `LOCK TABLE t IN SHARE
    /// MODE`)`.
    wait: Option<String>,
    /// The lock and its holder, without what changes from poll to poll.
    wait_key: Option<String>,
}

impl Status {
    /// What decides whether a line is new.
    fn key(&self) -> String {
        format!("{}|{:?}|{:?}", self.subject, self.phase, self.wait_key)
    }

    fn line(&self) -> String {
        let mut line = self.subject.clone();
        if let Some(phase) = &self.phase {
            line.push_str(&format!(": {phase}"));
        }
        if let Some(counts) = &self.counts {
            line.push_str(&format!(", {counts}"));
        }
        if let Some(wait) = &self.wait {
            line.push_str(&format!("; waiting for {wait}"));
        }
        line
    }
}

async fn poll(client: &Client) -> Result<Option<Status>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT p.index_relid::regclass::text, p.relid::regclass::text, p.phase, \
                    p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total, \
                    w.mode, w.locktype, w.relation, w.virtualxid, \
                    b.pid, b.state, \
                    extract(epoch FROM now() - b.xact_start)::float8, left(b.query, 120) \
             FROM pg_stat_activity a \
             LEFT JOIN pg_stat_progress_create_index p ON p.pid = a.pid \
             LEFT JOIN LATERAL ( \
                 SELECT l.mode, l.locktype, l.relation::regclass::text AS relation, \
                        l.virtualxid \
                 FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted LIMIT 1) w ON true \
             LEFT JOIN LATERAL ( \
                 SELECT s.pid, s.state, s.xact_start, s.query FROM pg_stat_activity s \
                 WHERE s.pid = ANY (pg_blocking_pids(a.pid)) \
                 ORDER BY s.xact_start NULLS LAST LIMIT 1) b ON true \
             WHERE a.datname = current_database() AND a.application_name = 'pgspec' \
               AND a.state = 'active' AND a.pid <> pg_backend_pid() \
               AND a.backend_type = 'client backend' \
             ORDER BY p.pid IS NULL, a.pid LIMIT 1",
            &[],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let index: Option<String> = row.get(0);
    let table: Option<String> = row.get(1);
    let phase: Option<String> = row.get(2);
    let counts = phase.as_ref().and_then(|_| {
        let blocks_done: i64 = row.get(3);
        let blocks_total: i64 = row.get(4);
        let tuples_done: i64 = row.get(5);
        let tuples_total: i64 = row.get(6);
        if blocks_total == 0 && tuples_total == 0 {
            return None;
        }
        let mut counts = format!("blocks {blocks_done}/{blocks_total}");
        if blocks_total > 0 {
            counts.push_str(&format!(" ({}%)", blocks_done * 100 / blocks_total));
        }
        counts.push_str(&format!(", tuples {tuples_done}/{tuples_total}"));
        Some(counts)
    });
    let subject = match (&index, &table) {
        (Some(index), Some(table)) if index != "-" && index != "0" => {
            format!("building index `{index}` on `{table}`")
        }
        (_, Some(table)) => format!("building an index on `{table}`"),
        _ => "running".to_owned(),
    };
    let mode: Option<String> = row.get(7);
    let wait_key = mode.as_ref().map(|mode| {
        let relation: Option<String> = row.get(9);
        let virtualxid: Option<String> = row.get(10);
        let blocker: Option<i32> = row.get(11);
        format!("{mode}|{relation:?}|{virtualxid:?}|{blocker:?}")
    });
    let wait = mode.map(|mode| {
        let locktype: String = row.get(8);
        let relation: Option<String> = row.get(9);
        let virtualxid: Option<String> = row.get(10);
        let mut wait = match (locktype.as_str(), relation, virtualxid) {
            ("relation", Some(relation), _) => format!("a {mode} on table `{relation}`"),
            ("virtualxid", _, Some(virtualxid)) => {
                format!("transaction {virtualxid} to end ({mode})")
            }
            (locktype, _, _) => format!("a {mode} ({locktype})"),
        };
        let blocker: Option<i32> = row.get(11);
        if let Some(blocker) = blocker {
            let state: Option<String> = row.get(12);
            let seconds: Option<f64> = row.get(13);
            let query: Option<String> = row.get(14);
            wait.push_str(&format!(", held by pid {blocker}"));
            let mut about = Vec::new();
            if let Some(state) = state {
                about.push(match seconds {
                    Some(seconds) => format!("{state}, transaction open for {seconds:.1}s"),
                    None => state,
                });
            }
            if let Some(query) = query.filter(|query| !query.is_empty()) {
                about.push(format!("last statement `{}`", query.trim()));
            }
            if !about.is_empty() {
                wait.push_str(&format!(" ({})", about.join(", ")));
            }
        }
        wait
    });
    Ok(Some(Status {
        subject,
        phase,
        counts,
        wait,
        wait_key,
    }))
}
