//! PostgreSQL's privileges, written down once: what `ALL` stands for on
//! each kind of object, for the grants diff and for `import`.
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
}
