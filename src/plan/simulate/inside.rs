//! The inside of PostgreSQL in the model of apply: settings, roles,
//! memberships, schemas, per-database settings and privileges.
//!
//! Each action is read back from the names in its address and its changes,
//! the same information a reader of the plan has; `simulate` picks the
//! function by the action's kind of object.

use super::new_value;
use crate::model::privileges;
use crate::model::{
    Acl, AclObject, Database, Deployment, Grantees, Membership, PasswordState, Role, Schema,
    address,
};
use crate::plan::diff::grants::{PRIVILEGES, parse_list};
use crate::plan::{Action, ActionKind};

type Path = [(String, String)];

fn current_user(next: &Deployment) -> String {
    next.server
        .as_ref()
        .and_then(|server| server.current_user.clone())
        .unwrap_or_else(|| "postgres".to_owned())
}

pub(super) fn setting(next: &mut Deployment, name: &str, action: &Action) {
    let setting = next.settings.entry(name.to_owned()).or_default();
    // The model includes the restart a postmaster setting waits for.
    for change in &action.changes {
        if let Some(value) = &change.new
            && (change.field == "value" || change.field == "pending_value")
        {
            setting.value = value.clone();
        }
    }
    setting.pending_value = None;
    setting.pending_restart = false;
}

pub(super) fn role(next: &mut Deployment, name: &str, action: &Action) {
    if action.kind == ActionKind::Delete {
        next.roles.remove(name);
        return;
    }
    // A new role starts with CREATE ROLE's defaults; the plan lists what
    // differs from them.
    let role = next.roles.entry(name.to_owned()).or_insert_with(|| Role {
        name: name.to_owned(),
        managed: true,
        inherit: true,
        connection_limit: -1,
        ..Role::default()
    });
    for change in &action.changes {
        let new = change.new.clone().unwrap_or_default();
        let flag = new == "true";
        match change.field.as_ref() {
            "login" => role.login = flag,
            "superuser" => role.superuser = flag,
            "createdb" => role.createdb = flag,
            "createrole" => role.createrole = flag,
            "replication" => role.replication = flag,
            "bypassrls" => role.bypassrls = flag,
            "inherit" => role.inherit = flag,
            "connection_limit" => role.connection_limit = new.parse().unwrap_or(-1),
            "valid_until" => role.valid_until = Some(new),
            "password" => role.password_state = Some(PasswordState::Matches),
            field => {
                if let Some(setting) = field.strip_prefix("settings.") {
                    role.settings.insert(setting.to_owned(), new);
                }
            }
        }
    }
}

pub(super) fn membership(next: &mut Deployment, member: &str, parent: &str) {
    let grantor = current_user(next);
    if let Some(role) = next.roles.get_mut(member)
        && !role.member_of.iter().any(|role| role == parent)
    {
        role.member_of.push(parent.to_owned());
        role.member_of.sort();
        role.memberships.push(Membership {
            role: parent.to_owned(),
            grantor,
            admin: false,
            inherit: None,
            set: None,
        });
        role.memberships.sort();
    }
}

/// Per-database settings and, for a new database, the privileges and the
/// `public` schema it starts with. The caller has already made it exist.
pub(super) fn database(next: &mut Deployment, name: &str, action: &Action) {
    let owner = new_value(action, "owner")
        .cloned()
        .unwrap_or_else(|| current_user(next));
    let Some(database) = next.databases.get_mut(name) else {
        return;
    };
    for change in &action.changes {
        if let (Some(setting), Some(value)) = (change.field.strip_prefix("settings."), &change.new)
        {
            database.settings.insert(setting.to_owned(), value.clone());
        }
    }
    if action.kind == ActionKind::Create {
        for (grantee, held) in privileges::new_database(&owner) {
            set_acl(database, AclObject::Database, grantee, owned(held));
        }
        database.schemas.insert(
            "public".to_owned(),
            Schema {
                name: "public".to_owned(),
                owner: Some(privileges::PUBLIC_SCHEMA_OWNER.to_owned()),
            },
        );
        let public = AclObject::Schema {
            schema: "public".to_owned(),
        };
        for (grantee, held) in privileges::new_public_schema() {
            set_acl(database, public.clone(), grantee, owned(held));
        }
    }
}

/// Privileges as the model holds them.
fn owned(privileges: &[&str]) -> Vec<String> {
    privileges
        .iter()
        .map(|&privilege| privilege.to_owned())
        .collect()
}

fn database_entry<'a>(next: &'a mut Deployment, name: &str) -> &'a mut Database {
    next.databases
        .entry(name.to_owned())
        .or_insert_with(|| Database {
            name: name.to_owned(),
            ..Database::default()
        })
}

pub(super) fn schema(next: &mut Deployment, database: &str, name: &str, action: &Action) {
    let default_owner = current_user(next);
    let database = database_entry(next, database);
    let created = !database.schemas.contains_key(name);
    let schema = database
        .schemas
        .entry(name.to_owned())
        .or_insert_with(|| Schema {
            name: name.to_owned(),
            owner: Some(default_owner),
        });
    if let Some(owner) = new_value(action, "owner") {
        schema.owner = Some(owner.clone());
    }
    let owner = schema.owner.clone().unwrap_or_default();
    if created {
        for (grantee, held) in privileges::new_schema(&owner) {
            let object = AclObject::Schema {
                schema: name.to_owned(),
            };
            set_acl(database, object, grantee, owned(held));
        }
    }
}

/// Sets what `grantee` holds on `object`, creating the object's ACL.
fn set_acl(database: &mut Database, object: AclObject, grantee: &str, privileges: Vec<String>) {
    let index = match database.acls.iter().position(|acl| acl.object == object) {
        Some(index) => index,
        None => {
            database.acls.push(Acl {
                object,
                privileges: Grantees::default(),
            });
            database.acls.len() - 1
        }
    };
    let acl = &mut database.acls[index];
    if privileges.is_empty() {
        acl.privileges.remove(grantee);
    } else {
        acl.privileges.insert(grantee.to_owned(), privileges);
    }
    database.acls.sort();
}

pub(super) fn grant(next: &mut Deployment, path: &Path, action: &Action) {
    let (Some((_, database_name)), Some((_, grantee))) = (path.first(), path.last()) else {
        return;
    };
    let database = database_entry(next, database_name);
    for change in &action.changes {
        let privileges = parse_list(change.new.as_ref());
        let object = if change.field == PRIVILEGES {
            match path {
                [_, (kind, schema), _] if kind == "schema" => Some(AclObject::Schema {
                    schema: schema.clone(),
                }),
                [_, _] => Some(AclObject::Database),
                _ => None,
            }
        } else {
            object_from_field(database, &change.field)
        };
        if let Some(object) = object {
            set_acl(database, object, grantee, privileges);
        }
    }
}

/// The object a change field of a many-object grant names.
fn object_from_field(database: &Database, field: &str) -> Option<AclObject> {
    let parsed = address::parse(field);
    let [(schema_kind, schema), (kind, name)] = parsed.as_slice() else {
        return None;
    };
    if schema_kind != "schema" {
        return None;
    }
    match kind.as_str() {
        "table" => Some(AclObject::Table {
            schema: schema.clone(),
            name: name.clone(),
        }),
        "sequence" => Some(AclObject::Sequence {
            schema: schema.clone(),
            name: name.clone(),
        }),
        "function" => database
            .acls
            .iter()
            .map(|acl| &acl.object)
            .find(|object| {
                matches!(object, AclObject::Function { schema: found, name: function, arguments }
                    if found == schema && &format!("{function}({arguments})") == name)
            })
            .cloned(),
        _ => None,
    }
}

pub(super) fn default_privilege(next: &mut Deployment, path: &Path, action: &Action) {
    let (Some((_, database_name)), Some((_, grantee))) = (path.first(), path.last()) else {
        return;
    };
    let schema = path
        .iter()
        .find(|(kind, _)| kind == "schema")
        .map(|(_, schema)| schema.clone())
        .unwrap_or_default();
    let Some((object, for_role)) = path.iter().find_map(|(kind, role)| {
        kind.strip_prefix("future_")
            .map(|object| (object.to_owned(), role.clone()))
    }) else {
        return;
    };
    let database = database_entry(next, database_name);
    let privileges = parse_list(new_value(action, PRIVILEGES));
    set_acl(
        database,
        AclObject::Default {
            schema,
            object,
            for_role,
        },
        grantee,
        privileges,
    );
}
