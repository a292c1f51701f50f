//! Indexes, the way a careful DBA changes them on a live table.
//!
//! Definitions compare in the server's own words: `live` records, for each
//! desired index, what `pg_get_indexdef` prints for it (`IndexCheck`), and
//! that text is compared with the live index's `pg_get_indexdef`. Spelling,
//! casts, parentheses and a default operator class named or not make no
//! difference; a different column, method, predicate or option does.
//!
//! - A missing index is built with `CREATE INDEX CONCURRENTLY`, outside a
//!   transaction, so reads and writes continue; apply runs it under
//!   `lock_timeout` and retries. A build cut off by the lock timeout leaves
//!   an invalid index behind, so each build first drops a leftover of its
//!   own name. On a table of at most [`PLAIN_BUILD_MAX_BYTES`] (an empty
//!   table of a new deployment, typically) a plain `CREATE INDEX` in one
//!   transaction is quicker and holds writes back only for milliseconds
//!   (`Step::BuildIndex`); a table of unknown size is built concurrently.
//! - A missing index that is on its table under another name, built by a
//!   runbook or a migration rather than by pgspec, is renamed and stamped
//!   instead (`adopt`); indexes with one definition are noted as
//!   duplicates.
//! - A changed index is replaced without a moment where the table lacks it:
//!   the new one is built concurrently under a scratch name
//!   (`<name>_pgspec_new`), then the old one is dropped concurrently and the
//!   new one renamed.
//! - An invalid index (a failed concurrent build) is dropped and built
//!   again; queries do not use it meanwhile anyway.
//! - Indexes that back a primary key, unique or exclusion constraint belong
//!   to their constraint: never changed, never reported as unmanaged.
//! - Live indexes the spec does not name are reported as unmanaged and
//!   dropped only when pgspec created them and the spec prunes.
//! - An index on a table that does not exist waits for it (`Plan::waiting`):
//!   pgspec indexes tables the application's migrations create, it never
//!   creates tables, so the first apply of a new deployment does everything
//!   else and the apply after the migrations builds these indexes.

use std::collections::BTreeSet;

use crate::model::DiffOptions;
use crate::model::address::ObjectKind;
use crate::model::{Database, Deployment, Index, IndexCheck, IndexStamp, address, index_key};
use crate::plan::{Action, ActionKind, Change, Note, Plan, PlanError, Risk, Step, Waiting};
use crate::sql::{qualified, quote_literal};

mod adopt;
mod build;

use build::Build;

/// Suffix of the scratch name a replacement is built under.
const SCRATCH_SUFFIX: &str = "_pgspec_new";

/// The largest table, in bytes on disk, a new index is built on with a
/// plain `CREATE INDEX` rather than concurrently: 1 MiB (128 pages of 8 kB).
/// Building an index there takes milliseconds, so holding writes back for
/// it costs less than the transactions and the waits for every older
/// snapshot a concurrent build needs. The size is the table's `relpages`
/// as of its last VACUUM or ANALYZE; apply checks `pg_relation_size` under
/// the build's lock and builds concurrently if the table grew past it.
pub const PLAIN_BUILD_MAX_BYTES: i64 = 1024 * 1024;

/// SQLSTATEs of definitions that may become valid once the plan's
/// extensions are installed (an operator class or function they bring).
const MISSING_UNTIL_EXTENSIONS: &[&str] = &["42704", "42883"];

/// Diffs the indexes of one database.
pub fn diff(
    deployment: &str,
    want: &Database,
    have: Option<&Database>,
    options: &DiffOptions,
    plan: &mut Plan,
) {
    let Some(have) = have else {
        // A new database: its tables come with the application's
        // migrations, after this apply.
        for (name, index) in &want.indexes {
            plan.waiting.push(Waiting {
                address: address::index(&want.name, name),
                table: format!("{}.{}", index.schema, index.table),
                closest: None,
            });
        }
        return;
    };
    let extensions_pending = want
        .extensions
        .keys()
        .any(|name| !have.extensions.contains_key(name));
    // Live keys a desired index accounts for, borrowed from `have`.
    let mut claimed: BTreeSet<&str> = BTreeSet::new();
    let mut claim = |key: &str| claimed.extend(adopt::live_key(have, key));
    // Live keys no desired index may rename: those the spec names, and
    // the sources of the renames planned so far.
    let mut taken = adopt::named_by_spec(want, have);
    // The indexes that stand once the plan has run, for duplicates.
    let mut standing = Vec::new();
    for (name, index) in &want.indexes {
        let address = address::index(&want.name, name);
        let live_key = index_key(&index.schema, &index.name);
        let scratch_key = index_key(&index.schema, &scratch_name(&index.name));
        claim(&live_key);
        let live = have.indexes.get(&live_key);
        let scratch = have.indexes.get(&scratch_key);
        let Some((create, rest)) = index.definition_parts() else {
            plan.errors.push(PlanError {
                address,
                message: format!(
                    "pgspec cannot read its own definition of this index (this is a bug; \
                     please report it with the `--json` plan): {}",
                    index.definition
                ),
            });
            continue;
        };
        let mut build = Build {
            deployment,
            database: &want.name,
            index,
            create,
            rest,
            small: None,
        };
        let canonical = match have.index_checks.get(name) {
            None => {
                plan.errors.push(PlanError {
                    address,
                    message: "the server's form of this index was not read (this is a bug; \
                              please report it with the `--json` plan)"
                        .to_owned(),
                });
                continue;
            }
            Some(IndexCheck::TableMissing { closest }) => {
                plan.waiting.push(Waiting {
                    address,
                    table: format!("{}.{}", index.schema, index.table),
                    closest: closest.clone(),
                });
                continue;
            }
            Some(IndexCheck::Rejected { code, message }) => {
                if live.is_none()
                    && extensions_pending
                    && MISSING_UNTIL_EXTENSIONS.contains(&code.as_str())
                {
                    plan.notes.push(Note {
                        address: address.clone(),
                        message: format!(
                            "the server cannot check this definition before the plan's \
                             extensions are installed: {message}"
                        ),
                    });
                    plan.add(build.create(address, scratch, &index.definition));
                    claim(&scratch_key);
                } else {
                    plan.errors.push(PlanError {
                        address,
                        message: format!(
                            "the server rejects this index definition: {message}{}",
                            if code.is_empty() {
                                String::new()
                            } else {
                                format!(" (SQLSTATE {code})")
                            }
                        ),
                    });
                }
                continue;
            }
            Some(IndexCheck::Canonical {
                definition,
                partitioned,
                table_bytes,
            }) => (definition, *partitioned, *table_bytes),
        };
        let (canonical, partitioned, table_bytes) = canonical;
        let max_bytes = options
            .plain_index_max_bytes
            .unwrap_or(PLAIN_BUILD_MAX_BYTES);
        build.small = table_bytes
            .filter(|bytes| !partitioned && *bytes <= max_bytes)
            .map(|bytes| (bytes, max_bytes));

        let action = match live {
            None => match scratch {
                Some(scratch)
                    if !scratch.invalid
                        && without_name(&scratch.definition) == without_name(canonical) =>
                {
                    claim(&scratch_key);
                    Some(build.finish_replace(address.clone(), scratch, canonical))
                }
                _ => match adopt::rename_source(index, canonical, have, &taken) {
                    Some(source) => {
                        let source_key = index_key(&source.schema, &source.name);
                        claim(&source_key);
                        taken.extend(adopt::live_key(have, &source_key));
                        Some(build.rename(address.clone(), source, canonical))
                    }
                    None => {
                        claim(&scratch_key);
                        Some(build.create(address.clone(), scratch, canonical))
                    }
                },
            },
            Some(live) if live.constraint.is_some() => {
                if &live.definition != canonical {
                    plan.errors.push(PlanError {
                        address: address.clone(),
                        message: format!(
                            "this index backs constraint `{}` of table `{}.{}` and differs from \
                             the spec; pgspec never changes the index of a constraint: change \
                             the constraint in a migration, or leave the index out of the spec",
                            live.constraint.as_deref().unwrap_or_default(),
                            live.schema,
                            live.table
                        ),
                    });
                    continue;
                }
                None
            }
            Some(live) if live.invalid => {
                claim(&scratch_key);
                Some(build.repair(address.clone(), live, scratch, canonical))
            }
            Some(live) if &live.definition != canonical => {
                claim(&scratch_key);
                Some(build.replace(address.clone(), live, scratch, canonical))
            }
            Some(_) => None,
        };
        let mut declared = adopt::Standing::declared(name, index, canonical);
        if let Some(constraint) = live.and_then(|live| live.constraint.as_deref()) {
            declared.whose = adopt::Whose::Constraint(constraint);
        }
        match action {
            // A rename is not a build: it works on a partitioned table too.
            Some(action) if partitioned && action.kind != ActionKind::Update => {
                plan.errors.push(PlanError {
                address,
                message: format!(
                    "table `{}.{}` is partitioned, and PostgreSQL cannot build or drop an index \
                     on a partitioned table concurrently; create it in a migration (CREATE INDEX \
                     ON ONLY the table, each partition's index CONCURRENTLY, then ALTER INDEX \
                     ATTACH PARTITION)",
                    index.schema, index.table
                ),
                })
            }
            Some(action) => {
                plan.add(action);
                standing.push(declared);
            }
            None => standing.push(declared),
        }
    }

    for (key, live) in &have.indexes {
        if claimed.contains(key.as_str()) {
            continue;
        }
        if live.constraint.is_some() {
            standing.push(adopt::Standing::live(key, live));
            continue;
        }
        let address = address::index(&want.name, key);
        let leftover = is_scratch(&live.name) && (live.managed || live.invalid);
        if leftover || (live.managed && options.prune) {
            let reason = if leftover {
                "left behind by an interrupted replace of pgspec".to_owned()
            } else {
                "created by pgspec, no longer in the spec, and pruning is on".to_owned()
            };
            plan.add(Action {
                address,
                object: ObjectKind::Index,
                kind: ActionKind::Delete,
                reason,
                risk: locks(live),
                changes: [
                    Some(Change::new(
                        "definition",
                        Some(live.definition.clone()),
                        None,
                    )),
                    live.size_bytes
                        .map(|size| Change::new("size", Some(format_size(size)), None)),
                ]
                .into_iter()
                .flatten()
                .collect(),
                steps: vec![sql(&want.name, drop_statement(&live.schema, &live.name))],
            });
        } else {
            if !live.invalid {
                standing.push(adopt::Standing::live(key, live));
            }
            plan.unmanaged.push(address);
        }
    }
    plan.notes.extend(adopt::duplicates(&want.name, standing));
}

/// What live would hold after an index action ran, for `plan::simulate`.
/// `name` is the last segment of the action's address: the desired name of
/// a created or replaced index, the live key of a deleted one.
pub fn simulate(next: &mut Deployment, database: &str, name: &str, action: &Action) {
    let Some(database) = next.databases.get_mut(database) else {
        return;
    };
    let new = |field: &str| {
        action
            .changes
            .iter()
            .find(|change| change.field == field)
            .and_then(|change| change.new.clone())
    };
    match action.kind {
        ActionKind::Delete => {
            database.indexes.remove(name);
        }
        ActionKind::Create => {
            let (Some(table), Some(definition)) = (new("table"), new("definition")) else {
                return;
            };
            let (schema, table) = table.split_once('.').unwrap_or(("public", &table));
            database
                .indexes
                .remove(&index_key(schema, &scratch_name(name)));
            database.indexes.insert(
                index_key(schema, name),
                Index {
                    name: name.to_owned(),
                    schema: schema.to_owned(),
                    table: table.to_owned(),
                    definition,
                    managed: true,
                    ..Index::default()
                },
            );
        }
        ActionKind::Replace => {
            let Some(live) = database
                .indexes
                .values_mut()
                .find(|index| index.name == name)
            else {
                return;
            };
            if let Some(definition) = new("definition") {
                live.definition = definition;
            }
            live.invalid = false;
            live.managed = true;
            let scratch = index_key(&live.schema, &scratch_name(name));
            database.indexes.remove(&scratch);
        }
        ActionKind::Update => {
            // A rename: the index whose definition was the old one takes
            // the new name and definition, and is pgspec's.
            let old = action
                .changes
                .iter()
                .find(|change| change.field == "definition")
                .and_then(|change| change.old.as_deref());
            let (Some(old), Some(definition)) = (old, new("definition")) else {
                return;
            };
            let Some(key) = database
                .indexes
                .iter()
                .find(|(_, index)| index.definition == old)
                .map(|(key, _)| key.clone())
            else {
                return;
            };
            if let Some(mut index) = database.indexes.remove(&key) {
                index.name = name.to_owned();
                index.definition = definition;
                index.managed = true;
                database
                    .indexes
                    .insert(index_key(&index.schema, name), index);
            }
        }
        ActionKind::Adopt | ActionKind::Upgrade | ActionKind::Restart => {}
    }
}

/// One statement run on its own (no transaction), in `database`.
fn sql(database: &str, statement: String) -> Step {
    Step::Sql {
        database: Some(database.to_owned()),
        statements: vec![statement],
        transaction: false,
    }
}

/// The statement that stamps an index: the server hashes its own
/// `pg_get_indexdef` into the comment, in the same form as
/// `model::stamp_hash`, so the stamp records exactly what was built.
pub fn stamp_statement(deployment: &str, schema: &str, name: &str, spec: &str) -> String {
    let index = quote_literal(&qualified(schema, name));
    let body = format!(
        "BEGIN EXECUTE format('COMMENT ON INDEX %s IS %L', {index}, {} || \
         left(encode(sha256(convert_to(pg_get_indexdef({index}::regclass), 'UTF8')), 'hex'), 16)); \
         END",
        quote_literal(&IndexStamp::comment_prefix(deployment, spec))
    );
    format!("DO {}", quote_literal(&body))
}

fn drop_statement(schema: &str, name: &str) -> String {
    format!(
        "DROP INDEX CONCURRENTLY IF EXISTS {}",
        qualified(schema, name)
    )
}

fn locks(index: &Index) -> Risk {
    Risk {
        locks: vec![format!(
            "SHARE UPDATE EXCLUSIVE on {}.{} (reads and writes continue)",
            index.schema, index.table
        )],
        restart: false,
        reconnects: false,
    }
}

/// The name a replacement of `name` is built under, within PostgreSQL's 63
/// bytes.
pub fn scratch_name(name: &str) -> String {
    let mut end = name.len().min(63 - SCRATCH_SUFFIX.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{SCRATCH_SUFFIX}", &name[..end])
}

fn is_scratch(name: &str) -> bool {
    name.ends_with(SCRATCH_SUFFIX)
}

/// A `pg_get_indexdef` without the index's name: `(unique, "ON … USING …")`.
/// The name is one identifier, double-quoted (with `""` inside) when the
/// server quoted it.
fn without_name(definition: &str) -> Option<(bool, &str)> {
    let (unique, rest) = if let Some(rest) = definition.strip_prefix("CREATE UNIQUE INDEX ") {
        (true, rest)
    } else {
        (false, definition.strip_prefix("CREATE INDEX ")?)
    };
    let after_name = if let Some(quoted) = rest.strip_prefix('"') {
        let mut characters = quoted.char_indices().peekable();
        let mut end = None;
        while let Some((position, character)) = characters.next() {
            if character == '"' {
                if characters.peek().is_some_and(|(_, next)| *next == '"') {
                    characters.next();
                } else {
                    end = Some(position + 1);
                    break;
                }
            }
        }
        &quoted[end?..]
    } else {
        &rest[rest.find(' ')?..]
    };
    Some((unique, after_name.trim_start()))
}

/// Bytes in the largest binary unit that keeps one decimal.
fn format_size(bytes: i64) -> String {
    const UNITS: [(&str, f64); 3] = [
        ("GiB", 1024.0 * 1024.0 * 1024.0),
        ("MiB", 1024.0 * 1024.0),
        ("KiB", 1024.0),
    ];
    let value = bytes as f64;
    for (unit, size) in UNITS {
        if value >= size {
            return format!("{:.1} {unit}", value / size);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(schema: &str, name: &str, definition: &str) -> Index {
        Index {
            name: name.to_owned(),
            schema: schema.to_owned(),
            table: "items".to_owned(),
            definition: definition.to_owned(),
            ..Index::default()
        }
    }

    /// Every kind of index action, simulated, leaves nothing to do.
    #[test]
    fn simulated_index_actions_converge() {
        let canonical = |schema: &str, name: &str, columns: &str| {
            format!("CREATE INDEX {name} ON {schema}.items USING btree ({columns})")
        };
        let mut want = Database {
            name: "app".to_owned(),
            ..Database::default()
        };
        let mut have = want.clone();
        for (schema, name, columns) in [
            ("public", "created", "a"),
            ("audit", "replaced", "a, b"),
            ("public", "repaired", "b"),
            ("public", "resumed", "c"),
            ("public", "kept", "d"),
            ("public", "renamed", "f"),
        ] {
            want.indexes.insert(
                name.to_owned(),
                index(
                    schema,
                    name,
                    &format!(
                        "CREATE INDEX \"{name}\" ON \"{schema}\".\"items\" USING btree ({columns})"
                    ),
                ),
            );
            have.index_checks.insert(
                name.to_owned(),
                IndexCheck::Canonical {
                    definition: canonical(schema, name, columns),
                    partitioned: false,
                    table_bytes: None,
                },
            );
        }
        for live in [
            index("audit", "replaced", &canonical("audit", "replaced", "a")),
            Index {
                invalid: true,
                ..index("public", "repaired", &canonical("public", "repaired", "b"))
            },
            index(
                "public",
                "resumed_pgspec_new",
                &canonical("public", "resumed_pgspec_new", "c"),
            ),
            index("public", "kept", &canonical("public", "kept", "d")),
            Index {
                managed: true,
                ..index("public", "pruned", &canonical("public", "pruned", "e"))
            },
            // Two indexes a runbook built with the definition of `renamed`:
            // the first by name is renamed, the other is a duplicate.
            index(
                "public",
                "runbook_f",
                &canonical("public", "runbook_f", "f"),
            ),
            index(
                "public",
                "runbook_g",
                &canonical("public", "runbook_g", "f"),
            ),
        ] {
            have.indexes
                .insert(index_key(&live.schema, &live.name), live);
        }
        let deployment = |database: Database| {
            let mut deployment = Deployment {
                server: Some(crate::model::ServerInfo::default()),
                ..Deployment::default()
            };
            deployment.databases.insert("app".to_owned(), database);
            deployment
        };
        let (desired, live) = (deployment(want), deployment(have));
        let options = DiffOptions {
            prune: true,
            ..DiffOptions::default()
        };
        let plan = crate::plan::diff(&desired, &live, &options);
        let kinds: Vec<(&str, ActionKind)> = plan
            .actions
            .iter()
            .map(|action| (action.address.as_str(), action.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("database.app/index.created", ActionKind::Create),
                ("database.app/index.renamed", ActionKind::Update),
                ("database.app/index.repaired", ActionKind::Replace),
                ("database.app/index.replaced", ActionKind::Replace),
                ("database.app/index.resumed", ActionKind::Create),
                ("database.app/index.pruned", ActionKind::Delete),
            ]
        );
        let duplicates: Vec<&str> = plan
            .notes
            .iter()
            .map(|note| note.address.as_str())
            .collect();
        assert_eq!(duplicates, ["database.app/index.runbook_g"]);
        let after = crate::plan::simulate(&live, &plan);
        assert!(after.databases["app"].indexes["renamed"].managed);
        assert!(!after.databases["app"].indexes.contains_key("runbook_f"));
        let again = crate::plan::diff(&desired, &after, &options);
        assert!(again.actions.is_empty(), "{:?}", again.actions);
        assert!(again.errors.is_empty(), "{:?}", again.errors);
        assert_eq!(again.notes, plan.notes);
    }

    /// A table of at most the limit gets a plain build; a larger one, one
    /// of unknown size or a partitioned one does not; the limit can be
    /// lowered.
    #[test]
    fn plain_builds_only_on_small_tables() {
        let build_of = |table_bytes: Option<i64>, partitioned: bool, limit: Option<i64>| {
            let mut want = Database {
                name: "app".to_owned(),
                ..Database::default()
            };
            let mut have = want.clone();
            want.indexes.insert(
                "a".to_owned(),
                index(
                    "public",
                    "a",
                    "CREATE INDEX \"a\" ON \"public\".\"items\" USING btree (a)",
                ),
            );
            have.index_checks.insert(
                "a".to_owned(),
                IndexCheck::Canonical {
                    definition: "CREATE INDEX a ON public.items USING btree (a)".to_owned(),
                    partitioned,
                    table_bytes,
                },
            );
            let mut plan = Plan::default();
            let options = DiffOptions {
                plain_index_max_bytes: limit,
                ..DiffOptions::default()
            };
            diff("d", &want, Some(&have), &options, &mut plan);
            plan.actions.first().map(|action| action.steps[0].clone())
        };
        let plain = |step: Option<Step>| matches!(step, Some(Step::BuildIndex { .. }));
        assert!(plain(build_of(Some(0), false, None)));
        assert!(plain(build_of(Some(PLAIN_BUILD_MAX_BYTES), false, None)));
        assert!(!plain(build_of(
            Some(PLAIN_BUILD_MAX_BYTES + 8192),
            false,
            None
        )));
        assert!(!plain(build_of(None, false, None)));
        assert!(
            build_of(Some(0), true, None).is_none(),
            "partitioned: an error"
        );
        assert!(!plain(build_of(Some(16384), false, Some(8192))));
        match build_of(Some(8192), false, Some(8192)) {
            Some(Step::BuildIndex {
                max_bytes,
                statements,
                concurrently,
                ..
            }) => {
                assert_eq!(max_bytes, 8192);
                assert!(statements[1].starts_with("CREATE INDEX \"a\" ON"));
                assert!(concurrently[1].starts_with("CREATE INDEX CONCURRENTLY \"a\" ON"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scratch_names_fit_in_63_bytes() {
        assert_eq!(scratch_name("idx_a"), "idx_a_pgspec_new");
        let long = "é".repeat(40);
        let scratch = scratch_name(&long);
        assert!(scratch.len() <= 63, "{}", scratch.len());
        assert!(is_scratch(&scratch));
    }

    #[test]
    fn names_are_skipped_quoted_or_not() {
        assert_eq!(
            without_name("CREATE INDEX idx_a_pgspec_new ON public.t USING btree (a)"),
            Some((false, "ON public.t USING btree (a)"))
        );
        assert_eq!(
            without_name("CREATE UNIQUE INDEX \"a \"\"b\" ON public.t USING btree (a)"),
            Some((true, "ON public.t USING btree (a)"))
        );
        assert_eq!(without_name("DROP TABLE x"), None);
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(format_size(8192), "8.0 KiB");
        assert_eq!(format_size(3 * 1024 * 1024 + 512 * 1024), "3.5 MiB");
        assert_eq!(format_size(100), "100 B");
    }
}
