//! Apply: lock, re-observe, check the fingerprint, execute in dependency
//! order, verify, report.
//!
//! Invariant: this is the only module that changes the world. It never
//! trusts a plan blindly: it refuses one whose live fingerprint has moved,
//! and after the container phase it plans the inside of PostgreSQL again
//! against what is then live.

pub mod docker;
pub mod hint;
pub mod lock;
pub mod pooler;
mod progress;
pub mod sql;

use std::time::Duration;

use crate::live::{self, ObserveError, Target};
use crate::plan::saved::fingerprint;
use crate::plan::{self, Action, ActionKind, Plan, Step};
use crate::spec::Spec;

/// How an apply behaves.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// `lock_timeout` for every DDL statement.
    pub lock_timeout: Duration,
    /// Test hook: stop after this many actions, as if cut off.
    pub stop_after: Option<usize>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            lock_timeout: Duration::from_secs(5),
            stop_after: None,
        }
    }
}

/// What the user approved: the plan and the live state it was made from.
#[derive(Debug, Clone)]
pub struct Approved<'a> {
    pub plan: &'a Plan,
    pub live_fingerprint: &'a str,
}

/// What an apply did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Addresses and kinds of the actions that ran, in order.
    pub done: Vec<(String, ActionKind)>,
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
    /// The Docker Engine could not be reached.
    #[error("cannot connect to the Docker Engine")]
    Docker(#[source] ObserveError),
    /// Live state changed since the plan was made.
    #[error(
        "the live deployment changed since this plan was made ({changed}); run `pgspec plan` again and review the new plan"
    )]
    Moved { changed: String, fresh: Box<Plan> },
    /// The plan holds errors.
    #[error("the plan has {0} error(s) and cannot be applied")]
    PlanErrors(usize),
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
        ActionKind::Replace => "replace",
        ActionKind::Delete => "delete",
        ActionKind::Restart => "restart",
    }
}

fn progressive(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Create => "creating",
        ActionKind::Update => "updating",
        ActionKind::Replace => "replacing",
        ActionKind::Delete => "destroying",
        ActionKind::Restart => "restarting",
    }
}

/// The past tense of an action, for reports.
pub fn past(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Create => "created",
        ActionKind::Update => "updated",
        ActionKind::Replace => "replaced",
        ActionKind::Delete => "destroyed",
        ActionKind::Restart => "restarted",
    }
}

fn is_container_action(action: &Action) -> bool {
    action.address.starts_with("container.")
}

/// Applies an approved plan to the deployment the spec describes, under
/// locks the caller took before it planned.
pub async fn apply(
    spec: &Spec,
    approved: Approved<'_>,
    options: &ApplyOptions,
    locks: &mut lock::ApplyLock,
) -> Result<Outcome, ApplyError> {
    let target = Target::resolve(spec)?;

    let live = live::observe(spec).await?;
    let fresh = plan::diff(&spec.deployment, &live, &spec.options);
    if fingerprint(&live) != approved.live_fingerprint {
        return Err(ApplyError::Moved {
            changed: describe_moves(approved.plan, &fresh),
            fresh: Box::new(fresh),
        });
    }
    if !approved.plan.errors.is_empty() {
        return Err(ApplyError::PlanErrors(approved.plan.errors.len()));
    }

    let mut run = Run {
        spec,
        target: target.clone(),
        docker: None,
        sessions: sql::Sessions::new(target.clone(), options.lock_timeout),
        done: Vec::new(),
        total: approved.plan.actions.len(),
        stop_after: options.stop_after,
    };

    let (container_actions, mut inner_actions): (Vec<&Action>, Vec<&Action>) = approved
        .plan
        .actions
        .iter()
        .filter(|action| action.kind != ActionKind::Restart)
        .partition(|action| is_container_action(action));
    let mut restarts: Vec<&Action> = approved
        .plan
        .actions
        .iter()
        .filter(|action| action.kind == ActionKind::Restart)
        .collect();

    for action in container_actions {
        if action.risk.restart {
            // The lock's connection dies with the server it runs on.
            locks.release_advisory();
        }
        run.action(action).await?;
    }

    // The inside of PostgreSQL was planned against a server that was not
    // running; plan it again now that it is.
    let replanned;
    if live.server.is_none() && !run.done.is_empty() {
        let live = live::observe(spec).await?;
        replanned = plan::diff(&spec.deployment, &live, &spec.options);
        inner_actions = replanned
            .actions
            .iter()
            .filter(|action| !is_container_action(action) && action.kind != ActionKind::Restart)
            .collect();
        restarts = replanned
            .actions
            .iter()
            .filter(|action| action.kind == ActionKind::Restart)
            .collect();
        run.total = run.done.len() + inner_actions.len() + restarts.len();
    }
    if !inner_actions.is_empty() {
        locks.ensure_advisory().await?;
    }

    for action in inner_actions {
        run.action(action).await?;
    }
    for action in restarts {
        locks.release_advisory();
        run.action(action).await?;
        run.sessions.reset();
    }

    let after = live::observe(spec).await?;
    let remaining = plan::diff(&spec.deployment, &after, &spec.options);
    Ok(Outcome {
        done: run.done,
        remaining,
    })
}

/// Which addresses differ between the approved and a fresh plan.
fn describe_moves(approved: &Plan, fresh: &Plan) -> String {
    let mut moved: Vec<String> = Vec::new();
    for action in &fresh.actions {
        if !approved.actions.contains(action) {
            moved.push(action.address.clone());
        }
    }
    for action in &approved.actions {
        if !fresh.actions.contains(action) && !moved.contains(&action.address) {
            moved.push(action.address.clone());
        }
    }
    if moved.is_empty() {
        "objects outside the plan's actions changed".to_owned()
    } else {
        format!("now different: {}", moved.join(", "))
    }
}

/// State of one apply run.
struct Run<'a> {
    spec: &'a Spec,
    target: Target,
    docker: Option<bollard::Docker>,
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
            action.address,
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
            action.address,
            past(action.kind),
            started.elapsed().as_secs_f64()
        ));
        self.done.push((action.address.clone(), action.kind));
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
                database,
                schema,
                name,
                spec,
            } => {
                let statement = crate::plan::diff::stamp_statement(schema, name, spec);
                self.sessions
                    .run(&Some(database.clone()), &[statement], false)
                    .await
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
            Step::Docker(call) => {
                if self.docker.is_none() {
                    self.docker = Some(
                        live::docker::connect()
                            .await
                            .map_err(ApplyError::Docker)
                            .map_err(anyhow::Error::from)?,
                    );
                }
                let docker = self
                    .docker
                    .as_ref()
                    .unwrap_or_else(|| unreachable!("connected above"));
                if matches!(call, plan::DockerStep::RemoveContainer { .. }) {
                    // Connections to the old server die with it.
                    self.sessions.reset();
                }
                docker::run(docker, &self.spec.deployment.name, call, &self.target).await
            }
        }
    }
}
