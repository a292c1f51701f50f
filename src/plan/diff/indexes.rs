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
//!   own name.
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
use crate::model::{
    Database, Deployment, Index, IndexCheck, IndexStamp, address, index_key, stamp_hash,
};
use crate::plan::{Action, ActionKind, Change, Note, Plan, PlanError, Risk, Step, Waiting};
use crate::sql::{qualified, quote_ident, quote_literal};

/// Suffix of the scratch name a replacement is built under.
const SCRATCH_SUFFIX: &str = "_pgspec_new";

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
    let mut claimed = BTreeSet::new();
    for (name, index) in &want.indexes {
        let address = address::index(&want.name, name);
        let live_key = index_key(&index.schema, &index.name);
        let scratch_key = index_key(&index.schema, &scratch_name(&index.name));
        claimed.insert(live_key.clone());
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
        let build = Build {
            deployment,
            database: &want.name,
            index,
            create,
            rest,
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
                    plan.actions
                        .push(build.create(address, scratch, &index.definition));
                    claimed.insert(scratch_key);
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
            }) => (definition, *partitioned),
        };
        let (canonical, partitioned) = canonical;

        let action = match live {
            None => {
                claimed.insert(scratch_key);
                match scratch {
                    Some(scratch)
                        if !scratch.invalid
                            && without_name(&scratch.definition) == without_name(canonical) =>
                    {
                        Some(build.finish_replace(address.clone(), scratch, canonical))
                    }
                    _ => Some(build.create(address.clone(), scratch, canonical)),
                }
            }
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
                }
                None
            }
            Some(live) if live.invalid => {
                claimed.insert(scratch_key);
                Some(build.repair(address.clone(), live, scratch, canonical))
            }
            Some(live) if &live.definition != canonical => {
                claimed.insert(scratch_key);
                Some(build.replace(address.clone(), live, scratch, canonical))
            }
            Some(_) => None,
        };
        match action {
            Some(_) if partitioned => plan.errors.push(PlanError {
                address,
                message: format!(
                    "table `{}.{}` is partitioned, and PostgreSQL cannot build or drop an index \
                     on a partitioned table concurrently; create it in a migration (CREATE INDEX \
                     ON ONLY the table, each partition's index CONCURRENTLY, then ALTER INDEX \
                     ATTACH PARTITION)",
                    index.schema, index.table
                ),
            }),
            Some(action) => plan.actions.push(action),
            None => {}
        }
    }

    for (key, live) in &have.indexes {
        if claimed.contains(key) || live.constraint.is_some() {
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
            plan.actions.push(Action {
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
            plan.unmanaged.push(address);
        }
    }
}

/// What building one desired index takes.
struct Build<'a> {
    /// The deployment the stamp names.
    deployment: &'a str,
    database: &'a str,
    index: &'a Index,
    /// `CREATE ` or `CREATE UNIQUE `.
    create: &'static str,
    /// The definition after the table: `USING btree (…) …`.
    rest: &'a str,
}

impl Build<'_> {
    /// `CREATE INDEX CONCURRENTLY` of the desired index under `name`.
    fn statement(&self, name: &str) -> String {
        format!(
            "{}INDEX CONCURRENTLY {} ON {} {}",
            self.create,
            quote_ident(name),
            qualified(&self.index.schema, &self.index.table),
            self.rest
        )
    }

    /// Builds the index under `name`, first dropping an invalid leftover of
    /// an earlier attempt under that name, then marks it as pgspec's.
    fn build_steps(&self, name: &str) -> Vec<Step> {
        vec![
            Step::Sql {
                database: Some(self.database.to_owned()),
                statements: vec![
                    drop_statement(&self.index.schema, name),
                    self.statement(name),
                ],
                transaction: false,
            },
            self.stamp(name),
        ]
    }

    /// Stamps the index built under `name` as pgspec's.
    fn stamp(&self, name: &str) -> Step {
        Step::StampIndex {
            deployment: self.deployment.to_owned(),
            database: self.database.to_owned(),
            schema: self.index.schema.clone(),
            name: name.to_owned(),
            spec: stamp_hash(&self.index.definition),
        }
    }

    /// The table a new index goes on, `schema.table`.
    fn table_change(&self) -> Change {
        Change::new(
            "table",
            None,
            Some(format!("{}.{}", self.index.schema, self.index.table)),
        )
    }

    fn risk(&self) -> Risk {
        Risk {
            locks: vec![format!(
                "SHARE UPDATE EXCLUSIVE on {}.{} (reads and writes continue)",
                self.index.schema, self.index.table
            )],
            restart: false,
            reconnects: false,
        }
    }

    /// Drops what an interrupted replace left under the scratch name, if
    /// anything, then builds the index under its own name.
    fn build_steps_clearing(&self, scratch: Option<&Index>) -> Vec<Step> {
        let mut steps = Vec::new();
        if let Some(scratch) = scratch {
            steps.push(sql(
                self.database,
                drop_statement(&scratch.schema, &scratch.name),
            ));
        }
        steps.extend(self.build_steps(&self.index.name));
        steps
    }

    fn create(&self, address: String, scratch: Option<&Index>, definition: &str) -> Action {
        let steps = self.build_steps_clearing(scratch);
        Action {
            address,
            object: ObjectKind::Index,
            kind: ActionKind::Create,
            reason: format!(
                "declared in the spec, not on table `{}.{}`; built concurrently, after \
                 dropping what an interrupted build may have left under its name",
                self.index.schema, self.index.table
            ),
            risk: self.risk(),
            changes: vec![
                self.table_change(),
                Change::new("definition", None, Some(definition.to_owned())),
            ],
            steps,
        }
    }

    /// Builds the new index beside the old one, drops the old one and
    /// renames the new one. A valid new index an earlier, interrupted replace
    /// left under the scratch name is used as it is.
    fn replace(
        &self,
        address: String,
        live: &Index,
        built: Option<&Index>,
        canonical: &str,
    ) -> Action {
        let scratch = scratch_name(&self.index.name);
        let reusable = built.is_some_and(|built| {
            !built.invalid && without_name(&built.definition) == without_name(canonical)
        });
        let mut steps = if reusable {
            Vec::new()
        } else {
            self.build_steps(&scratch)
        };
        steps.push(sql(self.database, drop_statement(&live.schema, &live.name)));
        steps.push(sql(
            self.database,
            format!(
                "ALTER INDEX {} RENAME TO {}",
                qualified(&self.index.schema, &scratch),
                quote_ident(&self.index.name)
            ),
        ));
        let mut risk = self.risk();
        if (live.schema.as_str(), live.table.as_str())
            != (self.index.schema.as_str(), self.index.table.as_str())
        {
            risk.locks.extend(locks(live).locks);
        }
        Action {
            address,
            object: ObjectKind::Index,
            kind: ActionKind::Replace,
            reason: if reusable {
                format!(
                    "the definition differs; an interrupted replace already built the new index \
                     as `{scratch}`, so the old one is dropped concurrently and the new one renamed"
                )
            } else {
                format!(
                    "the definition differs; the new index is built concurrently beside the old \
                     one{}, which is then dropped concurrently, so the table is never without it",
                    live.size_bytes
                        .map(|size| format!(" ({})", format_size(size)))
                        .unwrap_or_default()
                )
            },
            risk,
            changes: vec![Change::new(
                "definition",
                Some(live.definition.clone()),
                Some(canonical.to_owned()),
            )],
            steps,
        }
    }

    fn repair(
        &self,
        address: String,
        live: &Index,
        scratch: Option<&Index>,
        canonical: &str,
    ) -> Action {
        let steps = self.build_steps_clearing(scratch);
        let mut changes = vec![Change::new(
            "valid",
            Some("false".to_owned()),
            Some("true".to_owned()),
        )];
        if live.definition != canonical {
            changes.push(Change::new(
                "definition",
                Some(live.definition.clone()),
                Some(canonical.to_owned()),
            ));
        }
        Action {
            address,
            object: ObjectKind::Index,
            kind: ActionKind::Replace,
            reason: "invalid: a concurrent build failed or was cancelled; queries do not use it, \
                     so it is dropped and built again concurrently"
                .to_owned(),
            risk: self.risk(),
            changes,
            steps,
        }
    }

    /// The old index is gone and the new one was built under the scratch
    /// name: an earlier replace was cut off before its rename.
    fn finish_replace(&self, address: String, scratch: &Index, canonical: &str) -> Action {
        Action {
            address,
            object: ObjectKind::Index,
            kind: ActionKind::Create,
            reason: format!(
                "an interrupted replace left the new index as `{}`; it matches the spec and \
                 is renamed",
                scratch.name
            ),
            risk: Risk {
                locks: vec![format!(
                    "SHARE UPDATE EXCLUSIVE on index {}.{}",
                    scratch.schema, scratch.name
                )],
                restart: false,
                reconnects: false,
            },
            changes: vec![
                self.table_change(),
                Change::new("definition", None, Some(canonical.to_owned())),
            ],
            steps: vec![
                sql(
                    self.database,
                    format!(
                        "ALTER INDEX {} RENAME TO {}",
                        qualified(&scratch.schema, &scratch.name),
                        quote_ident(&self.index.name)
                    ),
                ),
                self.stamp(&self.index.name),
            ],
        }
    }
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
        ActionKind::Update | ActionKind::Adopt | ActionKind::Restart => {}
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
        let options = DiffOptions { prune: true };
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
                ("database.app/index.repaired", ActionKind::Replace),
                ("database.app/index.replaced", ActionKind::Replace),
                ("database.app/index.resumed", ActionKind::Create),
                ("database.app/index.pruned", ActionKind::Delete),
            ]
        );
        let after = crate::plan::simulate(&live, &plan);
        let again = crate::plan::diff(&desired, &after, &options);
        assert!(again.actions.is_empty(), "{:?}", again.actions);
        assert!(again.errors.is_empty(), "{:?}", again.errors);
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
