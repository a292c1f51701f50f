//! PostgreSQL's privileges, written down once: what `ALL` stands for on
//! each kind of object, for the grants diff and for `import`, and from the
//! same table what a grant in a spec may name, for `spec::validate`.
//!
//! Also what a new database or schema grants before any GRANT
//! (`acldefault`), for the grants diff and the model of apply.
//!
//! Invariant: no I/O.

/// Every privilege of a kind of object (`database`, `schema`, `table`,
/// `sequence`, `function`, `types`; plural forms too), sorted: what `ALL`
/// grants on a server of `version_num`. `MAINTAIN` exists from
/// PostgreSQL 17 on.
pub fn all_privileges(kind: &str, version_num: u32) -> &'static [&'static str] {
    match kind {
        "database" => &["CONNECT", "CREATE", "TEMPORARY"],
        "schema" | "schemas" => &["CREATE", "USAGE"],
        "table" | "tables" if version_num >= 170_000 => &[
            "DELETE",
            "INSERT",
            "MAINTAIN",
            "REFERENCES",
            "SELECT",
            "TRIGGER",
            "TRUNCATE",
            "UPDATE",
        ],
        "table" | "tables" => &[
            "DELETE",
            "INSERT",
            "REFERENCES",
            "SELECT",
            "TRIGGER",
            "TRUNCATE",
            "UPDATE",
        ],
        "sequence" | "sequences" => &["SELECT", "UPDATE", "USAGE"],
        "function" | "functions" => &["EXECUTE"],
        "types" => &["USAGE"],
        _ => &[],
    }
}

/// The grantee everyone is; in SQL a keyword, not a role name.
pub const PUBLIC: &str = "PUBLIC";

/// The role that owns the `public` schema of a new database (PostgreSQL 15
/// on): whoever owns the database.
pub const PUBLIC_SCHEMA_OWNER: &str = "pg_database_owner";

/// What each grantee holds on a new database owned by `owner` before any
/// GRANT: PostgreSQL's `acldefault('d', owner)`. The owner holds every
/// privilege, `PUBLIC` may connect and create temporary tables.
pub fn new_database(owner: &str) -> Vec<(&str, &'static [&'static str])> {
    vec![
        (owner, all_privileges("database", 0)),
        (PUBLIC, &["CONNECT", "TEMPORARY"]),
    ]
}

/// What each grantee holds on a new schema owned by `owner` before any
/// GRANT: PostgreSQL's `acldefault('n', owner)`, every privilege to the
/// owner and nothing to anyone else.
pub fn new_schema(owner: &str) -> Vec<(&str, &'static [&'static str])> {
    vec![(owner, all_privileges("schema", 0))]
}

/// What each grantee holds on the `public` schema of a new database
/// (PostgreSQL 15 on): its owner, [`PUBLIC_SCHEMA_OWNER`], holds every
/// privilege, and `PUBLIC` may use it but not create in it.
pub fn new_public_schema() -> Vec<(&'static str, &'static [&'static str])> {
    let mut holders = new_schema(PUBLIC_SCHEMA_OWNER);
    holders.push((PUBLIC, &["USAGE"]));
    holders
}

/// The newest PostgreSQL major pgspec supports (15 to 18), as a
/// `server_version_num`.
const NEWEST_VERSION_NUM: u32 = 180_000;

/// Another word PostgreSQL takes for a privilege, and the privilege it
/// means.
const OTHER_SPELLINGS: &[(&str, &str)] = &[("TEMP", "TEMPORARY")];

/// What a grant on `kind` (as [`all_privileges`] names kinds) may name,
/// in the model's words: every privilege of the kind on the newest
/// supported major, then `ALL`. An older server refuses a privilege it
/// does not have yet (`MAINTAIN` before 17) itself.
pub fn grantable(kind: &str) -> Vec<&'static str> {
    let mut privileges = all_privileges(kind, NEWEST_VERSION_NUM).to_vec();
    privileges.push("ALL");
    privileges
}

/// The other word PostgreSQL takes for `privilege` (`TEMP` for
/// `TEMPORARY`), if it has one.
pub fn other_spelling(privilege: &str) -> Option<&'static str> {
    OTHER_SPELLINGS
        .iter()
        .find(|(_, meant)| *meant == privilege)
        .map(|(other, _)| *other)
}

/// A privilege as the model keeps it: upper-case, `TEMP` spelled
/// `TEMPORARY`, `ALL PRIVILEGES` as `ALL`.
pub fn normalize(privilege: &str) -> String {
    let upper = privilege
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase();
    if upper == "ALL PRIVILEGES" {
        return "ALL".to_owned();
    }
    match OTHER_SPELLINGS.iter().find(|(other, _)| *other == upper) {
        Some((_, meant)) => (*meant).to_owned(),
        None => upper,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintain_comes_with_postgresql_17() {
        assert!(!all_privileges("tables", 160_004).contains(&"MAINTAIN"));
        assert!(all_privileges("table", 170_002).contains(&"MAINTAIN"));
        for kind in [
            "database",
            "schema",
            "tables",
            "sequences",
            "functions",
            "types",
        ] {
            let privileges = all_privileges(kind, 170_000);
            assert!(
                privileges.windows(2).all(|pair| pair[0] < pair[1]),
                "{kind}"
            );
        }
    }

    #[test]
    fn new_objects_give_their_owner_everything() {
        assert_eq!(
            new_database("app"),
            [
                ("app", &["CONNECT", "CREATE", "TEMPORARY"][..]),
                (PUBLIC, &["CONNECT", "TEMPORARY"][..]),
            ]
        );
        assert_eq!(new_schema("app"), [("app", &["CREATE", "USAGE"][..])]);
        assert_eq!(
            new_public_schema(),
            [
                (PUBLIC_SCHEMA_OWNER, &["CREATE", "USAGE"][..]),
                (PUBLIC, &["USAGE"][..]),
            ]
        );
    }

    #[test]
    fn privileges_are_normalised() {
        assert_eq!(normalize("temp"), "TEMPORARY");
        assert_eq!(normalize("all  privileges"), "ALL");
        assert_eq!(normalize("Select"), "SELECT");
    }

    #[test]
    fn a_grant_may_name_what_the_newest_major_has() {
        assert_eq!(grantable("schemas"), ["CREATE", "USAGE", "ALL"]);
        assert!(grantable("tables").contains(&"MAINTAIN"));
        assert_eq!(other_spelling("TEMPORARY"), Some("TEMP"));
        assert_eq!(other_spelling("ALL"), None);
    }
}
