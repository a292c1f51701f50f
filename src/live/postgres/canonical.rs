//! The server's reading of desired indexes.
//!
//! A desired index is compared with the live one the way the server writes
//! it, not as text: `(lower(url))` and `lower(url)`, `state <> 'done'` and
//! `(state <> 'done'::text)`, a default operator class named or not, all
//! print the same once PostgreSQL has parsed them. Rather than re-implement
//! PostgreSQL's deparser, the server canonicalises each desired definition:
//! in one transaction that is always rolled back, pgspec creates a temporary
//! table per indexed table with the same column names, types and collations
//! (read from `pg_attribute`), builds every desired index on that empty copy
//! under a scratch name, and reads back `pg_get_indexdef`. Replacing the
//! scratch name and table with the real ones gives exactly what
//! `pg_get_indexdef` would print for the desired index on the real table.
//! That text depends only on the column definitions and the index's own
//! definition, so tables whose columns are defined alike share one scratch
//! table, and the same definition on them one scratch build: a schema per
//! tenant, or partitions, cost one build per shape of index, not one per
//! table.
//!
//! Why a column-list copy and not `CREATE INDEX` on the real table or
//! `LIKE`: building on the real table costs a full scan and a SHARE lock,
//! and `LIKE` takes a lock on the real table that waits behind any ACCESS
//! EXCLUSIVE holder; reading `pg_attribute` takes no lock on the table at
//! all. The temporary objects never outlive the transaction, so nothing is
//! written.
//!
//! The spec's expressions and predicates are untrusted text, and `plan` and
//! `drift` must never run a statement smuggled into them. So each scratch
//! statement is sent on its own through the extended protocol, which the
//! server parses as exactly one statement (a second one is a syntax error,
//! never run); there is no `DO` block and no `EXECUTE`. The transaction sets
//! `statement_timeout` and `lock_timeout`, builds the indexes as a role
//! with no privileges beyond PUBLIC's when pgspec is connected as a
//! superuser (see `scratch_role`), and is always rolled back. The
//! statements are pipelined — sent without waiting for each answer — so a
//! database's indexes take a few round trips, not one per index. Each index
//! is built under a savepoint that is rolled back once it is read: one the
//! server rejects (an unknown column, an operator class that does not
//! exist) records SQLSTATE and message instead of a definition, and the
//! other indexes are unaffected.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Client;

use super::query_error;
use crate::live::ObserveError;
use crate::model::{Database, Index, IndexCheck};
use crate::sql::{quote_ident, quote_literal};

/// A table as the scratch copy needs it.
#[derive(Debug, Default)]
struct Table {
    /// `r`, `p` or `m` can be indexed; anything else cannot.
    kind: String,
    /// Column definitions, quoted and comma-separated:
    /// `"url" text COLLATE "pg_catalog"."default", "id" int8`.
    columns: String,
    /// Size on disk as of the last VACUUM or ANALYZE (`relpages`; not
    /// `pg_relation_size()`, which would wait behind an ACCESS EXCLUSIVE
    /// lock on the table).
    bytes: i64,
}

/// Reads the columns of the tables desired indexes are on.
async fn observe_tables(
    client: &Client,
    database: &str,
    tables: &BTreeSet<(String, String)>,
) -> Result<BTreeMap<(String, String), Table>, ObserveError> {
    let schemas: Vec<&str> = tables.iter().map(|(schema, _)| schema.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|(_, name)| name.as_str()).collect();
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, c.relkind::text, a.attname::text, \
                    format_type(a.atttypid, a.atttypmod), cn.nspname::text, co.collname::text, \
                    c.relpages::int8 * current_setting('block_size')::int8 \
             FROM unnest($1::text[], $2::text[]) AS wanted(schema_name, table_name) \
             JOIN pg_namespace n ON n.nspname = wanted.schema_name \
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = wanted.table_name \
             LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 \
                  AND NOT a.attisdropped \
             LEFT JOIN pg_collation co ON co.oid = a.attcollation \
             LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace \
             ORDER BY 1, 2, a.attnum",
            &[&schemas, &names],
        )
        .await
        .map_err(query_error("indexed tables", database))?;
    let mut found: BTreeMap<(String, String), Table> = BTreeMap::new();
    for row in rows {
        let table = found.entry((row.get(0), row.get(1))).or_default();
        table.kind = row.get(2);
        table.bytes = row.get(7);
        let column: Option<String> = row.get(3);
        let Some(column) = column else { continue };
        let column_type: String = row.get(4);
        let mut definition = format!("{} {column_type}", quote_ident(&column));
        let collation_schema: Option<String> = row.get(5);
        let collation: Option<String> = row.get(6);
        if let (Some(collation_schema), Some(collation)) = (collation_schema, collation) {
            definition.push_str(&format!(
                " COLLATE {}.{}",
                quote_ident(&collation_schema),
                quote_ident(&collation)
            ));
        }
        if !table.columns.is_empty() {
            table.columns.push_str(", ");
        }
        table.columns.push_str(&definition);
    }
    Ok(found)
}

/// The statement that builds an index (`Index::definition_parts`) under
/// the scratch name of build `position` on a scratch table.
fn scratch_statement(create: &str, rest: &str, position: usize, scratch_table: &str) -> String {
    format!("{create}INDEX pgspec_canonical_index_{position} ON pg_temp.{scratch_table} {rest}")
}

/// A scratch table to build and the desired indexes built on it.
#[derive(Debug, Clone)]
struct ScratchTable {
    /// Names the scratch table: `pgspec_canonical_table_{number}`.
    number: usize,
    /// Its `CREATE TEMP TABLE` statement; no spec text is in it, only
    /// quoted names and types read from the catalogs.
    create: String,
    /// The 1-based position of each desired index on it (which names the
    /// scratch index) and the `CREATE INDEX` statement that builds it.
    indexes: Vec<(usize, String)>,
}

/// What the server made of one desired index built on a scratch table.
#[derive(Debug, Clone)]
enum Outcome {
    /// Its `pg_get_indexdef`, and the name of the session's temporary
    /// schema, which that text may use for the scratch table.
    Built {
        definition: String,
        temp_schema: String,
    },
    /// The server refused to build it.
    Rejected { code: String, message: String },
}

impl Outcome {
    fn rejected(error: &tokio_postgres::Error) -> Option<Outcome> {
        let error = error.as_db_error()?;
        Some(Outcome::Rejected {
            code: error.code().code().to_owned(),
            message: error.message().to_owned(),
        })
    }
}

/// How many scratch relations (tables and indexes) one canonicalising
/// transaction creates at most; see `check_desired`.
const RELATIONS_PER_TRANSACTION: usize = 1000;

/// Bounds every statement of a canonicalising transaction: building an
/// index on an empty table takes milliseconds, so anything near this is a
/// spec or a server misbehaving, and `plan` must not hang on it.
const STATEMENT_TIMEOUT: &str = "30s";

/// Bounds every lock wait of a canonicalising transaction. It touches no
/// user table, but its catalog writes can still queue behind DDL.
const LOCK_TIMEOUT: &str = "5s";

/// SQLSTATE `insufficient_privilege`.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// Canonicalises every desired index of one database in rolled-back
/// transactions.
pub(super) async fn check_desired(
    client: &Client,
    database: &str,
    desired: &Database,
) -> Result<BTreeMap<String, IndexCheck>, ObserveError> {
    let wanted_tables: BTreeSet<(String, String)> = desired
        .indexes
        .values()
        .map(|index| (index.schema.clone(), index.table.clone()))
        .collect();
    let tables = observe_tables(client, database, &wanted_tables).await?;

    let mut checks = BTreeMap::new();
    // Tables with the same column definitions share one scratch table (its
    // number), and desired indexes of the same definition on them share one
    // scratch build (its 1-based position, which names the scratch index):
    // what the server prints depends on nothing else, once the scratch
    // names are replaced with the real ones. A deployment with many tables
    // of one shape (a schema per tenant, partitions) canonicalises each
    // shape of index once.
    let mut shapes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut table_numbers: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut builds: BTreeMap<(usize, &str, &str), usize> = BTreeMap::new();
    // Each desired index to canonicalise, with the position of its build.
    let mut positions: Vec<(&Index, usize)> = Vec::new();
    let mut scratch_tables: BTreeMap<usize, ScratchTable> = BTreeMap::new();
    for (name, index) in &desired.indexes {
        let table_key = (index.schema.clone(), index.table.clone());
        let Some(table) = tables.get(&table_key) else {
            checks.insert(name.clone(), IndexCheck::TableMissing { closest: None });
            continue;
        };
        if !matches!(table.kind.as_str(), "r" | "p" | "m") {
            checks.insert(
                name.clone(),
                IndexCheck::Rejected {
                    code: "42809".to_owned(),
                    message: format!(
                        "\"{}.{}\" is not a table or materialized view",
                        index.schema, index.table
                    ),
                },
            );
            continue;
        }
        let Some((create, rest)) = index.definition_parts() else {
            checks.insert(
                name.clone(),
                IndexCheck::Rejected {
                    code: String::new(),
                    message: format!(
                        "pgspec could not read its own definition of this index (this is a \
                         bug; please report it with the `--json` plan): {}",
                        index.definition
                    ),
                },
            );
            continue;
        };
        let next_number = shapes.len() + 1;
        let number = *shapes.entry(&table.columns).or_insert(next_number);
        table_numbers.insert(table_key, number);
        let next_build = builds.len() + 1;
        let build = *builds.entry((number, create, rest)).or_insert(next_build);
        positions.push((index, build));
        if build != next_build {
            continue;
        }
        let scratch_table = format!("pgspec_canonical_table_{number}");
        scratch_tables
            .entry(number)
            .or_insert_with(|| ScratchTable {
                number,
                create: format!("CREATE TEMP TABLE {scratch_table} ({})", table.columns),
                indexes: Vec::new(),
            })
            .indexes
            .push((
                build,
                scratch_statement(create, rest, build, &scratch_table),
            ));
    }
    if positions.is_empty() {
        return Ok(checks);
    }
    tracing::debug!(
        database,
        indexes = positions.len(),
        scratch_tables = shapes.len(),
        scratch_builds = builds.len(),
        "canonicalising desired indexes"
    );

    let names: Vec<&str> = positions
        .iter()
        .map(|(index, _)| index.name.as_str())
        .collect();
    let schemas: Vec<&str> = positions
        .iter()
        .map(|(index, _)| index.schema.as_str())
        .collect();
    let table_names: Vec<&str> = positions
        .iter()
        .map(|(index, _)| index.table.as_str())
        .collect();
    // The server quotes names the way `pg_get_indexdef` does (only where
    // needed); one pipelined round trip also asks who pgspec is connected
    // as, for `scratch_role`.
    let parameters: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&names, &schemas, &table_names];
    let (quoted, session) = tokio::try_join!(
        client.query(
            "SELECT quote_ident(w.index_name), quote_ident(w.schema_name), \
                    quote_ident(w.table_name) \
             FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY \
                  AS w(index_name, schema_name, table_name, position) \
             ORDER BY w.position",
            &parameters,
        ),
        client.query_one(
            "SELECT current_setting('is_superuser') = 'on' \
                    AND has_database_privilege('public', current_database(), 'TEMP'), \
                    pg_backend_pid()",
            &[],
        ),
    )
    .map_err(query_error(
        "the server's form of the desired indexes",
        database,
    ))?;
    let role = scratch_role(session.get(0), session.get(1));

    let error = || query_error("the server's form of the desired indexes", database);
    let mut outcomes: BTreeMap<usize, Outcome> = BTreeMap::new();
    let all: Vec<ScratchTable> = scratch_tables.into_values().collect();
    for chunk in chunks(&all) {
        outcomes.extend(
            canonicalise(client, &chunk, role.as_deref())
                .await
                .map_err(error())?,
        );
    }
    // The scratch role has only what PUBLIC has. An index whose
    // expression calls a function (or names an operator class) in a
    // schema PUBLIC may not use is refused for that reason alone; it is
    // built again as the connection's own user, still one statement, in a
    // transaction that is rolled back.
    if role.is_some() {
        let denied: BTreeSet<usize> = outcomes
            .iter()
            .filter(|(_, outcome)| {
                matches!(outcome, Outcome::Rejected { code, .. } if code == INSUFFICIENT_PRIVILEGE)
            })
            .map(|(position, _)| *position)
            .collect();
        if !denied.is_empty() {
            let retry: Vec<ScratchTable> = all
                .iter()
                .map(|table| ScratchTable {
                    indexes: table
                        .indexes
                        .iter()
                        .filter(|(position, _)| denied.contains(position))
                        .cloned()
                        .collect(),
                    ..table.clone()
                })
                .filter(|table| !table.indexes.is_empty())
                .collect();
            for chunk in chunks(&retry) {
                outcomes.extend(canonicalise(client, &chunk, None).await.map_err(error())?);
            }
        }
    }

    for ((index, build), quoted) in positions.iter().zip(&quoted) {
        let Some(outcome) = outcomes.get(build) else {
            continue;
        };
        let (quoted_name, quoted_schema, quoted_table): (String, String, String) =
            (quoted.get(0), quoted.get(1), quoted.get(2));
        let table_key = (index.schema.clone(), index.table.clone());
        let number = table_numbers[&table_key];
        let mut check = match outcome {
            Outcome::Built {
                definition,
                temp_schema,
            } => canonical(
                definition,
                *build,
                &[
                    format!("pg_temp.pgspec_canonical_table_{number}"),
                    format!("{temp_schema}.pgspec_canonical_table_{number}"),
                ],
                &format!("{quoted_name} ON {quoted_schema}.{quoted_table}"),
            ),
            Outcome::Rejected { code, message } => IndexCheck::Rejected {
                code: code.clone(),
                message: message.clone(),
            },
        };
        if let IndexCheck::Canonical {
            partitioned,
            table_bytes,
            ..
        } = &mut check
        {
            let table = tables.get(&table_key);
            *partitioned = table.is_some_and(|table| table.kind == "p");
            *table_bytes = table
                .filter(|table| table.kind == "r" || table.kind == "m")
                .map(|table| table.bytes);
        }
        checks.insert(index.name.clone(), check);
    }
    Ok(checks)
}

/// The role the scratch indexes are built as, or `None` to build them as
/// the connection's own user.
///
/// Building an index runs the spec's expression and predicate through the
/// server's parser and planner (constant folding calls immutable functions),
/// so it should run with the least privilege that can build it. A superuser
/// connection — the usual case, pgspec connects as the deployment's
/// superuser — creates a role with no attributes and no grants inside the
/// canonicalising transaction (the rollback removes it; no other session
/// ever sees it), hands it the scratch tables and `SET LOCAL ROLE`s to it:
/// it has only what PUBLIC has, which is what an index on a table of one's
/// own needs (`TEMP` on the database, `EXECUTE` on functions, `USAGE` on
/// types). A connection that is not a superuser already runs with only the
/// privileges its operator gave it, and cannot make a weaker role it may
/// switch to (from PostgreSQL 16 a `CREATEROLE` user is not a member of the
/// roles it creates), so it builds the indexes as itself; so does a
/// superuser on a database where PUBLIC lost `TEMP`.
fn scratch_role(superuser_with_public_temp: bool, backend_pid: i32) -> Option<String> {
    // The backend's pid is unique among live sessions, so two plans at once
    // never wait on each other's role name.
    superuser_with_public_temp.then(|| format!("pgspec_canonical_{backend_pid}"))
}

/// Splits the scratch tables into groups of at most
/// RELATIONS_PER_TRANSACTION relations, each canonicalised in a transaction
/// of its own.
///
/// Every scratch table holds a lock until its transaction ends, and the
/// server's lock table is shared and small (max_locks_per_transaction ×
/// connections): thousands of tables in one transaction run out of it. So
/// the work goes in transactions of at most RELATIONS_PER_TRANSACTION
/// relations — a handful of round trips for the largest deployments, one
/// for most.
fn chunks(tables: &[ScratchTable]) -> Vec<Vec<&ScratchTable>> {
    let mut chunks: Vec<Vec<&ScratchTable>> = vec![Vec::new()];
    let mut relations = 0;
    for table in tables {
        let size = 1 + table.indexes.len();
        if relations + size > RELATIONS_PER_TRANSACTION && relations > 0 {
            chunks.push(Vec::new());
            relations = 0;
        }
        relations += size;
        if let Some(chunk) = chunks.last_mut() {
            chunk.push(table);
        }
    }
    chunks
}

/// Sends `statements` one after another without waiting for the answers,
/// and returns each one's result in order.
///
/// Each statement goes alone through the extended protocol (`query_typed`:
/// Parse, Bind, Execute, Sync), so the server parses it as exactly one
/// statement: text with a second statement in it is a syntax error
/// ("cannot insert multiple commands into a prepared statement"), never
/// run. Each request is queued on the connection when its future is first
/// polled, and `join_all` polls them first in order, so the server sees them
/// in this order; an error skips only to that statement's own Sync, and
/// the statements after it still arrive (failing with
/// `in_failed_sql_transaction` until a `ROLLBACK TO SAVEPOINT`).
async fn pipeline(
    client: &Client,
    statements: &[String],
) -> Vec<Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>> {
    futures_util::future::join_all(
        statements
            .iter()
            .map(|statement| client.query_typed(statement, &[])),
    )
    .await
}

/// Builds the desired indexes of `tables` on scratch copies in one
/// transaction, which is always rolled back, and reads what the server
/// made of each.
async fn canonicalise(
    client: &Client,
    tables: &[&ScratchTable],
    role: Option<&str>,
) -> Result<Vec<(usize, Outcome)>, tokio_postgres::Error> {
    let outcome = async {
        let mut opening = vec![
            "BEGIN".to_owned(),
            format!(
                "SET LOCAL statement_timeout = {}",
                quote_literal(STATEMENT_TIMEOUT)
            ),
            format!("SET LOCAL lock_timeout = {}", quote_literal(LOCK_TIMEOUT)),
        ];
        if let Some(role) = role {
            opening.push(format!("CREATE ROLE {} NOLOGIN", quote_ident(role)));
        }
        for result in pipeline(client, &opening).await {
            result?;
        }
        let mut outcomes = Vec::new();
        let built = create_tables(client, tables, role, &mut outcomes).await?;
        build_indexes(client, &built, role, &mut outcomes).await?;
        Ok(outcomes)
    }
    .await;
    // Nothing of the transaction is kept, whatever happened: the scratch
    // tables and indexes, and the scratch role.
    let rollback = client.batch_execute("ROLLBACK").await;
    let outcomes = outcome?;
    rollback?;
    Ok(outcomes)
}

/// Creates the scratch tables (handed to `role` when there is one), each
/// under a savepoint so that one the server refuses leaves the others
/// standing: its indexes get the server's error in `outcomes`. Returns the
/// tables that exist. One round trip, plus one for each refused table.
async fn create_tables<'a>(
    client: &Client,
    tables: &[&'a ScratchTable],
    role: Option<&str>,
    outcomes: &mut Vec<(usize, Outcome)>,
) -> Result<Vec<&'a ScratchTable>, tokio_postgres::Error> {
    let mut built = Vec::new();
    let mut remaining = tables;
    while !remaining.is_empty() {
        let mut statements = Vec::new();
        let mut ends = Vec::new();
        for table in remaining {
            let savepoint = format!("pgspec_table_{}", table.number);
            statements.push(format!("SAVEPOINT {savepoint}"));
            statements.push(table.create.clone());
            if let Some(role) = role {
                statements.push(format!(
                    "ALTER TABLE pg_temp.pgspec_canonical_table_{} OWNER TO {}",
                    table.number,
                    quote_ident(role)
                ));
            }
            statements.push(format!("RELEASE SAVEPOINT {savepoint}"));
            ends.push(statements.len());
        }
        let results = pipeline(client, &statements).await;
        // The first table with a failed statement: everything after it
        // failed only because the transaction was aborted.
        let failed = ends.iter().enumerate().find_map(|(number, end)| {
            let start = number.checked_sub(1).map_or(0, |before| ends[before]);
            (start..*end)
                .find(|statement| results[*statement].is_err())
                .map(|statement| (number, statement))
        });
        let Some((failed_number, failed_statement)) = failed else {
            built.extend_from_slice(remaining);
            break;
        };
        let table = remaining[failed_number];
        let outcome = match results.into_iter().nth(failed_statement) {
            Some(Err(error)) => match Outcome::rejected(&error) {
                Some(outcome) => outcome,
                // Not the server refusing a statement: the connection
                // itself failed.
                None => return Err(error),
            },
            Some(Ok(_)) | None => Outcome::Rejected {
                code: String::new(),
                message: "pgspec lost track of a failed scratch table (this is a bug; \
                          please report it with the `--json` plan)"
                    .to_owned(),
            },
        };
        built.extend_from_slice(&remaining[..failed_number]);
        for (position, _) in &table.indexes {
            outcomes.push((*position, outcome.clone()));
        }
        let savepoint = format!("pgspec_table_{}", table.number);
        for result in pipeline(
            client,
            &[
                format!("ROLLBACK TO SAVEPOINT {savepoint}"),
                format!("RELEASE SAVEPOINT {savepoint}"),
            ],
        )
        .await
        {
            result?;
        }
        remaining = &remaining[failed_number + 1..];
    }
    Ok(built)
}

/// Builds each desired index on its scratch table as `role` and reads its
/// `pg_get_indexdef`, in one round trip. Each index is built under one
/// savepoint that is rolled back right after it is read, whether it was
/// built or refused: a refused index leaves the others unaffected, and a
/// built one gives its lock back at once.
async fn build_indexes(
    client: &Client,
    tables: &[&ScratchTable],
    role: Option<&str>,
    outcomes: &mut Vec<(usize, Outcome)>,
) -> Result<(), tokio_postgres::Error> {
    let mut statements = Vec::new();
    if let Some(role) = role {
        statements.push(format!("SET LOCAL ROLE {}", quote_ident(role)));
    }
    statements.push("SAVEPOINT pgspec_index".to_owned());
    let opening = statements.len();
    let mut positions = Vec::new();
    for table in tables {
        for (position, create_index) in &table.indexes {
            positions.push(*position);
            statements.push(create_index.clone());
            // Not `'…'::regclass`: a constant cast is resolved when the
            // statement is parsed, and this one is parsed before the index
            // exists.
            statements.push(format!(
                "SELECT pg_get_indexdef(c.oid), pg_my_temp_schema()::regnamespace::text \
                 FROM pg_class c \
                 WHERE c.relnamespace = pg_my_temp_schema() \
                   AND c.relname = 'pgspec_canonical_index_{position}'"
            ));
            statements.push("ROLLBACK TO SAVEPOINT pgspec_index".to_owned());
        }
    }
    let mut results = pipeline(client, &statements).await.into_iter();
    for result in results.by_ref().take(opening) {
        result?;
    }
    for position in positions {
        let (Some(built), Some(read), Some(rolled_back)) =
            (results.next(), results.next(), results.next())
        else {
            break;
        };
        rolled_back?;
        let outcome = match built {
            Err(error) => Outcome::rejected(&error).ok_or(error)?,
            Ok(_) => {
                let rows = read?;
                match rows.first() {
                    Some(row) => Outcome::Built {
                        definition: row.get(0),
                        temp_schema: row.get(1),
                    },
                    None => Outcome::Rejected {
                        code: String::new(),
                        message: "the scratch index was built but could not be found \
                                  (this is a bug; please report it with the `--json` plan)"
                            .to_owned(),
                    },
                }
            }
        };
        outcomes.push((position, outcome));
    }
    Ok(())
}

/// Puts the real name and table into the scratch index's definition. The
/// server names the scratch table's schema `pg_temp` or `pg_temp_N`,
/// depending on its version.
fn canonical(scratch: &str, position: usize, scratch_tables: &[String], real: &str) -> IndexCheck {
    for scratch_table in scratch_tables {
        let scratch_part = format!("pgspec_canonical_index_{position} ON {scratch_table} ");
        for create in ["CREATE INDEX ", "CREATE UNIQUE INDEX "] {
            if let Some(rest) = scratch.strip_prefix(&format!("{create}{scratch_part}")) {
                return IndexCheck::Canonical {
                    definition: format!("{create}{real} {rest}"),
                    partitioned: false,
                    table_bytes: None,
                };
            }
        }
    }
    IndexCheck::Rejected {
        code: String::new(),
        message: format!(
            "the server printed the scratch index in an unexpected form (this is a bug; \
             please report it with the `--json` plan): {scratch}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_statement_swaps_name_and_table() {
        let index = Index {
            name: "idx \"x\"".to_owned(),
            schema: "public".to_owned(),
            table: "items".to_owned(),
            definition:
                "CREATE UNIQUE INDEX \"idx \"\"x\"\"\" ON \"public\".\"items\" USING btree \
                         (\"a\") WHERE a > 0"
                    .to_owned(),
            ..Index::default()
        };
        let (create, rest) = index.definition_parts().expect("pgspec's own shape");
        assert_eq!(
            scratch_statement(create, rest, 1, "pgspec_canonical_table_1"),
            "CREATE UNIQUE INDEX pgspec_canonical_index_1 ON \
             pg_temp.pgspec_canonical_table_1 USING btree (\"a\") WHERE a > 0"
        );
    }

    #[test]
    fn canonical_puts_the_real_names_back() {
        assert_eq!(
            canonical(
                "CREATE INDEX pgspec_canonical_index_2 ON pg_temp_3.pgspec_canonical_table_1 \
                 USING btree (source) WHERE (state <> 'done'::text)",
                2,
                &["pg_temp_3.pgspec_canonical_table_1".to_owned()],
                "idx ON public.items",
            ),
            IndexCheck::Canonical {
                definition: "CREATE INDEX idx ON public.items USING btree (source) \
                             WHERE (state <> 'done'::text)"
                    .to_owned(),
                partitioned: false,
                table_bytes: None,
            }
        );
    }
}
