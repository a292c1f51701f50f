//! Consecutive actions whose statements can share a transaction — roles,
//! memberships, grants, default privileges, schemas and their comments —
//! run as one transaction sent in one round trip, in chunks of at most
//! [`CHUNK_STATEMENTS`] statements. The passwords of a chunk's roles are
//! hashed into SCRAM verifiers on every core first.
//!
//! A chunk that fails is rolled back whole and its actions run again one by
//! one, as they would without batching, so the error names the action that
//! failed, lock waits are retried, and the actions before it stay applied.
//! Progress lines are printed only for what committed.

use crate::model::address::ObjectKind;
use crate::plan::{Action, Step};
use crate::secret::Secret;

/// The most statements one batch holds.
pub const CHUNK_STATEMENTS: usize = 500;

/// The database an action's statements all run in, when the action can
/// join a batch: only statements that may run inside a transaction, all in
/// one database (`None` is the maintenance database).
pub fn database(action: &Action) -> Option<Option<&str>> {
    if !matches!(
        action.object,
        ObjectKind::Role
            | ObjectKind::Membership
            | ObjectKind::Grant
            | ObjectKind::DefaultPrivilege
            | ObjectKind::Schema
    ) {
        return None;
    }
    let mut database: Option<Option<&str>> = None;
    for step in &action.steps {
        let here = match step {
            Step::Sql {
                database,
                transaction: true,
                ..
            } => database.as_deref(),
            Step::SetPassword { .. } => None,
            _ => return None,
        };
        match database {
            None => database = Some(here),
            Some(seen) if seen == here => {}
            Some(_) => return None,
        }
    }
    database
}

/// How many statements an action adds to a batch.
fn statements(action: &Action) -> usize {
    action
        .steps
        .iter()
        .map(|step| match step {
            Step::Sql { statements, .. } => statements.len(),
            _ => 1,
        })
        .sum()
}

/// How many of `actions`, from the first, form one batch: consecutive
/// batchable actions on one database, at most [`CHUNK_STATEMENTS`]
/// statements (one action at least) and at most `limit` actions. 0 or 1
/// means the first action runs on its own.
pub fn chunk(actions: &[&Action], limit: usize) -> usize {
    let Some(first) = actions.first().and_then(|action| database(action)) else {
        return 0;
    };
    let mut count = 0;
    let mut total = 0;
    for action in actions.iter().take(limit) {
        if database(action) != Some(first) {
            break;
        }
        let size = statements(action);
        if count > 0 && total + size > CHUNK_STATEMENTS {
            break;
        }
        total += size;
        count += 1;
    }
    count
}

/// One placeholder per password of `actions`, in order, to be filled by
/// [`verifiers`].
pub fn passwords(actions: &[&Action]) -> Vec<(String, Secret)> {
    actions
        .iter()
        .flat_map(|action| &action.steps)
        .filter_map(|step| match step {
            Step::SetPassword { role, secret } => Some((role.clone(), secret.clone())),
            _ => None,
        })
        .collect()
}

/// The `ALTER ROLE … PASSWORD` statements of `passwords`, their SCRAM
/// verifiers computed on every core.
pub fn verifiers(passwords: &[(String, Secret)]) -> anyhow::Result<Vec<String>> {
    let threads = std::thread::available_parallelism().map_or(1, |count| count.get());
    let chunk = passwords.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = passwords
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(role, secret)| super::sql::password_statement(role, secret))
                        .collect::<anyhow::Result<Vec<String>>>()
                })
            })
            .collect();
        let mut statements = Vec::with_capacity(passwords.len());
        for worker in workers {
            statements.extend(
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?,
            );
        }
        Ok(statements)
    })
}

/// The password statements of one batch, being hashed on a blocking
/// thread: started for the next batch while the server runs the current
/// one, so PBKDF2 on the client overlaps the server's work.
pub struct Ahead {
    /// Where the batch starts among the actions inside PostgreSQL.
    pub at: usize,
    /// How many actions it holds.
    pub count: usize,
    pub verifiers: tokio::task::JoinHandle<anyhow::Result<Vec<String>>>,
}

impl Ahead {
    /// Starts hashing the passwords of `actions`, the batch at `at`.
    pub fn start(actions: &[&Action], at: usize) -> Ahead {
        let passwords = passwords(actions);
        Ahead {
            at,
            count: actions.len(),
            verifiers: tokio::task::spawn_blocking(move || verifiers(&passwords)),
        }
    }
}

/// The statements of `actions` in order, the passwords taken from
/// `verified` (as many as [`passwords`] found).
pub fn script(actions: &[&Action], verified: Vec<String>) -> Vec<String> {
    let mut verified = verified.into_iter();
    let mut script = Vec::new();
    for step in actions.iter().flat_map(|action| &action.steps) {
        match step {
            Step::Sql { statements, .. } => script.extend(statements.iter().cloned()),
            Step::SetPassword { .. } => script.extend(verified.next()),
            _ => {}
        }
    }
    script
}

/// The most index builds one transaction holds: each keeps its table's
/// SHARE lock (writes wait) until the transaction commits.
pub const CHUNK_INDEXES: usize = 100;

/// The plain build of a small table's index (`Step::BuildIndex` then its
/// stamp): the database, the table, its limit, and the statements that
/// build and stamp the index.
pub struct SmallBuild<'a> {
    pub database: &'a str,
    pub table: &'a str,
    pub max_bytes: i64,
    pub statements: Vec<String>,
}

/// An action that is exactly a plain build and its stamp.
pub fn small_build(action: &Action) -> Option<SmallBuild<'_>> {
    let [
        Step::BuildIndex {
            database,
            table,
            max_bytes,
            statements,
            ..
        },
        Step::StampIndex {
            deployment,
            database: stamped_in,
            schema,
            name,
            spec,
        },
    ] = action.steps.as_slice()
    else {
        return None;
    };
    (database == stamped_in).then(|| {
        let mut statements = statements.clone();
        statements.push(crate::plan::diff::stamp_statement(
            deployment, schema, name, spec,
        ));
        SmallBuild {
            database,
            table,
            max_bytes: *max_bytes,
            statements,
        }
    })
}

/// How many of `actions`, from the first, are plain builds on one database
/// that share a transaction: at most [`CHUNK_INDEXES`] and `limit`.
pub fn index_chunk(actions: &[&Action], limit: usize) -> usize {
    let Some(first) = actions.first().and_then(|action| small_build(action)) else {
        return 0;
    };
    actions
        .iter()
        .take(limit.min(CHUNK_INDEXES))
        .take_while(|action| {
            small_build(action).is_some_and(|build| build.database == first.database)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ActionKind, Risk};

    fn action(object: ObjectKind, database: Option<&str>, statements: usize) -> Action {
        Action {
            address: format!("{object:?}"),
            object,
            kind: ActionKind::Create,
            reason: String::new(),
            risk: Risk::default(),
            changes: Vec::new(),
            steps: vec![Step::Sql {
                database: database.map(str::to_owned),
                statements: vec!["SELECT 1".to_owned(); statements],
                transaction: true,
            }],
        }
    }

    #[test]
    fn chunks_stop_at_another_database_kind_or_size() {
        let role = action(ObjectKind::Role, None, 2);
        let grant = action(ObjectKind::Grant, Some("app"), 1);
        let index = action(ObjectKind::Index, Some("app"), 1);
        assert_eq!(chunk(&[&role, &role, &grant], usize::MAX), 2);
        assert_eq!(chunk(&[&grant, &grant, &index, &grant], usize::MAX), 2);
        assert_eq!(chunk(&[&index, &grant], usize::MAX), 0);
        assert_eq!(chunk(&[&role, &role, &role], 2), 2);
        let many: Vec<&Action> = std::iter::repeat_n(&role, CHUNK_STATEMENTS).collect();
        assert_eq!(chunk(&many, usize::MAX), CHUNK_STATEMENTS / 2);
        let huge = action(ObjectKind::Grant, Some("app"), CHUNK_STATEMENTS + 1);
        assert_eq!(chunk(&[&huge, &grant], usize::MAX), 1);
        let outside = Action {
            steps: vec![Step::Sql {
                database: None,
                statements: vec!["ALTER SYSTEM SET x = 1".to_owned()],
                transaction: false,
            }],
            ..role.clone()
        };
        assert_eq!(chunk(&[&outside, &role], usize::MAX), 0);
    }
}
