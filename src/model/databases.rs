//! A database and what pgspec manages inside it: extensions, schemas and
//! privileges (the spec's grants and the live ACLs they are compared with).
//! Indexes are in `model::indexes`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Index, IndexCheck};

/// A database and what pgspec manages inside it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Database {
    pub name: String,
    /// Desired: `None` leaves the owner alone. Live: always set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, Extension>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schemas: BTreeMap<String, Schema>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub indexes: BTreeMap<String, Index>,
    /// Live only: the server's reading of each desired index, by the desired
    /// index's name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub index_checks: BTreeMap<String, IndexCheck>,
    /// Live only: privileges on the objects the desired grants are about,
    /// one entry per object, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acls: Vec<Acl>,
}

/// An installed (live) or wanted (desired) extension.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Extension {
    pub name: String,
    /// Desired: `None` accepts whatever is installed. Live: always set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Desired: `None` accepts any schema. Live: always set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Live only: pgspec created this extension.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub managed: bool,
}

/// A schema inside a database.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// Extensions that work only when their library (of the same name) is in
/// `shared_preload_libraries`.
pub const PRELOADED_EXTENSIONS: &[&str] = &[
    "pg_stat_statements",
    "pg_cron",
    "pgaudit",
    "timescaledb",
    "citus",
    "pg_stat_kcache",
    "pg_wait_sampling",
    "pg_qualstats",
    "pglogical",
    "pg_squeeze",
];

/// What a grant applies to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GrantTarget {
    Database,
    Schema {
        schema: String,
    },
    Tables {
        schema: String,
        names: Option<Vec<String>>,
    },
    Sequences {
        schema: String,
        names: Option<Vec<String>>,
    },
    Functions {
        schema: String,
        names: Option<Vec<String>>,
    },
    Default {
        schema: String,
        object: String,
        for_role: Option<String>,
    },
}

/// Privileges a grantee holds on a target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Grant {
    pub grantee: String,
    pub target: GrantTarget,
    /// Upper-case privilege names, sorted.
    pub privileges: Vec<String>,
}

/// An object privileges are granted on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AclObject {
    Database,
    Schema {
        schema: String,
    },
    /// A table, view, materialized view or foreign table.
    Table {
        schema: String,
        name: String,
    },
    Sequence {
        schema: String,
        name: String,
    },
    Function {
        schema: String,
        name: String,
        /// `pg_get_function_identity_arguments`, telling overloads apart.
        arguments: String,
    },
    /// Default privileges for objects `for_role` creates later in `schema`
    /// (`""` for every schema). `object` is `tables`, `sequences`,
    /// `functions`, `types` or `schemas`.
    Default {
        schema: String,
        object: String,
        for_role: String,
    },
}

/// The privileges each grantee holds on one object, with `acldefault`
/// standing in for a NULL ACL. `PUBLIC` is a grantee like any other.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Acl {
    pub object: AclObject,
    /// Grantee → upper-case privilege names, sorted.
    pub privileges: Grantees,
}

/// A privilege's upper-case name. The names PostgreSQL knows are borrowed
/// from a static list (`privilege`); only a name it added after this
/// version of pgspec is held as text of its own.
pub type Privilege = Cow<'static, str>;

/// The names `aclexplode` returns.
const PRIVILEGE_NAMES: [&str; 15] = [
    "ALTER SYSTEM",
    "CONNECT",
    "CREATE",
    "DELETE",
    "EXECUTE",
    "INSERT",
    "MAINTAIN",
    "REFERENCES",
    "SELECT",
    "SET",
    "TEMPORARY",
    "TRIGGER",
    "TRUNCATE",
    "UPDATE",
    "USAGE",
];

/// A privilege named by `name`, borrowed from the static list when it is
/// there.
fn privilege(name: String) -> Privilege {
    match PRIVILEGE_NAMES.iter().find(|known| **known == name) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(name),
    }
}

/// Grantee → upper-case privilege names, sorted by grantee: a map kept as
/// one sorted list. Almost every object has one or two grantees, and the
/// live state of a database with ten thousand tables holds one of these
/// per table; a `BTreeMap` there allocates a node of eleven slots each, and
/// a `String` per privilege name another block each.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grantees(Vec<(String, Vec<Privilege>)>);

impl Grantees {
    fn position(&self, grantee: &str) -> Result<usize, usize> {
        self.0
            .binary_search_by(|(name, _)| name.as_str().cmp(grantee))
    }

    /// What `grantee` holds, sorted.
    pub fn get(&self, grantee: &str) -> Option<&[Privilege]> {
        self.position(grantee)
            .ok()
            .map(|at| self.0[at].1.as_slice())
    }

    /// What `grantee` holds as owned names, empty when it holds nothing.
    pub fn held(&self, grantee: &str) -> BTreeSet<String> {
        self.get(grantee)
            .unwrap_or_default()
            .iter()
            .map(|privilege| privilege.to_string())
            .collect()
    }

    /// Sets what `grantee` holds, replacing what it held.
    pub fn insert(&mut self, grantee: String, privileges: Vec<String>) {
        let privileges = privileges.into_iter().map(privilege).collect();
        match self.position(&grantee) {
            Ok(at) => self.0[at].1 = privileges,
            Err(at) => self.0.insert(at, (grantee, privileges)),
        }
    }

    pub fn remove(&mut self, grantee: &str) {
        if let Ok(at) = self.position(grantee) {
            self.0.remove(at);
        }
    }

    /// The grantees, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(grantee, _)| grantee)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &[Privilege])> {
        self.0
            .iter()
            .map(|(grantee, privileges)| (grantee, privileges.as_slice()))
    }
}

impl FromIterator<(String, Vec<String>)> for Grantees {
    /// Collects grantees; a grantee named twice keeps what it was given last.
    fn from_iter<I: IntoIterator<Item = (String, Vec<String>)>>(entries: I) -> Self {
        let mut grantees = Grantees(
            entries
                .into_iter()
                .map(|(grantee, privileges)| {
                    (grantee, privileges.into_iter().map(privilege).collect())
                })
                .collect(),
        );
        grantees.0.reverse();
        grantees.0.sort_by(|a, b| a.0.cmp(&b.0));
        grantees.0.dedup_by(|later, kept| later.0 == kept.0);
        grantees.0.shrink_to_fit();
        grantees
    }
}

impl Serialize for Grantees {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Grantees {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(BTreeMap::<String, Vec<String>>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(privileges: &[&str]) -> Vec<String> {
        privileges.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn grantees_are_a_sorted_map_whose_last_word_wins() {
        let mut grantees: Grantees = [
            ("writer".to_owned(), names(&["INSERT"])),
            ("PUBLIC".to_owned(), names(&["SELECT"])),
            ("writer".to_owned(), names(&["DELETE", "INSERT"])),
        ]
        .into_iter()
        .collect();
        assert_eq!(grantees.keys().collect::<Vec<_>>(), ["PUBLIC", "writer"]);
        assert_eq!(grantees.get("writer").unwrap(), ["DELETE", "INSERT"]);
        assert_eq!(grantees.held("nobody"), BTreeSet::new());

        grantees.insert("app".to_owned(), names(&["SELECT"]));
        grantees.insert("PUBLIC".to_owned(), names(&["UPDATE"]));
        grantees.remove("writer");
        grantees.remove("nobody");
        assert_eq!(
            grantees.iter().collect::<Vec<_>>(),
            [
                (&"PUBLIC".to_owned(), &[Privilege::from("UPDATE")][..]),
                (&"app".to_owned(), &[Privilege::from("SELECT")][..]),
            ]
        );
    }

    #[test]
    fn grantees_read_and_write_as_the_map_they_stand_for() {
        let map: BTreeMap<String, Vec<String>> = [
            ("b".to_owned(), names(&["SELECT", "WHATEVER NEXT"])),
            ("a".to_owned(), names(&["USAGE"])),
        ]
        .into_iter()
        .collect();
        let grantees: Grantees = map.clone().into_iter().collect();
        // Written exactly as the map was: live fingerprints do not move.
        let json = serde_json::to_string(&grantees).unwrap();
        assert_eq!(json, serde_json::to_string(&map).unwrap());
        assert_eq!(serde_json::from_str::<Grantees>(&json).unwrap(), grantees);
        // Known names are borrowed, a name this version does not know is kept.
        let b = grantees.get("b").unwrap();
        assert!(matches!(b[0], Cow::Borrowed("SELECT")));
        assert!(matches!(&b[1], Cow::Owned(name) if name == "WHATEVER NEXT"));
    }
}
