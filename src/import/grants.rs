//! Privileges as grants a person would write.
//!
//! Only what differs from what PostgreSQL gives by itself is written: the
//! owner's own privileges and PUBLIC's defaults (`CONNECT, TEMPORARY` on a
//! database, `USAGE` on `public`, `EXECUTE` on functions) are left out, as
//! the diff leaves grantee/object pairs the spec does not name alone. A
//! grantee holding the same privileges on every table (sequence, function)
//! of a schema gets `tables: all`; otherwise the objects are named, one
//! grant per set of privileges.

use std::collections::{BTreeMap, BTreeSet};

use crate::live::all::DatabaseSurvey;
use crate::model::{AclObject, Database, Grantees};
use crate::spec::file::{DefaultObjectKind, GrantSpec, ObjectSelection};

/// The grantee everyone is.
const PUBLIC: &str = "PUBLIC";

/// What grants need to know about the rest of the import.
pub struct Context<'a> {
    pub live: &'a Database,
    pub survey: &'a DatabaseSurvey,
    /// The owner the spec gives the database, if any.
    pub owner: Option<&'a str>,
    pub version_num: u32,
    pub include_system: bool,
    /// Whether a role may be named in the spec.
    pub known: &'a dyn Fn(&str) -> bool,
}

/// Every privilege of a kind of object, which `ALL` stands for.
fn all_privileges(kind: &str, version_num: u32) -> BTreeSet<String> {
    crate::model::privileges::all_privileges(kind, version_num)
        .iter()
        .map(|name| (*name).to_owned())
        .collect()
}

/// What `grantee` holds on an object of `kind` owned by `owner` when
/// nobody granted or revoked anything (`acldefault`).
fn baseline(kind: &str, owner: &str, grantee: &str, version_num: u32) -> BTreeSet<String> {
    if grantee == owner {
        return all_privileges(kind, version_num);
    }
    if grantee == PUBLIC {
        let names: &[&str] = match kind {
            "database" => &["CONNECT", "TEMPORARY"],
            "function" | "functions" => &["EXECUTE"],
            "types" => &["USAGE"],
            _ => &[],
        };
        return names.iter().map(|name| (*name).to_owned()).collect();
    }
    BTreeSet::new()
}

/// Privileges as the spec lists them: `ALL` when that is every one.
fn privilege_list(held: &BTreeSet<String>, kind: &str, version_num: u32) -> Vec<String> {
    if held.len() > 1 && *held == all_privileges(kind, version_num) {
        vec!["ALL".to_owned()]
    } else {
        held.iter().cloned().collect()
    }
}

fn grant(role: &str, privileges: Vec<String>) -> GrantSpec {
    GrantSpec {
        role: role.to_owned(),
        privileges,
        schema: None,
        tables: None,
        sequences: None,
        functions: None,
        default_for: None,
        for_role: None,
    }
}

/// The grants of one database, and notes about what could not be written.
pub fn grants(context: &Context) -> (Vec<GrantSpec>, Vec<String>) {
    let mut grants = Vec::new();
    let mut notes = Vec::new();
    let database_owner = context.live.owner.clone().unwrap_or_default();
    let schema_owner = |schema: &str| {
        context
            .live
            .schemas
            .get(schema)
            .and_then(|schema| schema.owner.clone())
            .unwrap_or_default()
    };
    let skip_schema =
        |schema: &str| !context.include_system && context.survey.schemas.get(schema) == Some(&true);

    for acl in &context.live.acls {
        match &acl.object {
            AclObject::Database => single(
                context,
                &acl.privileges,
                ("database", "the database"),
                &database_owner,
                None,
                (&mut grants, &mut notes),
            ),
            AclObject::Schema { schema } if !skip_schema(schema) => single(
                context,
                &acl.privileges,
                ("schema", &format!("schema `{schema}`")),
                &schema_owner(schema),
                Some(schema),
                (&mut grants, &mut notes),
            ),
            _ => {}
        }
    }

    let schemas: BTreeSet<&String> = context.live.schemas.keys().collect();
    for schema in schemas {
        if skip_schema(schema) {
            continue;
        }
        for kind in ["table", "sequence", "function"] {
            many(context, schema, kind, &mut grants, &mut notes);
        }
    }
    default_privileges(context, &mut grants, &mut notes);
    (grants, notes)
}

/// Grants on one object with one owner: the database or a schema.
/// `kind` is the kind of object and `what` names it in notes.
fn single(
    context: &Context,
    privileges: &Grantees,
    (kind, what): (&str, &str),
    owner: &str,
    schema: Option<&str>,
    (grants, notes): (&mut Vec<GrantSpec>, &mut Vec<String>),
) {
    let version = context.version_num;
    let mut grantees: BTreeSet<&str> = privileges.keys().map(String::as_str).collect();
    grantees.insert(owner);
    grantees.insert(PUBLIC);
    for grantee in grantees {
        let held = privileges.held(grantee);
        let mut default = baseline(kind, owner, grantee, version);
        // `public` gives everyone USAGE when a database is created.
        if kind == "schema" && schema == Some("public") && grantee == PUBLIC {
            default.insert("USAGE".to_owned());
        }
        if held == default {
            continue;
        }
        if held.is_empty() {
            notes.push(format!(
                "`{grantee}` holds no privileges on {what} (PostgreSQL's default is {}); a \
                 grant cannot list none, so this is not imported",
                default.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
            continue;
        }
        if !(context.known)(grantee) {
            notes.push(format!(
                "the grant to `{grantee}` on {what} is left out: the role is not imported"
            ));
            continue;
        }
        let mut spec = grant(grantee, privilege_list(&held, kind, version));
        spec.schema = schema.map(str::to_owned);
        grants.push(spec);
    }
}

/// One object of a schema-wide kind: its name, owner, whether an extension
/// owns it, and who holds what on it.
struct Object<'a> {
    name: &'a str,
    owner: &'a str,
    extension: bool,
    privileges: &'a Grantees,
}

/// Grants on the tables, sequences or functions of one schema.
fn many(
    context: &Context,
    schema: &str,
    kind: &str,
    grants: &mut Vec<GrantSpec>,
    notes: &mut Vec<String>,
) {
    let version = context.version_num;
    let survey = context.survey;
    let objects: Vec<Object> = context
        .live
        .acls
        .iter()
        .filter_map(|acl| match (&acl.object, kind) {
            (
                AclObject::Table {
                    schema: found,
                    name,
                },
                "table",
            )
            | (
                AclObject::Sequence {
                    schema: found,
                    name,
                },
                "sequence",
            ) if found == schema => {
                let relation = survey
                    .relations
                    .get(found)
                    .and_then(|relations| relations.get(name));
                Some(Object {
                    name,
                    owner: relation.map_or("", |relation| relation.owner.as_str()),
                    extension: relation.is_some_and(|relation| relation.extension),
                    privileges: &acl.privileges,
                })
            }
            (
                AclObject::Function {
                    schema: found,
                    name,
                    arguments,
                },
                "function",
            ) if found == schema => {
                let function = survey.functions.iter().find(|function| {
                    &function.schema == found
                        && &function.name == name
                        && &function.arguments == arguments
                });
                Some(Object {
                    name,
                    owner: function.map_or("", |function| function.owner.as_str()),
                    extension: function.is_some_and(|function| function.extension),
                    privileges: &acl.privileges,
                })
            }
            _ => None,
        })
        .collect();
    if objects.is_empty() {
        return;
    }
    let grantees: BTreeSet<&str> = objects
        .iter()
        .flat_map(|object| object.privileges.keys().map(String::as_str))
        .collect();
    let plural = format!("{kind}s");
    for grantee in grantees {
        // Objects where the grantee holds something PostgreSQL did not give
        // by itself.
        let granted: Vec<&Object> = objects
            .iter()
            .filter(|object| {
                let held = object.privileges.held(grantee);
                !held.is_empty()
                    && held != baseline(kind, object.owner, grantee, version)
                    && (context.include_system || !object.extension)
            })
            .collect();
        if granted.is_empty() {
            continue;
        }
        if !(context.known)(grantee) {
            notes.push(format!(
                "grants to `{grantee}` on {plural} in schema `{schema}` are left out: the role \
                 is not imported"
            ));
            continue;
        }
        let first = objects[0].privileges.held(grantee);
        let uniform = objects
            .iter()
            .all(|object| object.privileges.held(grantee) == first);
        let selections: Vec<(BTreeSet<String>, ObjectSelection)> = if uniform {
            vec![(
                first,
                ObjectSelection::All(crate::spec::file::AllKeyword::All),
            )]
        } else {
            // Overloads of a function share a name in the spec: they must
            // hold the same privileges.
            let mut by_name: BTreeMap<&str, BTreeSet<BTreeSet<String>>> = BTreeMap::new();
            for object in &objects {
                if granted.iter().any(|granted| granted.name == object.name) {
                    by_name
                        .entry(object.name)
                        .or_default()
                        .insert(object.privileges.held(grantee));
                }
            }
            let mut by_set: BTreeMap<BTreeSet<String>, Vec<String>> = BTreeMap::new();
            for (name, sets) in by_name {
                if sets.len() > 1 {
                    notes.push(format!(
                        "`{grantee}` holds different privileges on the overloads of function \
                         `{schema}.{name}`; a grant names functions without arguments, so this \
                         is not imported"
                    ));
                    continue;
                }
                if let Some(set) = sets.into_iter().next() {
                    if set.is_empty() {
                        continue;
                    }
                    by_set.entry(set).or_default().push(name.to_owned());
                }
            }
            by_set
                .into_iter()
                .map(|(set, names)| (set, ObjectSelection::Names(names)))
                .collect()
        };
        for (held, selection) in selections {
            let mut spec = grant(grantee, privilege_list(&held, kind, version));
            spec.schema = Some(schema.to_owned());
            match kind {
                "table" => spec.tables = Some(selection),
                "sequence" => spec.sequences = Some(selection),
                _ => spec.functions = Some(selection),
            }
            grants.push(spec);
        }
    }
}

fn default_kind(object: &str) -> Option<DefaultObjectKind> {
    Some(match object {
        "tables" => DefaultObjectKind::Tables,
        "sequences" => DefaultObjectKind::Sequences,
        "functions" => DefaultObjectKind::Functions,
        "types" => DefaultObjectKind::Types,
        "schemas" => DefaultObjectKind::Schemas,
        _ => return None,
    })
}

/// `ALTER DEFAULT PRIVILEGES` entries as `default_for` grants.
fn default_privileges(context: &Context, grants: &mut Vec<GrantSpec>, notes: &mut Vec<String>) {
    let version = context.version_num;
    for acl in &context.live.acls {
        let AclObject::Default {
            schema,
            object,
            for_role,
        } = &acl.object
        else {
            continue;
        };
        let Some(kind) = default_kind(object) else {
            continue;
        };
        let what = if schema.is_empty() {
            format!("{object} `{for_role}` creates")
        } else {
            format!("{object} `{for_role}` creates in schema `{schema}`")
        };
        if schema.is_empty() && kind != DefaultObjectKind::Schemas {
            // The model knows default privileges in every schema; the spec
            // says `default_for` with a `schema` only. (PostgreSQL drops an
            // entry that is back to the defaults, so one that exists differs.)
            notes.push(format!(
                "default privileges on {what} in every schema are not imported: a \
                 `default_for` grant needs a `schema`"
            ));
            continue;
        }
        if !(context.known)(for_role) {
            notes.push(format!(
                "default privileges on {what} are left out: `{for_role}` is not imported"
            ));
            continue;
        }
        // A global entry holds the whole ACL, the creator's own privileges
        // included; a per-schema entry only adds to the global one.
        let mut grantees: BTreeSet<&str> = acl.privileges.keys().map(String::as_str).collect();
        if schema.is_empty() {
            grantees.insert(for_role);
            grantees.insert(PUBLIC);
        }
        for grantee in grantees {
            let held = acl.privileges.held(grantee);
            let default = if schema.is_empty() {
                baseline(object, for_role, grantee, version)
            } else {
                BTreeSet::new()
            };
            if held == default {
                continue;
            }
            if held.is_empty() {
                notes.push(format!(
                    "`{grantee}` gets no privileges on {what} (PostgreSQL's default is {}); \
                     a grant cannot list none, so this is not imported",
                    default.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
                continue;
            }
            if !(context.known)(grantee) {
                notes.push(format!(
                    "default privileges for `{grantee}` on {what} are left out: the role is \
                     not imported"
                ));
                continue;
            }
            let mut spec = grant(grantee, privilege_list(&held, object, version));
            spec.schema = (!schema.is_empty()).then(|| schema.clone());
            spec.default_for = Some(kind);
            if context.owner != Some(for_role.as_str()) {
                spec.for_role = Some(for_role.clone());
            }
            grants.push(spec);
        }
    }
}
