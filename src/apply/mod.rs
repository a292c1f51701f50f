//! Apply: lock, re-observe, check the fingerprint, execute in dependency
//! order, verify, report.
//!
//! Invariant: this is the only module that changes the world. It never
//! trusts a plan blindly: it refuses one whose live fingerprint has moved,
//! and when the advisory lock was not held all along (the server was not
//! running at plan time, or a replace restarted it) it plans the inside of
//! PostgreSQL again under the lock and runs only what was reviewed: anything
//! new is shown and approved again, or refuses a saved plan.

mod access;
mod batch;
pub mod data;
pub mod docker;
pub mod hint;

mod exporter;
pub mod pooler;
mod progress;
pub mod replica;
mod review;
pub mod sql;
pub mod tls;
pub mod upgrade;

use std::time::Duration;

use crate::live::{self, Connections, ObserveError, Target};
use crate::lock;
use crate::model::{Deployment, Desired};
use crate::plan::saved::fingerprint;
use crate::plan::{self, Action, ActionKind, Plan, Step, Summary};

/// How an apply behaves.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// `lock_timeout` for every DDL statement.
    pub lock_timeout: Duration,
    /// Test hook: stop after this many actions, as if cut off.
    pub stop_after: Option<usize>,
    /// Test hook: wait at a point of the apply until told to go on.
    pub pause: Option<Pause>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            lock_timeout: Duration::from_secs(5),
            stop_after: None,
            pause: None,
        }
    }
}

/// Test hook (`PGSPEC_TEST_PAUSE_AT`, `PGSPEC_TEST_PAUSE_DIR`): at `at`,
/// apply writes `paused` in `dir`, then waits until `resume` appears there,
/// so a test can act at that exact moment without guessing at timings.
#[derive(Debug, Clone)]
pub struct Pause {
    pub at: PausePoint,
    pub dir: std::path::PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PausePoint {
    /// After the container phase, before the advisory lock is taken again.
    Unlocked,
    /// Under the advisory lock, just before the actions inside PostgreSQL.
    Locked,
}

impl Pause {
    /// Reads the hook from the environment.
    pub fn from_env() -> Option<Pause> {
        let at = match std::env::var("PGSPEC_TEST_PAUSE_AT").ok()?.as_str() {
            "unlocked" => PausePoint::Unlocked,
            "locked" => PausePoint::Locked,
            _ => return None,
        };
        let dir = std::env::var_os("PGSPEC_TEST_PAUSE_DIR")?.into();
        Some(Pause { at, dir })
    }

    async fn wait(pause: &Option<Pause>, point: PausePoint) {
        let Some(pause) = pause.as_ref().filter(|pause| pause.at == point) else {
            return;
        };
        if let Err(error) = std::fs::write(pause.dir.join("paused"), b"") {
            tracing::warn!(%error, "test pause: cannot write `paused`");
            return;
        }
        // Bounded, like every wait: a test that never resumes fails the apply
        // a little later instead of hanging.
        for _ in 0..3000 {
            if pause.dir.join("resume").exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What the user approved: the plan and the live state it was made from.
/// Apply owns them, and lets go of each once it has no more use for it:
/// the live state after the fingerprint check, the plan before the
/// observation that verifies the result.
pub struct Approved<'a> {
    pub plan: Plan,
    pub live_fingerprint: String,
    /// What to do when the inside of PostgreSQL must be planned again and
    /// the new plan holds actions this one does not.
    pub again: Again<'a>,
    /// The live state the plan was made from, when it was observed under
    /// the locks this apply holds and nothing waited between the plan and
    /// the apply (`apply -f … --auto-approve`): the fingerprint check reuses
    /// it instead of observing again. `None` after a person's confirmation or
    /// for a saved plan, whose world may have moved since.
    pub observed: Option<Deployment>,
}

/// The approval of a second plan of the inside of PostgreSQL: made after the
/// container phase when the server was not running at plan time, or when
/// the advisory lock was released around a restart (someone may have
/// changed the server meanwhile).
pub enum Again<'a> {
    /// A saved plan: only what it holds runs; anything new refuses the apply.
    Refuse,
    /// Show the new plan and ask again (or take `--auto-approve`); an error
    /// means it was not approved.
    Ask(&'a (dyn Fn(&Plan) -> anyhow::Result<()> + Sync)),
}

/// What an apply did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// How many actions of each kind ran.
    pub done: Summary,
    /// What a plan against the live state after apply still shows; empty
    /// when live now matches the spec.
    pub remaining: Plan,
}

/// Why an apply stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Live state could not be read.
    #[error(transparent)]
    Observe(#[from] ObserveError),
    /// Another apply holds the lock.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// Live state changed since the plan was made.
    #[error(
        "the live deployment changed since this plan was made ({changed}); run `pgspec plan` again and review the new plan"
    )]
    Moved { changed: String, fresh: Box<Plan> },
    /// The plan holds errors.
    #[error("the plan has {0} error(s) and cannot be applied")]
    PlanErrors(usize),
    /// The second plan of the inside of PostgreSQL holds actions the saved
    /// plan did not; nothing inside PostgreSQL was changed.
    #[error(
        "the plan of the inside of PostgreSQL made after the container phase holds {} action(s) the saved plan does not; nothing inside PostgreSQL was changed",
        unreviewed.len()
    )]
    Unreviewed {
        unreviewed: Vec<String>,
        second: Box<Plan>,
    },
    /// The second plan was not approved; nothing inside PostgreSQL was changed.
    #[error("the second plan was not approved; nothing inside PostgreSQL was changed")]
    Declined(#[source] anyhow::Error),
    /// An action failed part-way.
    #[error("action {index} of {total} failed: {verb} `{address}`")]
    Action {
        index: usize,
        total: usize,
        verb: &'static str,
        address: String,
        done: Vec<(String, ActionKind)>,
        #[source]
        source: anyhow::Error,
    },
    /// The test hook cut the apply off.
    #[error("stopped after {0} action(s) by PGSPEC_TEST_STOP_AFTER")]
    Stopped(usize),
}

/// The verb an action's error message uses.
pub fn verb(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Create => "create",
        ActionKind::Update => "update",
        ActionKind::Adopt => "adopt",
        ActionKind::Replace => "replace",
        ActionKind::Upgrade => "upgrade",
        ActionKind::Delete => "delete",
        ActionKind::Restart => "restart",
    }
}

fn progressive(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Create => "creating",
        ActionKind::Update => "updating",
        ActionKind::Adopt => "adopting",
        ActionKind::Replace => "replacing",
        ActionKind::Upgrade => "upgrading",
        ActionKind::Delete => "destroying",
        ActionKind::Restart => "restarting",
    }
}

/// The past tense of an action, for reports.
pub fn past(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Create => "created",
        ActionKind::Update => "updated",
        ActionKind::Adopt => "adopted",
        ActionKind::Replace => "replaced",
        ActionKind::Upgrade => "upgraded",
        ActionKind::Delete => "destroyed",
        ActionKind::Restart => "restarted",
    }
}

fn is_container_action(action: &Action) -> bool {
    action.object == crate::model::address::ObjectKind::Container
        || plan::order::rolls_before_server(action)
}

/// Applies an approved plan to the deployment the spec describes, under
/// locks the caller took before it planned.
pub async fn apply(
    spec: &Desired,
    connections: &Connections,
    approved: Approved<'_>,
    options: &ApplyOptions,
    locks: &mut lock::ApplyLock,
) -> Result<Outcome, ApplyError> {
    let target = connections.target.clone();
    let Approved {
        plan: approved,
        live_fingerprint,
        again,
        observed,
    } = approved;

    let live = match observed {
        Some(live) => live,
        None => live::observe(spec, connections).await?,
    };
    if fingerprint(&live) != live_fingerprint {
        let fresh = plan::diff(&spec.deployment, &live, &spec.options);
        return Err(ApplyError::Moved {
            changed: review::describe_moves(&approved, &fresh),
            fresh: Box::new(fresh),
        });
    }
    drop(live);
    if !approved.errors.is_empty() {
        return Err(ApplyError::PlanErrors(approved.errors.len()));
    }

    let mut run = Run {
        spec,
        target: target.clone(),
        connections,
        expected: data::Expected::default(),
        sessions: sql::Sessions::new(target.clone(), options.lock_timeout),
        done: Vec::new(),
        total: approved.actions.len(),
        stop_after: options.stop_after,
    };

    // Container actions run first; the rest (restarts included) is the
    // inside of PostgreSQL, the pooler and backups.
    let is_outer =
        |action: &&Action| is_container_action(action) && action.kind != ActionKind::Restart;
    let container_actions: Vec<&Action> = approved.actions.iter().filter(is_outer).collect();

    // Without the advisory lock, or once it is released for a restart,
    // someone else may change the server; and a server that was not running
    // at plan time was never seen. Either way the inside is planned again
    // under the lock, and runs only what was reviewed.
    let mut unlocked = !locks.holds_advisory();
    for action in container_actions {
        if action.risk.restart || action.risk.reconnects {
            // The lock's connection dies with the server it runs on, or
            // with the network attachment it came through: the published
            // port reaches the server over one of the container's
            // networks, and reconnecting it (an alias added) drops it.
            locks.release_advisory();
            unlocked = true;
        }
        run.action(action).await?;
    }

    let second = if unlocked {
        Pause::wait(&options.pause, PausePoint::Unlocked).await;
        locks.ensure_advisory().await?;
        let live = live::observe(spec, connections).await?;
        let second = inside_plan(plan::diff(&spec.deployment, &live, &spec.options));
        if !second.errors.is_empty() {
            return Err(ApplyError::PlanErrors(second.errors.len()));
        }
        let seen = review::Seen::of(&approved);
        let unreviewed: Vec<String> = second
            .actions
            .iter()
            .filter(|action| !seen.holds(action))
            .map(|action| action.address.clone())
            .collect();
        if !unreviewed.is_empty() {
            match again {
                Again::Refuse => {
                    return Err(ApplyError::Unreviewed {
                        unreviewed,
                        second: Box::new(second),
                    });
                }
                Again::Ask(confirm) => confirm(&second).map_err(ApplyError::Declined)?,
            }
        }
        Some(second)
    } else {
        None
    };
    let inside: Vec<&Action> = match &second {
        Some(second) => second.actions.iter().collect(),
        None => approved
            .actions
            .iter()
            .filter(|action| !is_outer(action))
            .collect(),
    };
    let (restarts, inner_actions): (Vec<&Action>, Vec<&Action>) = inside
        .into_iter()
        .partition(|action| action.kind == ActionKind::Restart);
    run.total = run.done.len() + inner_actions.len() + restarts.len();

    if !inner_actions.is_empty() {
        locks.ensure_advisory().await?;
    }
    Pause::wait(&options.pause, PausePoint::Locked).await;
    locks.check_advisory(true).await?;
    let mut rest = &inner_actions[..];
    // The verifiers of the next batch's passwords, hashed on the cores while
    // the server runs the current one.
    let mut ahead: Option<batch::Ahead> = None;
    while let Some(first) = rest.first() {
        locks.check_advisory(false).await?;
        let limit = run
            .stop_after
            .map_or(usize::MAX, |stop| stop.saturating_sub(run.done.len()));
        let batched = batch::chunk(rest, limit);
        let indexes = batch::index_chunk(rest, limit);
        if batched > 1 {
            let at = inner_actions.len() - rest.len();
            let verified = match ahead.take() {
                Some(ready) if ready.at == at && ready.count == batched => ready.verifiers,
                _ => batch::Ahead::start(&rest[..batched], at).verifiers,
            };
            let next = batch::chunk(&rest[batched..], limit.saturating_sub(batched));
            if next > 1 {
                ahead = Some(batch::Ahead::start(
                    &rest[batched..batched + next],
                    at + batched,
                ));
            }
            run.batch(&rest[..batched], verified).await?;
            rest = &rest[batched..];
        } else if indexes > 1 {
            run.index_batch(&rest[..indexes]).await?;
            rest = &rest[indexes..];
        } else {
            run.action(first).await?;
            rest = &rest[1..];
        }
    }
    locks.check_advisory(true).await?;
    for action in restarts {
        locks.release_advisory();
        run.action(action).await?;
        run.sessions.reset();
    }

    // What ran is counted; the plans and the addresses are not needed to
    // verify, and at scale they are as large as what verify reads.
    let done = Summary::count(run.done.iter().map(|(_, kind)| *kind));
    drop(run);
    drop(inner_actions);
    drop(second);
    drop(approved);
    let after = live::observe(spec, connections).await?;
    let remaining = plan::diff(&spec.deployment, &after, &spec.options);
    Ok(Outcome { done, remaining })
}

/// The part of a plan that runs after the container phase: everything but
/// the container's own create, update or replace.
fn inside_plan(mut plan: Plan) -> Plan {
    plan.actions
        .retain(|action| !is_container_action(action) || action.kind == ActionKind::Restart);
    plan
}

/// State of one apply run.
struct Run<'a> {
    spec: &'a Desired,
    target: Target,
    connections: &'a Connections,
    /// What the data directory proof of a replace expects of the new server.
    expected: data::Expected,
    sessions: sql::Sessions,
    done: Vec<(String, ActionKind)>,
    total: usize,
    stop_after: Option<usize>,
}

impl Run<'_> {
    async fn action(&mut self, action: &Action) -> Result<(), ApplyError> {
        if self.stop_after == Some(self.done.len()) {
            return Err(ApplyError::Stopped(self.done.len()));
        }
        let span = tracing::info_span!("action", address = %action.address);
        let _entered = span.enter();
        tracing::info!(kind = verb(action.kind), "applying");
        crate::output::status(&format!(
            "{}: {}…",
            crate::diag::printable(&action.address),
            progressive(action.kind)
        ));
        let started = std::time::Instant::now();
        for step in &action.steps {
            if let Err(source) = self.step(step).await {
                return Err(ApplyError::Action {
                    index: self.done.len() + 1,
                    total: self.total,
                    verb: verb(action.kind),
                    address: action.address.clone(),
                    done: std::mem::take(&mut self.done),
                    source,
                });
            }
        }
        crate::output::status(&format!(
            "{}: {} after {:.1}s",
            crate::diag::printable(&action.address),
            past(action.kind),
            started.elapsed().as_secs_f64()
        ));
        self.done.push((action.address.clone(), action.kind));
        Ok(())
    }

    /// Runs consecutive actions as one transaction (`batch`); when it
    /// fails, nothing of it stays, and the actions run again one by one so
    /// that the error names the one that failed.
    async fn batch(
        &mut self,
        actions: &[&Action],
        verified: tokio::task::JoinHandle<anyhow::Result<Vec<String>>>,
    ) -> Result<(), ApplyError> {
        let first = self.done.len() + 1;
        crate::output::status(&format!(
            "actions {first}–{} of {}: {} … {}: {} in one transaction…",
            first + actions.len() - 1,
            self.total,
            crate::diag::printable(&actions[0].address),
            crate::diag::printable(&actions[actions.len() - 1].address),
            progressive(actions[0].kind)
        ));
        let started = std::time::Instant::now();
        let database = batch::database(actions[0]).flatten().map(str::to_owned);
        let verified = verified
            .await
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic.into_panic()));
        let result = match verified {
            Ok(verified) => {
                let script = batch::script(actions, verified);
                self.sessions.run_batch(&database, &script).await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            // The SQLSTATE only: the batch's text holds password verifiers,
            // and a message may quote a piece of it.
            let code = error
                .downcast_ref::<tokio_postgres::Error>()
                .and_then(tokio_postgres::Error::code)
                .map(|code| code.code().to_owned());
            tracing::info!(
                sqlstate = code.as_deref().unwrap_or("none"),
                "the batch failed and was rolled back; running its actions one by one"
            );
            for action in actions {
                self.action(action).await?;
            }
            return Ok(());
        }
        let seconds = started.elapsed().as_secs_f64();
        for action in actions {
            crate::output::status(&format!(
                "{}: {} after {seconds:.1}s (one transaction of {} actions)",
                crate::diag::printable(&action.address),
                past(action.kind),
                actions.len()
            ));
            self.done.push((action.address.clone(), action.kind));
        }
        Ok(())
    }

    /// Builds the indexes of small tables (`batch::index_chunk`) in one
    /// transaction; when a table grew or anything fails, nothing of it
    /// stays and the actions run one by one.
    async fn index_batch(&mut self, actions: &[&Action]) -> Result<(), ApplyError> {
        let builds: Vec<batch::SmallBuild> = actions
            .iter()
            .filter_map(|action| batch::small_build(action))
            .collect();
        let first = self.done.len() + 1;
        crate::output::status(&format!(
            "actions {first}–{} of {}: {} … {}: {} in one transaction…",
            first + actions.len() - 1,
            self.total,
            crate::diag::printable(&actions[0].address),
            crate::diag::printable(&actions[actions.len() - 1].address),
            progressive(actions[0].kind)
        ));
        let started = std::time::Instant::now();
        let mut tables: Vec<(&str, i64)> = builds
            .iter()
            .map(|build| (build.table, build.max_bytes))
            .collect();
        tables.sort_unstable();
        tables.dedup_by_key(|(table, _)| *table);
        let statements: Vec<String> = builds
            .iter()
            .flat_map(|build| build.statements.iter().cloned())
            .collect();
        let database = builds[0].database.to_owned();
        let built = {
            let run = self
                .sessions
                .build_small_indexes(&database, &tables, &statements);
            progress::watched(&self.target, Some(&database), run).await
        };
        if !matches!(built, Ok(true)) {
            tracing::info!(
                "the batch of index builds was rolled back (a table grew or a statement \
                 failed); building them one by one"
            );
            for action in actions {
                self.action(action).await?;
            }
            return Ok(());
        }
        let seconds = started.elapsed().as_secs_f64();
        for action in actions {
            crate::output::status(&format!(
                "{}: {} after {seconds:.1}s (one transaction of {} actions)",
                crate::diag::printable(&action.address),
                past(action.kind),
                actions.len()
            ));
            self.done.push((action.address.clone(), action.kind));
        }
        Ok(())
    }

    async fn step(&mut self, step: &Step) -> anyhow::Result<()> {
        match step {
            Step::Sql {
                database,
                statements,
                transaction,
            } => {
                let run = self.sessions.run(database, statements, *transaction);
                progress::watched(&self.target, database.as_deref(), run).await
            }
            Step::SetPassword { role, secret } => self.sessions.set_password(role, secret).await,
            Step::StampIndex {
                deployment,
                database,
                schema,
                name,
                spec,
            } => {
                let statement = crate::plan::diff::stamp_statement(deployment, schema, name, spec);
                self.sessions
                    .run(&Some(database.clone()), &[statement], false)
                    .await
            }
            Step::BuildIndex {
                database,
                table,
                max_bytes,
                statements,
                concurrently,
            } => {
                let target = self.target.clone();
                let sessions = &mut self.sessions;
                let run = async {
                    if sessions
                        .build_small_index(database, table, *max_bytes, statements)
                        .await?
                    {
                        return Ok(());
                    }
                    tracing::info!(
                        table,
                        max_bytes,
                        "the table grew past the plain build's limit since the plan; \
                         building concurrently"
                    );
                    sessions
                        .run(&Some(database.clone()), concurrently, false)
                        .await
                };
                progress::watched(&target, Some(database), run).await
            }
            Step::CreateExtension {
                database,
                name,
                statement,
                mark,
            } => {
                let mut statements = vec![statement.clone()];
                if let Some(mark) = mark {
                    statements.push(format!(
                        "COMMENT ON EXTENSION {} IS {}",
                        crate::sql::quote_ident(name),
                        crate::sql::quote_literal(mark)
                    ));
                }
                let run = self.sessions.create_extension(database, name, &statements);
                progress::watched(&self.target, Some(database), run)
                    .await
                    .map(|_| ())
            }
            Step::WriteAccessRules { container, rules } => {
                let docker = self.connections.engine()?;
                access::write(docker, container, rules, &self.target).await
            }
            Step::Docker(call) => {
                let docker = self.connections.engine()?;
                if matches!(call, plan::DockerStep::RemoveContainer { .. }) {
                    // Connections to the old server die with it.
                    self.sessions.reset();
                }
                docker::run(
                    docker,
                    &self.spec.deployment.name,
                    call,
                    &self.target,
                    &mut self.expected,
                )
                .await
            }
        }
    }
}
