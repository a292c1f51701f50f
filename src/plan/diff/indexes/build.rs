//! The actions that bring one desired index about: create, replace beside
//! the old one, repair an invalid one, finish an interrupted replace, or
//! rename the same index found under another name.

use crate::model::address::ObjectKind;
use crate::model::{Index, stamp_hash};
use crate::plan::{Action, ActionKind, Change, Risk, Step};
use crate::sql::{qualified, quote_ident};

use super::{drop_statement, format_size, locks, scratch_name, sql, without_name};

/// What building one desired index takes.
pub(super) struct Build<'a> {
    /// The deployment the stamp names.
    pub(super) deployment: &'a str,
    pub(super) database: &'a str,
    pub(super) index: &'a Index,
    /// `CREATE ` or `CREATE UNIQUE `.
    pub(super) create: &'static str,
    /// The definition after the table: `USING btree (…) …`.
    pub(super) rest: &'a str,
    /// When the table is small enough for a plain build: its size in bytes
    /// and the limit it was held to.
    pub(super) small: Option<(i64, i64)>,
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

    /// How the index is built, as an adverb.
    fn adverb(&self) -> String {
        match self.small {
            Some((bytes, _)) => format!(
                "with a plain CREATE INDEX (the table is small: {})",
                format_size(bytes)
            ),
            None => "concurrently".to_owned(),
        }
    }

    /// Builds the index under `name`, first dropping an invalid leftover of
    /// an earlier attempt under that name, then marks it as pgspec's.
    fn build_steps(&self, name: &str) -> Vec<Step> {
        let concurrently = vec![
            drop_statement(&self.index.schema, name),
            self.statement(name),
        ];
        let build = match self.small {
            Some((_, max_bytes)) => Step::BuildIndex {
                database: self.database.to_owned(),
                table: qualified(&self.index.schema, &self.index.table),
                max_bytes,
                statements: vec![
                    format!(
                        "DROP INDEX IF EXISTS {}",
                        qualified(&self.index.schema, name)
                    ),
                    format!(
                        "{}INDEX {} ON {} {}",
                        self.create,
                        quote_ident(name),
                        qualified(&self.index.schema, &self.index.table),
                        self.rest
                    ),
                ],
                concurrently,
            },
            None => Step::Sql {
                database: Some(self.database.to_owned()),
                statements: concurrently,
                transaction: false,
            },
        };
        vec![build, self.stamp(name)]
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
        let lock = if self.small.is_some() {
            "SHARE on {}.{} while the index is built (reads continue, writes wait)"
        } else {
            "SHARE UPDATE EXCLUSIVE on {}.{} (reads and writes continue)"
        };
        Risk {
            locks: vec![lock.replacen("{}", &self.index.schema, 1).replacen(
                "{}",
                &self.index.table,
                1,
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

    pub(super) fn create(
        &self,
        address: String,
        scratch: Option<&Index>,
        definition: &str,
    ) -> Action {
        let steps = self.build_steps_clearing(scratch);
        Action {
            address,
            object: ObjectKind::Index,
            kind: ActionKind::Create,
            // Kept short: a first apply at scale holds one per index. The
            // table is in the changes, the wait for writes in the risk, the
            // drop of a leftover of an interrupted build in the steps.
            reason: format!(
                "declared in the spec, not on its table; built {}",
                self.adverb()
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
    pub(super) fn replace(
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
                    "the definition differs; the new index is built {} beside the old one{}, \
                     which is then dropped concurrently, so the table is never without it",
                    self.adverb(),
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

    pub(super) fn repair(
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
            reason: format!(
                "invalid: a concurrent build failed or was cancelled; queries do not use it, \
                 so it is dropped and built again {}",
                self.adverb()
            ),
            risk: self.risk(),
            changes,
            steps,
        }
    }

    /// The index is on its table under another name (`adopt`): renamed,
    /// which is instant, and stamped as pgspec's like one it built.
    pub(super) fn rename(&self, address: String, live: &Index, canonical: &str) -> Action {
        Action {
            address,
            object: ObjectKind::Index,
            kind: ActionKind::Update,
            reason: format!(
                "declared in the spec and already on table `{}.{}` as `{}`, with the same \
                 definition; renamed (instant) rather than built a second time, and marked as \
                 pgspec's",
                live.schema, live.table, live.name
            ),
            risk: Risk {
                locks: vec![format!(
                    "SHARE UPDATE EXCLUSIVE on index {}.{} (reads and writes continue)",
                    live.schema, live.name
                )],
                restart: false,
                reconnects: false,
            },
            changes: vec![
                Change::new(
                    "name",
                    Some(live.name.clone()),
                    Some(self.index.name.clone()),
                ),
                Change::new(
                    "definition",
                    Some(live.definition.clone()),
                    Some(canonical.to_owned()),
                ),
            ],
            steps: vec![
                sql(
                    self.database,
                    format!(
                        "ALTER INDEX {} RENAME TO {}",
                        qualified(&live.schema, &live.name),
                        quote_ident(&self.index.name)
                    ),
                ),
                self.stamp(&self.index.name),
            ],
        }
    }

    /// The old index is gone and the new one was built under the scratch
    /// name: an earlier replace was cut off before its rename.
    pub(super) fn finish_replace(
        &self,
        address: String,
        scratch: &Index,
        canonical: &str,
    ) -> Action {
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
