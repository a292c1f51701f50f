//! Indexes of one database, and the server's reading of the desired ones.
//!
//! Every index outside the system schemas is read with one catalog query:
//! its `pg_get_indexdef`, whether it is valid and ready, the constraint it
//! backs and its size. Indexes of tables that belong to an extension are left
//! out: they are the extension's, not the user's.
//!
//! A desired index is compared with the live one the way the server writes
//! it, not as text; `canonical` has the server do that.
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

use super::canonical::check_desired;
use super::query_error;
use crate::live::ObserveError;
use crate::live::postgres::Target;
use crate::model::{Database, Index, IndexCheck, IndexStamp, index_key, marks_own};

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
pub async fn observe(
    target: &Target,
    owner: Owner<'_>,
    desired: &Database,
) -> Result<Observed, ObserveError> {
    let database = desired.name.as_str();
    let client = target.connect().await?;
    let indexes = observe_indexes(&client, database, owner).await?;
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
        .map_err(query_error("the tables of the indexed schemas", database))?;
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
                        table_bytes: None,
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

/// Whose indexes count as pgspec's: those whose mark or stamp names this
/// deployment (or names none, on a server the spec runs; `model::marks_own`).
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub deployment: &'a str,
    pub owns_server: bool,
}

async fn observe_indexes(
    client: &Client,
    database: &str,
    owner: Owner<'_>,
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
        .map_err(query_error("indexes", database))?;
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
                    managed: marks_own(&comment, owner.deployment, owner.owns_server)
                        || stamp
                            .as_ref()
                            .is_some_and(|stamp| stamp.names(owner.deployment, owner.owns_server)),
                    constraint: row.get(6),
                    size_bytes: Some(row.get(7)),
                    stamp: stamp.map(Box::new),
                },
            )
        })
        .collect())
}
