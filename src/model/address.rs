//! Addresses: the one way an object is named in plan text, JSON, logs and
//! errors — `role.reporting`, `database.app/extension.pg_trgm`,
//! `container.ledger-postgres`.

/// The kind of object an address names: the kind of its last segment
/// (`database.app/extension.pg_trgm` names an extension). Each plan action
/// carries it, set where the action is built, so nothing that decides what
/// to do with an action reads it back from the address text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// `container.NAME`: the server container, its volume and network.
    Container,
    /// `setting.NAME`: a server setting (`ALTER SYSTEM`).
    Setting,
    /// `role.NAME`.
    Role,
    /// `role.MEMBER/membership.ROLE`.
    Membership,
    /// `database.NAME`, with its per-database settings.
    Database,
    /// `database.NAME/schema.NAME`.
    Schema,
    /// `database.NAME/extension.NAME`.
    Extension,
    /// `database.NAME/index.NAME`.
    Index,
    /// `…/grant.GRANTEE`: privileges on the database, a schema or objects
    /// in it.
    Grant,
    /// `…/future_OBJECTS.ROLE/default_privilege.GRANTEE`.
    DefaultPrivilege,
    /// `pooler.NAME`: the PgBouncer container.
    Pooler,
    /// `backup.NAME`: the backup container and its destination.
    Backup,
    /// `access.pg_hba`: the client authentication rules.
    Access,
    /// `exporter.NAME`: a metrics exporter container.
    Exporter,
    /// `tls.CONTAINER`: the server's certificate, key and CA in its data
    /// directory.
    Tls,
    /// `replica.NAME`: a streaming replica, its container, volume and slot.
    Replica,
}

impl ObjectKind {
    /// The kind of object `address` names, from its last segment; `None`
    /// when that segment names no kind of object pgspec plans.
    pub fn of(address: &str) -> Option<ObjectKind> {
        let segments = parse(address);
        let (kind, _) = segments.last()?;
        Some(match kind.as_str() {
            "container" => ObjectKind::Container,
            "setting" => ObjectKind::Setting,
            "role" => ObjectKind::Role,
            "membership" => ObjectKind::Membership,
            "database" => ObjectKind::Database,
            "schema" => ObjectKind::Schema,
            "extension" => ObjectKind::Extension,
            "index" => ObjectKind::Index,
            "grant" => ObjectKind::Grant,
            "default_privilege" => ObjectKind::DefaultPrivilege,
            "pooler" => ObjectKind::Pooler,
            "backup" => ObjectKind::Backup,
            "access" => ObjectKind::Access,
            "exporter" => ObjectKind::Exporter,
            "tls" => ObjectKind::Tls,
            "replica" => ObjectKind::Replica,
            _ => return None,
        })
    }
}

/// A name as it appears in an address: bare when it is plain, otherwise in
/// double quotes with `"` and `\` escaped, so that `/` and `.` in a name
/// cannot be confused with the address's own separators.
pub fn name(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || matches!(character, '_' | '-'));
    if plain {
        name.to_owned()
    } else {
        let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"")
    }
}

pub fn container(container: &str) -> String {
    format!("container.{}", name(container))
}

/// The server's certificate files: `tls.CONTAINER`.
pub fn tls(container: &str) -> String {
    format!("tls.{}", name(container))
}

pub fn setting(setting: &str) -> String {
    format!("setting.{}", name(setting))
}

pub fn role(role: &str) -> String {
    format!("role.{}", name(role))
}

pub fn database(database: &str) -> String {
    format!("database.{}", name(database))
}

pub fn extension(database: &str, extension: &str) -> String {
    format!("{}/extension.{}", self::database(database), name(extension))
}

pub fn schema(database: &str, schema: &str) -> String {
    format!("{}/schema.{}", self::database(database), name(schema))
}

pub fn index(database: &str, index: &str) -> String {
    format!("{}/index.{}", self::database(database), name(index))
}

/// A membership of `member` in `role`: `role.app/membership.pg_read_all_data`.
pub fn membership(member: &str, role: &str) -> String {
    format!("{}/membership.{}", self::role(member), name(role))
}

/// Privileges of `grantee` on an object:
/// `database.app/grant.reporting` (the database),
/// `database.app/schema.public/grant.reporting` (a schema),
/// `database.app/schema.public/table.items/grant.reporting` (one table),
/// `database.app/schema.public/tables.all/grant.reporting` (every existing
/// table). `object` is the part between the database and the grant,
/// made by [`object`].
pub fn grant(database: &str, object: &str, grantee: &str) -> String {
    let mut address = self::database(database);
    if !object.is_empty() {
        address.push('/');
        address.push_str(object);
    }
    format!("{address}/grant.{}", name(grantee))
}

/// The object part of a grant address: `schema.public` alone, or
/// `schema.public/KIND.NAME` (`table.items`, `tables.all`).
pub fn object(schema: &str, kind: Option<(&str, &str)>) -> String {
    match kind {
        None => format!("schema.{}", name(schema)),
        Some((kind, object)) => format!("schema.{}/{kind}.{}", name(schema), name(object)),
    }
}

/// Default privileges of `grantee` on objects `for_role` creates later:
/// `database.app/schema.public/future_tables.threadr/default_privilege.reporting`.
/// An empty `schema` means every schema and leaves the schema segment out.
pub fn default_privilege(
    database: &str,
    schema: &str,
    object: &str,
    for_role: &str,
    grantee: &str,
) -> String {
    let mut address = self::database(database);
    if !schema.is_empty() {
        address.push_str(&format!("/schema.{}", name(schema)));
    }
    format!(
        "{address}/future_{object}.{}/default_privilege.{}",
        name(for_role),
        name(grantee)
    )
}

/// The client authentication rules: `access.pg_hba`.
pub fn access() -> String {
    "access.pg_hba".to_owned()
}

/// `replica.NAME`.
pub fn replica(name_: &str) -> String {
    format!("replica.{}", name(name_))
}

/// `exporter.<deployment>-postgres-exporter`.
pub fn exporter(
    deployment: &str,
    kind: crate::model::monitoring::exporter::ExporterKind,
) -> String {
    format!("exporter.{}", name(&kind.container(deployment)))
}

pub fn pooler(deployment: &str) -> String {
    format!("pooler.{}", name(&format!("{deployment}-pgbouncer")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_stay_bare_and_others_are_quoted() {
        assert_eq!(
            extension("app", "uuid-ossp"),
            "database.app/extension.uuid-ossp"
        );
        assert_eq!(role("a b"), r#"role."a b""#);
        assert_eq!(role(r#"x"y"#), r#"role."x\"y""#);
        assert_eq!(database("a/b"), r#"database."a/b""#);
    }
}

/// Splits an address into `(kind, name)` segments, unquoting names:
/// `database."a/b"/extension.x` → `[("database", "a/b"), ("extension", "x")]`.
pub fn parse(address: &str) -> Vec<(String, String)> {
    let mut segments = Vec::new();
    let mut rest = address;
    while !rest.is_empty() {
        let Some((kind, after)) = rest.split_once('.') else {
            break;
        };
        let (name, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut name = String::new();
            let mut characters = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((index, character)) = characters.next() {
                match character {
                    '\\' => {
                        if let Some((_, escaped)) = characters.next() {
                            name.push(escaped);
                        }
                    }
                    '"' => {
                        end = index + 1;
                        break;
                    }
                    other => name.push(other),
                }
            }
            (name, &quoted[end..])
        } else {
            let end = after.find('/').unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        segments.push((kind.to_owned(), name));
        rest = remaining.strip_prefix('/').unwrap_or(remaining);
    }
    segments
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn the_kind_of_object_is_the_last_segment() {
        for (address, kind) in [
            (container("x-postgres"), ObjectKind::Container),
            (setting("work_mem"), ObjectKind::Setting),
            (role("a/b.c"), ObjectKind::Role),
            (
                membership("app", "pg_read_all_data"),
                ObjectKind::Membership,
            ),
            (database("app"), ObjectKind::Database),
            (schema("app", "database.x"), ObjectKind::Schema),
            (extension("app", "uuid-ossp"), ObjectKind::Extension),
            (index("app", "role.x"), ObjectKind::Index),
            (grant("app", "", "PUBLIC"), ObjectKind::Grant),
            (
                grant("app", &object("public", Some(("table", "t"))), "reader"),
                ObjectKind::Grant,
            ),
            (
                default_privilege("app", "", "tables", "app", "reader"),
                ObjectKind::DefaultPrivilege,
            ),
            (pooler("app"), ObjectKind::Pooler),
            ("backup.app-backup".to_owned(), ObjectKind::Backup),
        ] {
            assert_eq!(ObjectKind::of(&address), Some(kind), "{address}");
        }
        assert_eq!(ObjectKind::of("volume.x"), None);
        assert_eq!(ObjectKind::of(""), None);
    }

    #[test]
    fn parse_inverts_formatting() {
        for (database_name, extension_name) in [("app", "pg_trgm"), ("a/b", "x\"y\\z"), ("é", ".")]
        {
            let formatted = extension(database_name, extension_name);
            assert_eq!(
                parse(&formatted),
                [
                    ("database".to_owned(), database_name.to_owned()),
                    ("extension".to_owned(), extension_name.to_owned())
                ],
                "{formatted}"
            );
        }
    }
}
