//! Indexes of one database, and the server's reading of the desired ones.
//!
//! Every index outside the system schemas is read with one catalog query:
//! its `pg_get_indexdef`, whether it is valid and ready, the constraint it
//! backs and its size. Indexes of tables that belong to an extension are left
//! out: they are the extension's, not the user's.
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
//!
//! Why a column-list copy and not `CREATE INDEX` on the real table or
//! `LIKE`: building on the real table costs a full scan and a SHARE lock,
//! and `LIKE` takes a lock on the real table that waits behind any ACCESS
//! EXCLUSIVE holder; reading `pg_attribute` takes no lock on the table at
//! all. All indexes of a database are canonicalised in one `DO` block (one
//! round trip); an index the server rejects (an unknown column, an operator
//! class that does not exist) records SQLSTATE and message instead of a
//! definition, and the other indexes are unaffected. The temporary objects
//! never outlive the transaction, so nothing is written.
//!
//! An index pgspec built carries a stamp in its comment (`IndexStamp`): the
//! hash of the definition it ran and of what `pg_get_indexdef` printed right
//! after. When the spec still asks for that definition and the server still
//! prints that text, the index is in sync without canonicalising it again,
//! which keeps a plan of a converged deployment at the cost of its catalog
//! queries. A hand-made change to the index (storage options, a renamed
//! column or table) changes what the server prints, so the stamp no longer
//! proves anything and the index is canonicalised like any other.

use std::collections::{BTreeMap, BTreeSet};

use tokio_postgres::Client;

use crate::live::ObserveError;
use crate::live::postgres::Target;
use crate::model::{Database, Index, IndexCheck, IndexStamp, MANAGED_MARK, index_key};
use crate::sql::{quote_ident, quote_literal};

/// Live indexes of one database and the server's reading of the desired
/// ones.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// By [`index_key`].
    pub indexes: BTreeMap<String, Index>,
    /// By desired index name.
    pub checks: BTreeMap<String, IndexCheck>,
}

/// Reads the indexes of `database` and canonicalises the ones `desired`
/// declares, on a connection of its own.
pub async fn observe(target: &Target, desired: &Database) -> Result<Observed, ObserveError> {
    let database = desired.name.as_str();
    let client = target.connect().await?;
    let indexes = observe_indexes(&client, database).await?;
    let (mut checks, unproven) = proven_by_stamp(desired, &indexes);
    let proven = checks.len();
    if !unproven.indexes.is_empty() {
        checks.extend(check_desired(&client, database, &unproven).await?);
    }
    suggest_tables(&client, database, desired, &mut checks).await?;
    tracing::debug!(
        database,
        proven_by_stamp = proven,
        canonicalised = unproven.indexes.len(),
        "desired indexes checked"
    );
    Ok(Observed { indexes, checks })
}

/// For indexes whose table is missing, the existing table of the same
/// schema with the closest name, when it is close enough to be a
/// misspelling: one query, and only when a table is missing.
async fn suggest_tables(
    client: &Client,
    database: &str,
    desired: &Database,
    checks: &mut BTreeMap<String, IndexCheck>,
) -> Result<(), ObserveError> {
    let missing: Vec<(&String, &Index)> = desired
        .indexes
        .iter()
        .filter(|(name, _)| matches!(checks.get(*name), Some(IndexCheck::TableMissing { .. })))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let schemas: Vec<&str> = missing
        .iter()
        .map(|(_, index)| index.schema.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'm') \
             ORDER BY 1, 2",
            &[&schemas],
        )
        .await
        .map_err(query_error(database, "the tables of the indexed schemas"))?;
    let tables: Vec<(String, String)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    for (name, index) in missing {
        let closest = tables
            .iter()
            .filter(|(schema, _)| *schema == index.schema)
            .map(|(_, table)| (strsim::jaro_winkler(&index.table, table), table))
            .filter(|(similarity, _)| *similarity >= 0.85)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, table)| format!("{}.{table}", index.schema));
        checks.insert(name.clone(), IndexCheck::TableMissing { closest });
    }
    Ok(())
}

/// Splits the desired indexes into those a live index's stamp proves in
/// sync — their check is the live definition, no server round trip needed —
/// and the rest, which the server canonicalises.
fn proven_by_stamp(
    desired: &Database,
    live: &BTreeMap<String, Index>,
) -> (BTreeMap<String, IndexCheck>, Database) {
    let mut proven = BTreeMap::new();
    let mut unproven = Database {
        name: desired.name.clone(),
        ..Database::default()
    };
    for (name, index) in &desired.indexes {
        let live = live
            .get(&index_key(&index.schema, &index.name))
            .filter(|live| !live.invalid && live.constraint.is_none());
        match live {
            Some(live)
                if live
                    .stamp
                    .as_ref()
                    .is_some_and(|stamp| stamp.proves(index, &live.definition)) =>
            {
                proven.insert(
                    name.clone(),
                    IndexCheck::Canonical {
                        definition: live.definition.clone(),
                        partitioned: false,
                    },
                );
            }
            _ => {
                unproven.indexes.insert(name.clone(), index.clone());
            }
        }
    }
    (proven, unproven)
}

fn query_error(
    database: &str,
    what: &'static str,
) -> impl FnOnce(tokio_postgres::Error) -> ObserveError {
    let database = database.to_owned();
    move |source| ObserveError::Query {
        database,
        what,
        source,
    }
}

async fn observe_indexes(
    client: &Client,
    database: &str,
) -> Result<BTreeMap<String, Index>, ObserveError> {
    // `relpages` rather than pg_relation_size(): the latter opens the index
    // and would wait behind an ACCESS EXCLUSIVE lock on it.
    let rows = client
        .query(
            "SELECT n.nspname::text, t.relname::text, c.relname::text, \
                    pg_get_indexdef(c.oid), \
                    NOT (i.indisvalid AND i.indisready), \
                    coalesce(obj_description(c.oid, 'pg_class'), ''), \
                    con.conname::text, \
                    c.relpages::int8 * current_setting('block_size')::int8 \
             FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_class t ON t.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid \
                  AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x') \
             WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' \
               AND NOT EXISTS ( \
                   SELECT FROM pg_depend d \
                   WHERE d.classid = 'pg_class'::regclass AND d.objid = t.oid \
                     AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e') \
             ORDER BY 1, 3",
            &[],
        )
        .await
        .map_err(query_error(database, "indexes"))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let schema: String = row.get(0);
            let name: String = row.get(2);
            let comment: String = row.get(5);
            let stamp = IndexStamp::parse(&comment);
            (
                index_key(&schema, &name),
                Index {
                    name,
                    schema,
                    table: row.get(1),
                    definition: row.get(3),
                    invalid: row.get(4),
                    managed: comment == MANAGED_MARK || stamp.is_some(),
                    constraint: row.get(6),
                    size_bytes: Some(row.get(7)),
                    stamp,
                },
            )
        })
        .collect())
}

/// A table as the scratch copy needs it.
#[derive(Debug, Default)]
struct Table {
    /// `r`, `p` or `m` can be indexed; anything else cannot.
    kind: String,
    /// Column definitions, quoted: `"url" text COLLATE "pg_catalog"."default"`.
    columns: Vec<String>,
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
                    format_type(a.atttypid, a.atttypmod), cn.nspname::text, co.collname::text \
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
        .map_err(query_error(database, "indexed tables"))?;
    let mut found: BTreeMap<(String, String), Table> = BTreeMap::new();
    for row in rows {
        let table = found.entry((row.get(0), row.get(1))).or_default();
        table.kind = row.get(2);
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
        table.columns.push(definition);
    }
    Ok(found)
}

/// The statement that builds `index` under a scratch name on a scratch
/// table, or `None` when its definition is not in the shape
/// `spec::validate::index_definition` writes.
fn scratch_statement(index: &Index, scratch_index: &str, scratch_table: &str) -> Option<String> {
    let (create, rest) = index.definition_parts()?;
    Some(format!(
        "{create}INDEX {scratch_index} ON pg_temp.{scratch_table} {rest}"
    ))
}

/// A scratch table to build: its CREATE statement, and the positions and
/// CREATE INDEX statements of the desired indexes built on it.
type ScratchTable = (String, Vec<usize>, Vec<String>);

/// How many scratch relations (tables and indexes) one canonicalising
/// transaction creates at most; see `check_desired`.
const RELATIONS_PER_TRANSACTION: usize = 1000;

/// Canonicalises every desired index of one database in rolled-back
/// transactions.
async fn check_desired(
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
    // Indexes to canonicalise, grouped by table number; positions are
    // 1-based and name the scratch index.
    let mut table_numbers: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut positions: Vec<&Index> = Vec::new();
    let mut body_by_table: BTreeMap<usize, ScratchTable> = BTreeMap::new();
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
        let next_number = table_numbers.len() + 1;
        let number = *table_numbers.entry(table_key).or_insert(next_number);
        let scratch_table = format!("pgspec_canonical_table_{number}");
        let position = positions.len() + 1;
        let scratch_index = format!("pgspec_canonical_index_{position}");
        let Some(statement) = scratch_statement(index, &scratch_index, &scratch_table) else {
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
        positions.push(index);
        let entry = body_by_table.entry(number).or_insert_with(|| {
            (
                format!(
                    "CREATE TEMP TABLE {scratch_table} ({})",
                    table.columns.join(", ")
                ),
                Vec::new(),
                Vec::new(),
            )
        });
        entry.1.push(position);
        entry.2.push(statement);
    }
    if positions.is_empty() {
        return Ok(checks);
    }

    let names: Vec<&str> = positions.iter().map(|index| index.name.as_str()).collect();
    let schemas: Vec<&str> = positions
        .iter()
        .map(|index| index.schema.as_str())
        .collect();
    let table_names: Vec<&str> = positions.iter().map(|index| index.table.as_str()).collect();

    // Every scratch table and index holds a lock until its transaction
    // ends, and the server's lock table is shared and small
    // (max_locks_per_transaction × connections): thousands of indexes in
    // one transaction run out of it. So the work goes in transactions of
    // at most RELATIONS_PER_TRANSACTION relations — a handful of round
    // trips for the largest deployments, one for most.
    let mut chunks: Vec<Vec<&ScratchTable>> = vec![Vec::new()];
    let mut relations = 0;
    for table in body_by_table.values() {
        let size = 1 + table.2.len();
        if relations + size > RELATIONS_PER_TRANSACTION && relations > 0 {
            chunks.push(Vec::new());
            relations = 0;
        }
        relations += size;
        if let Some(chunk) = chunks.last_mut() {
            chunk.push(table);
        }
    }

    let mut rows = Vec::new();
    for chunk in chunks {
        let mut body = String::from("BEGIN\n");
        for (create_table, table_positions, statements) in chunk {
            body.push_str(&format!(
                "BEGIN\nEXECUTE {};\n",
                quote_literal(create_table)
            ));
            for (position, statement) in table_positions.iter().zip(statements) {
                body.push_str(&format!(
                    "BEGIN\nEXECUTE {};\n\
                     INSERT INTO pg_temp.pgspec_canonical \
                     VALUES ({position}, NULL, NULL, \
                     pg_get_indexdef('pg_temp.pgspec_canonical_index_{position}'::regclass));\n\
                     EXCEPTION WHEN others THEN \
                     INSERT INTO pg_temp.pgspec_canonical VALUES ({position}, SQLSTATE, SQLERRM, NULL);\n\
                     END;\n",
                    quote_literal(statement)
                ));
            }
            let failed: Vec<String> = table_positions
                .iter()
                .map(|position| format!("({position}, SQLSTATE, SQLERRM, NULL)"))
                .collect();
            body.push_str(&format!(
                "EXCEPTION WHEN others THEN \
                 INSERT INTO pg_temp.pgspec_canonical VALUES {};\nEND;\n",
                failed.join(", ")
            ));
        }
        body.push_str("END");

        let error = query_error(database, "the server's form of the desired indexes");
        let outcome = async {
            client
                .batch_execute(&format!(
                    "BEGIN; \
                     CREATE TEMP TABLE pgspec_canonical \
                     (position int, code text, message text, definition text); \
                     DO {}",
                    quote_literal(&body)
                ))
                .await?;
            client
                .query(
                    "SELECT r.position::int8, r.code, r.message, r.definition, \
                            pg_my_temp_schema()::regnamespace::text, \
                            quote_ident(w.index_name), quote_ident(w.schema_name), \
                            quote_ident(w.table_name) \
                     FROM pg_temp.pgspec_canonical r \
                     JOIN unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY \
                          AS w(index_name, schema_name, table_name, position) \
                       ON w.position = r.position \
                     ORDER BY 1",
                    &[&names, &schemas, &table_names],
                )
                .await
        }
        .await;
        // Nothing of the transaction is kept, whatever happened.
        let rollback = client.batch_execute("ROLLBACK").await;
        rows.extend(outcome.map_err(error)?);
        rollback.map_err(query_error(
            database,
            "the server's form of the desired indexes",
        ))?;
    }

    for row in rows {
        let position: i64 = row.get(0);
        let Some(index) = usize::try_from(position)
            .ok()
            .and_then(|position| positions.get(position.wrapping_sub(1)))
        else {
            continue;
        };
        let code: Option<String> = row.get(1);
        let message: Option<String> = row.get(2);
        let definition: Option<String> = row.get(3);
        let temp_schema: String = row.get(4);
        let (quoted_name, quoted_schema, quoted_table): (String, String, String) =
            (row.get(5), row.get(6), row.get(7));
        let table_key = (index.schema.clone(), index.table.clone());
        let number = table_numbers[&table_key];
        let mut check = match definition {
            Some(definition) => canonical(
                &definition,
                position,
                &[
                    format!("pg_temp.pgspec_canonical_table_{number}"),
                    format!("{temp_schema}.pgspec_canonical_table_{number}"),
                ],
                &format!("{quoted_name} ON {quoted_schema}.{quoted_table}"),
            ),
            None => IndexCheck::Rejected {
                code: code.unwrap_or_default(),
                message: message.unwrap_or_default(),
            },
        };
        if let IndexCheck::Canonical { partitioned, .. } = &mut check {
            *partitioned = tables
                .get(&table_key)
                .is_some_and(|table| table.kind == "p");
        }
        checks.insert(index.name.clone(), check);
    }
    Ok(checks)
}

/// Puts the real name and table into the scratch index's definition. The
/// server names the scratch table's schema `pg_temp` or `pg_temp_N`,
/// depending on its version.
fn canonical(scratch: &str, position: i64, scratch_tables: &[String], real: &str) -> IndexCheck {
    for scratch_table in scratch_tables {
        let scratch_part = format!("pgspec_canonical_index_{position} ON {scratch_table} ");
        for create in ["CREATE INDEX ", "CREATE UNIQUE INDEX "] {
            if let Some(rest) = scratch.strip_prefix(&format!("{create}{scratch_part}")) {
                return IndexCheck::Canonical {
                    definition: format!("{create}{real} {rest}"),
                    partitioned: false,
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
        assert_eq!(
            scratch_statement(
                &index,
                "pgspec_canonical_index_1",
                "pgspec_canonical_table_1"
            )
            .as_deref(),
            Some(
                "CREATE UNIQUE INDEX pgspec_canonical_index_1 ON \
                 pg_temp.pgspec_canonical_table_1 USING btree (\"a\") WHERE a > 0"
            )
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
            }
        );
    }
}
