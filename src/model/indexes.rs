//! Indexes: the spec's definitions, the server's reading of them, and the
//! stamp pgspec leaves in the comment of an index it builds.

use serde::{Deserialize, Serialize};

use super::{MANAGED_MARK, managed_mark};

/// An index. Desired indexes carry the spec's parts; live ones the server's
/// definition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    pub name: String,
    pub schema: String,
    pub table: String,
    /// `CREATE INDEX` text pgspec would run (desired) or `pg_get_indexdef`
    /// (live).
    pub definition: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invalid: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub managed: bool,
    /// Live only: the primary key, unique or exclusion constraint this index
    /// backs; such an index belongs to its constraint and pgspec never
    /// touches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    /// Live only: size on disk in bytes, as of the last build, VACUUM or
    /// ANALYZE (`pg_class.relpages`). Read but never written out: it moves
    /// with every autovacuum, and the live fingerprint of a saved plan must
    /// not.
    #[serde(default, skip_serializing)]
    pub size_bytes: Option<i64>,
    /// Live only: what pgspec wrote in the comment of an index it built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<Box<IndexStamp>>,
}

/// The record pgspec keeps in the comment of an index it builds
/// (`managed by pgspec; deployment=…; spec=…; built=…`): the hash of the definition it
/// ran, and the hash of what the server printed for the index right after.
/// While both still hold — the spec asks for the same definition, and
/// `pg_get_indexdef` prints the same text — the index is what the spec
/// says, and the server need not canonicalise the definition again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexStamp {
    /// The deployment that built the index; `None` in the stamps of
    /// versions before stamps named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    pub spec: String,
    pub built: String,
}

impl IndexStamp {
    /// The comment up to the built hash, which the server appends:
    /// `managed by pgspec; deployment=<name>; spec=<spec>; built=`.
    pub fn comment_prefix(deployment: &str, spec: &str) -> String {
        format!("{}; spec={spec}; built=", managed_mark(deployment))
    }

    /// Reads a stamp from an index comment; `None` for any other text.
    pub fn parse(comment: &str) -> Option<IndexStamp> {
        let rest = comment.strip_prefix(MANAGED_MARK)?;
        let (deployment, rest) = match rest.strip_prefix("; deployment=") {
            Some(named) => {
                let (deployment, rest) = named.split_once("; spec=")?;
                (Some(deployment.to_owned()), rest)
            }
            None => (None, rest.strip_prefix("; spec=")?),
        };
        let (spec, built) = rest.split_once("; built=")?;
        let hex = |text: &str| text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit());
        (hex(spec) && hex(built) && deployment.as_ref().is_none_or(|name| !name.is_empty())).then(
            || IndexStamp {
                deployment,
                spec: spec.to_owned(),
                built: built.to_owned(),
            },
        )
    }

    /// Whether the stamp says `deployment` built the index; a stamp naming
    /// no deployment counts as it does only on a server the spec runs, as
    /// for the bare mark (`marks_own`).
    pub fn names(&self, deployment: &str, owns_server: bool) -> bool {
        match &self.deployment {
            Some(name) => name == deployment,
            None => owns_server,
        }
    }

    /// Whether the stamp proves `live` (its `pg_get_indexdef`) is the index
    /// `desired` defines.
    pub fn proves(&self, desired: &Index, live_definition: &str) -> bool {
        self.spec == stamp_hash(&desired.definition) && self.built == stamp_hash(live_definition)
    }
}

/// The hash a stamp records: the first 16 hex digits of SHA-256 of the
/// text's UTF-8 bytes — what the server computes with
/// `left(encode(sha256(convert_to(text, 'UTF8')), 'hex'), 16)`.
pub fn stamp_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

impl Index {
    /// A desired definition split around its name and table:
    /// `("CREATE UNIQUE ", "USING btree (…) WHERE …")`, so that the same
    /// index can be built under another name, on another table or
    /// CONCURRENTLY. `None` when the definition is not in the form
    /// `spec::validate::index_definition` writes.
    pub fn definition_parts(&self) -> Option<(&'static str, &str)> {
        let target = format!(
            "INDEX {} ON {} ",
            crate::sql::quote_ident(&self.name),
            crate::sql::qualified(&self.schema, &self.table)
        );
        ["CREATE ", "CREATE UNIQUE "]
            .into_iter()
            .find_map(|create| {
                self.definition
                    .strip_prefix(create)
                    .and_then(|rest| rest.strip_prefix(target.as_str()))
                    .map(|rest| (create, rest))
            })
    }
}

/// The key of an index in `Database::indexes` of the live side: its name,
/// qualified by its schema unless that is `public`, because index names are
/// unique per schema, not per database.
pub fn index_key(schema: &str, name: &str) -> String {
    if schema == "public" {
        name.to_owned()
    } else {
        format!("{schema}.{name}")
    }
}

/// Live only: what the server made of a desired index's definition. `live`
/// builds the desired index on a scratch copy of its table and records
/// `pg_get_indexdef`, so that `diff` compares definitions the way the server
/// writes them, without a deparser of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IndexCheck {
    /// The definition as `pg_get_indexdef` would print it for the desired
    /// index on its real table.
    Canonical {
        definition: String,
        /// The table is partitioned, and PostgreSQL cannot build an index on
        /// a partitioned table concurrently.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        partitioned: bool,
        /// The size of the (non-partitioned) table on disk in bytes, as of
        /// its last VACUUM or ANALYZE (`pg_class.relpages`), when the server
        /// read it; it decides whether a new index is built plainly or
        /// concurrently (`plan::diff::indexes::PLAIN_BUILD_MAX_BYTES`). Never
        /// written out, like `Index::size_bytes`: it moves with autovacuum.
        #[serde(default, skip_serializing)]
        table_bytes: Option<i64>,
    },
    /// The table the index is on does not exist (yet: the application's
    /// migrations create it).
    TableMissing {
        /// The existing table of that schema whose name is closest, when
        /// one is close enough to be a misspelling.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        closest: Option<String>,
    },
    /// The server rejected the definition (SQLSTATE and message).
    Rejected { code: String, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(definition: &str) -> Index {
        Index {
            definition: definition.to_owned(),
            ..Index::default()
        }
    }

    #[test]
    fn a_stamp_proves_only_the_definition_it_was_made_for() {
        let spec = "CREATE INDEX \"i\" ON \"public\".\"t\" USING btree (\"a\")";
        let built = "CREATE INDEX i ON public.t USING btree (a)";
        let comment = IndexStamp::comment_prefix("ledger", &stamp_hash(spec)) + &stamp_hash(built);
        let stamp = IndexStamp::parse(&comment).expect("a stamp");
        assert!(stamp.names("ledger", false));
        assert!(!stamp.names("threadr", true));
        assert!(stamp.proves(&desired(spec), built));
        // Another definition in the spec, or another one on the server.
        assert!(!stamp.proves(&desired(&spec.replace("\"a\"", "\"b\"")), built));
        assert!(!stamp.proves(
            &desired(spec),
            "CREATE INDEX i ON public.t USING btree (a) WITH (fillfactor='70')"
        ));
    }

    #[test]
    fn only_well_formed_stamps_parse() {
        assert_eq!(IndexStamp::parse(MANAGED_MARK), None);
        assert_eq!(IndexStamp::parse("some note"), None);
        assert_eq!(
            IndexStamp::parse("managed by pgspec; spec=xyz; built=0123456789abcdef"),
            None
        );
        let hash = stamp_hash("x");
        assert_eq!(hash.len(), 16);
        // A stamp of a version before stamps named the deployment.
        let old = IndexStamp::parse(&format!("{MANAGED_MARK}; spec={hash}; built={hash}"))
            .expect("an old stamp");
        assert!(old.names("ledger", true) && !old.names("ledger", false));
        assert_eq!(
            IndexStamp::parse(&format!(
                "{MANAGED_MARK}; deployment=; spec={hash}; built={hash}"
            )),
            None
        );
    }
}
