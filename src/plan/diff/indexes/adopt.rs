//! Indexes that are already there under another name, and indexes that
//! are there twice.
//!
//! A database a runbook or a migration built holds the indexes a spec
//! declares, named the way their author named them (`idx_letters_source_path`
//! where the spec says `idx_letters_source_file_path`). Building the spec's
//! index beside it would cost a full scan of the table and double the
//! index's cost on every write, for an index the table already has. So a
//! live index that is not pgspec's, on the same table, whose definition is
//! the desired one's in the server's words (`IndexCheck::Canonical`, both
//! read as `pg_get_indexdef` prints them, the name left out) is the same
//! index: the plan renames it and marks it as pgspec's.
//!
//! Two indexes with the same definition on one table are reported as a
//! note: every write updates both, and queries need only one. pgspec drops
//! neither, except one it built itself that the spec no longer declares,
//! when the spec prunes.

use std::collections::BTreeSet;

use crate::model::address;
use crate::model::{Database, Index, index_key};
use crate::plan::Note;

use super::{is_scratch, without_name};

/// The live index to rename into the desired `index`, whose definition in
/// the server's words is `canonical`: the first by name of the valid live
/// indexes on the same table with the same definition (the name left out)
/// that are nobody's — not pgspec's (no mark or stamp of any deployment),
/// not a constraint's — and that no desired index names and no other
/// desired index has taken (`taken`: live keys).
pub(super) fn rename_source<'a>(
    index: &Index,
    canonical: &str,
    have: &'a Database,
    taken: &BTreeSet<&str>,
) -> Option<&'a Index> {
    let wanted = without_name(canonical)?;
    // Keys sort by schema, then name: within one schema, by name.
    have.indexes.iter().find_map(|(key, live)| {
        let free = !taken.contains(key.as_str())
            && !live.managed
            && live.stamp.is_none()
            && live.constraint.is_none()
            && !live.invalid
            && !is_scratch(&live.name);
        (free
            && live.schema == index.schema
            && live.table == index.table
            && without_name(&live.definition) == Some(wanted))
        .then_some(live)
    })
}

/// An index as it stands once the plan has run, for finding duplicates.
/// It borrows from the desired and the live database: a plan over tens of
/// thousands of indexes holds one of these for each, all at once.
#[derive(Debug, Clone)]
pub(super) struct Standing<'a> {
    /// The last segment of its address in the plan: the desired index's
    /// key, or the live one's.
    pub key: &'a str,
    /// Its name once the plan has run.
    pub name: &'a str,
    pub schema: &'a str,
    pub table: &'a str,
    /// Its `pg_get_indexdef` (the desired one's in the server's words).
    pub definition: &'a str,
    pub whose: Whose<'a>,
}

/// Why an index is there, which says what pgspec may do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Whose<'a> {
    /// It backs this constraint, and pgspec never touches it.
    Constraint(&'a str),
    /// The spec declares it.
    Declared,
    /// pgspec built it, and the spec no longer declares it.
    Pgspecs,
    /// Another deployment's stamp is on it.
    AnotherDeployment,
    /// Someone else built it.
    Unmanaged,
}

impl<'a> Standing<'a> {
    /// A live index the plan leaves where it is, under live key `key`.
    pub fn live(key: &'a str, index: &'a Index) -> Standing<'a> {
        Standing {
            key,
            name: &index.name,
            schema: &index.schema,
            table: &index.table,
            definition: &index.definition,
            whose: match &index.constraint {
                Some(constraint) => Whose::Constraint(constraint),
                None if index.managed => Whose::Pgspecs,
                None if index.stamp.is_some() => Whose::AnotherDeployment,
                None => Whose::Unmanaged,
            },
        }
    }

    /// A desired index, under desired key `key`, as the plan leaves it:
    /// built, renamed or in sync.
    pub fn declared(key: &'a str, index: &'a Index, canonical: &'a str) -> Standing<'a> {
        Standing {
            key,
            name: &index.name,
            schema: &index.schema,
            table: &index.table,
            definition: canonical,
            whose: Whose::Declared,
        }
    }
}

/// One note for each index that has the same definition (the name left
/// out) as another on its table once the plan has run. Of each group, the
/// index a constraint owns stays unmentioned, else the first the spec
/// declares, else the first by name; each other one is the duplicate.
/// `database` is the name the addresses carry.
pub(super) fn duplicates(database: &str, standing: Vec<Standing<'_>>) -> Vec<Note> {
    // Grouped by sorting rather than into a map: no allocation per index.
    // The rest of the definition names the table: `ON public.t USING …`.
    let mut keyed: Vec<((bool, &str), Standing)> = standing
        .into_iter()
        .filter_map(|index| Some((without_name(index.definition)?, index)))
        .collect();
    keyed.sort_by_key(|(key, _)| *key);
    let rank = |index: &Standing| match index.whose {
        Whose::Constraint(_) => 0,
        Whose::Declared => 1,
        Whose::Pgspecs | Whose::AnotherDeployment | Whose::Unmanaged => 2,
    };
    let mut notes = Vec::new();
    for group in keyed
        .chunk_by_mut(|(left, _), (right, _)| left == right)
        .filter(|group| group.len() > 1)
    {
        group.sort_by(|(_, left), (_, right)| {
            (rank(left), left.name).cmp(&(rank(right), right.name))
        });
        let kept = &group[0].1;
        for (_, duplicate) in &group[1..] {
            let what = match &duplicate.whose {
                Whose::Constraint(constraint) => {
                    format!("it backs constraint `{constraint}`, which pgspec never changes")
                }
                Whose::Declared => "the spec declares it, so pgspec keeps it".to_owned(),
                Whose::Pgspecs => {
                    "pgspec built it, and drops it when the spec sets `prune: true`".to_owned()
                }
                Whose::AnotherDeployment => {
                    "another deployment's pgspec built it, and this one leaves it alone".to_owned()
                }
                Whose::Unmanaged => "pgspec did not build it and leaves it alone; drop it by hand \
                                     (DROP INDEX CONCURRENTLY) if nothing relies on its name"
                    .to_owned(),
            };
            notes.push(Note {
                address: address::index(database, duplicate.key),
                message: format!(
                    "same definition as `{}` on table `{}.{}`: a duplicate index slows every \
                     write to the table and takes space, and queries need only one of them; {what}",
                    kept.name, duplicate.schema, duplicate.table
                ),
            });
        }
    }
    notes
}

/// The live keys a desired index of `want` names, under its own name or
/// the scratch name of its replace: never a source to rename. Only keys
/// `have` holds, borrowed from it.
pub(super) fn named_by_spec<'a>(want: &Database, have: &'a Database) -> BTreeSet<&'a str> {
    want.indexes
        .values()
        .flat_map(|index| {
            [
                index_key(&index.schema, &index.name),
                index_key(&index.schema, &super::scratch_name(&index.name)),
            ]
        })
        .filter_map(|key| live_key(have, &key))
        .collect()
}

/// `key` as `have` holds it, borrowed from it; `None` when no live index
/// has it.
pub(super) fn live_key<'a>(have: &'a Database, key: &str) -> Option<&'a str> {
    have.indexes.get_key_value(key).map(|(key, _)| key.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IndexStamp;

    fn live(name: &str, definition: &str) -> Index {
        Index {
            name: name.to_owned(),
            schema: "public".to_owned(),
            table: "letters".to_owned(),
            definition: definition.replace("{}", name),
            ..Index::default()
        }
    }

    fn database(indexes: Vec<Index>) -> Database {
        Database {
            name: "app".to_owned(),
            indexes: indexes
                .into_iter()
                .map(|index| (index_key(&index.schema, &index.name), index))
                .collect(),
            ..Database::default()
        }
    }

    const PATH: &str = "CREATE INDEX {} ON public.letters USING btree (source_file_path)";
    const PARTIAL: &str = "CREATE INDEX {} ON public.letters USING btree (lower(status)) WHERE (status <> 'done'::text)";

    fn desired(name: &str) -> Index {
        live(name, "")
    }

    #[test]
    fn the_same_definition_under_another_name_is_the_rename_source() {
        let have = database(vec![
            live("idx_letters_source_path", PATH),
            live("idx_letters_status_open", PARTIAL),
        ]);
        let taken = BTreeSet::new();
        let source = rename_source(
            &desired("idx_letters_source_file_path"),
            &PATH.replace("{}", "idx_letters_source_file_path"),
            &have,
            &taken,
        );
        assert_eq!(
            source.map(|index| index.name.as_str()),
            Some("idx_letters_source_path")
        );
        // A partial expression index matches with its predicate, and only
        // with it.
        let open = desired("idx_open");
        assert_eq!(
            rename_source(&open, &PARTIAL.replace("{}", "idx_open"), &have, &taken)
                .map(|index| index.name.as_str()),
            Some("idx_letters_status_open")
        );
        for other in [
            "CREATE INDEX idx_open ON public.letters USING btree (lower(status))",
            "CREATE INDEX idx_open ON public.letters USING btree (lower(status)) WHERE (status <> 'new'::text)",
            "CREATE UNIQUE INDEX idx_open ON public.letters USING btree (lower(status)) WHERE (status <> 'done'::text)",
            "CREATE INDEX idx_open ON public.letters USING hash (lower(status)) WHERE (status <> 'done'::text)",
        ] {
            assert!(
                rename_source(&open, other, &have, &taken).is_none(),
                "{other}"
            );
        }
    }

    #[test]
    fn a_quoted_name_is_left_out_like_a_plain_one() {
        let have = database(vec![live(
            "Letters Path",
            "CREATE INDEX \"Letters Path\" ON public.letters USING btree (source_file_path)",
        )]);
        assert!(
            rename_source(
                &desired("idx_path"),
                &PATH.replace("{}", "idx_path"),
                &have,
                &BTreeSet::new()
            )
            .is_some()
        );
    }

    #[test]
    fn only_an_index_that_is_nobodys_is_renamed() {
        let hash = crate::model::stamp_hash("x");
        let candidates = [
            Index {
                managed: true,
                ..live("pgspecs", PATH)
            },
            Index {
                stamp: IndexStamp::parse(&format!(
                    "managed by pgspec; deployment=other; spec={hash}; built={hash}"
                ))
                .map(Box::new),
                ..live("another_deployments", PATH)
            },
            Index {
                constraint: Some("letters_key".to_owned()),
                ..live("constraints", PATH)
            },
            Index {
                invalid: true,
                ..live("invalid", PATH)
            },
            live("idx_path_pgspec_new", PATH),
            Index {
                table: "archive".to_owned(),
                ..live("other_table", PATH)
            },
            Index {
                schema: "audit".to_owned(),
                ..live("other_schema", PATH)
            },
            live("taken", PATH),
        ];
        let have = database(candidates.to_vec());
        let taken = BTreeSet::from(["taken"]);
        let source = rename_source(
            &desired("idx_path"),
            &PATH.replace("{}", "idx_path"),
            &have,
            &taken,
        );
        assert!(source.is_none(), "{source:?}");
    }

    #[test]
    fn of_several_sources_the_first_by_name_is_renamed() {
        let have = database(vec![
            live("idx_c", PATH),
            live("idx_a", PATH),
            live("idx_b", PATH),
        ]);
        let source = rename_source(
            &desired("idx_path"),
            &PATH.replace("{}", "idx_path"),
            &have,
            &BTreeSet::new(),
        );
        assert_eq!(source.map(|index| index.name.as_str()), Some("idx_a"));
    }

    fn standing(name: &'static str, whose: Whose<'static>) -> Standing<'static> {
        Standing {
            key: name,
            name,
            schema: "public",
            table: "letters",
            definition: PATH.replace("{}", name).leak(),
            whose,
        }
    }

    #[test]
    fn duplicates_are_noted_and_the_declared_one_is_kept() {
        let notes = duplicates(
            "app",
            vec![
                standing("idx_b", Whose::Unmanaged),
                standing("idx_path", Whose::Declared),
                standing("idx_a", Whose::Pgspecs),
                Standing {
                    definition: PARTIAL.replace("{}", "idx_alone").leak(),
                    ..standing("idx_alone", Whose::Unmanaged)
                },
            ],
        );
        let addresses: Vec<&str> = notes.iter().map(|note| note.address.as_str()).collect();
        assert_eq!(
            addresses,
            ["database.app/index.idx_a", "database.app/index.idx_b"]
        );
        assert!(
            notes[0]
                .message
                .starts_with("same definition as `idx_path` on table `public.letters`"),
            "{}",
            notes[0].message
        );
        assert!(notes[0].message.ends_with("`prune: true`"), "{notes:?}");
        assert!(notes[1].message.contains("leaves it alone"), "{notes:?}");
    }

    #[test]
    fn whose_an_index_is_comes_from_its_constraint_mark_and_stamp() {
        let hash = crate::model::stamp_hash("x");
        let foreign = Index {
            stamp: IndexStamp::parse(&format!(
                "managed by pgspec; deployment=other; spec={hash}; built={hash}"
            ))
            .map(Box::new),
            ..live("foreign", PATH)
        };
        fn whose(index: &Index) -> Whose<'_> {
            Standing::live("", index).whose
        }
        assert_eq!(whose(&foreign), Whose::AnotherDeployment);
        assert_eq!(
            whose(&Index {
                managed: true,
                ..foreign.clone()
            }),
            Whose::Pgspecs
        );
        assert_eq!(
            whose(&Index {
                constraint: Some("letters_key".to_owned()),
                ..foreign
            }),
            Whose::Constraint("letters_key")
        );
        assert_eq!(whose(&live("by_hand", PATH)), Whose::Unmanaged);
    }

    #[test]
    fn a_constraints_index_is_kept_and_uniqueness_tells_definitions_apart() {
        let unique = "CREATE UNIQUE INDEX {} ON public.letters USING btree (source_file_path)";
        let notes = duplicates(
            "app",
            vec![
                Standing {
                    definition: unique.replace("{}", "idx_unique").leak(),
                    ..standing("idx_unique", Whose::Declared)
                },
                Standing {
                    definition: unique.replace("{}", "letters_key").leak(),
                    ..standing("letters_key", Whose::Constraint("letters_key"))
                },
                standing("idx_plain", Whose::Unmanaged),
            ],
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].address, "database.app/index.idx_unique");
        assert!(
            notes[0].message.contains("as `letters_key`")
                && notes[0]
                    .message
                    .ends_with("the spec declares it, so pgspec keeps it"),
            "{}",
            notes[0].message
        );
    }
}
