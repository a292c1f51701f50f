//! PostgreSQL's privileges, written down once: what `ALL` stands for on
//! each kind of object, for the grants diff and for `import`.
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
}
