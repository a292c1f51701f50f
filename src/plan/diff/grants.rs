//! Privileges: for each (grantee, object) pair the spec names, the spec is
//! the whole set. Missing privileges are granted and extra ones revoked, as
//! the smallest GRANT/REVOKE delta; pairs the spec does not name are left
//! alone. "All tables in schema" is about the tables that exist now, so its
//! action names each table; default privileges are about tables created
//! later and are their own actions.
//!
//! Every object's change is its own step, run one after another.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::address::ObjectKind;
use crate::model::privileges::{self, PUBLIC};
use crate::model::{Acl, AclObject, Database, Deployment, Grant, GrantTarget, address};
use crate::plan::{Action, ActionKind, Change, Note, Plan, PlanError, Risk, Step};
use crate::sql::{qualified, quote_ident};

/// The field of a change that lists one object's privileges.
pub const PRIVILEGES: &str = "privileges";

/// Every privilege of a kind of object, which `ALL` stands for.
fn all_privileges(kind: &str, version_num: u32) -> Vec<&'static str> {
    privileges::all_privileges(kind, version_num).to_vec()
}

fn expand(privileges: &[String], kind: &str, version_num: u32) -> BTreeSet<String> {
    let mut expanded = BTreeSet::new();
    for privilege in privileges {
        if privilege == "ALL" {
            expanded.extend(
                all_privileges(kind, version_num)
                    .into_iter()
                    .map(str::to_owned),
            );
        } else {
            expanded.insert(privilege.clone());
        }
    }
    expanded
}

/// A grantee in SQL: `PUBLIC` is a keyword, every role name is quoted.
pub fn grantee_sql(grantee: &str) -> String {
    if grantee == PUBLIC {
        PUBLIC.to_owned()
    } else {
        quote_ident(grantee)
    }
}

/// Privileges as plan text: `CONNECT, TEMPORARY`.
pub fn list_text(privileges: &BTreeSet<String>) -> Option<String> {
    (!privileges.is_empty()).then(|| {
        privileges
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Reads `list_text` back.
pub fn parse_list(text: Option<&String>) -> Vec<String> {
    text.map(|text| text.split(", ").map(str::to_owned).collect())
        .unwrap_or_default()
}

/// What the diff needs to know besides the two databases.
struct Context<'a> {
    want: &'a Database,
    have: Option<&'a Database>,
    version_num: u32,
    /// The role that owns what pgspec creates without an owner.
    current_user: &'a str,
    /// Indexes built once, so a spec of thousands of grants on thousands of
    /// tables is diffed in N log N, not N².
    acls: BTreeMap<&'a AclObject, &'a Acl>,
    /// Live tables, sequences and functions by (kind, schema).
    objects: BTreeMap<(&'static str, &'a str), Vec<&'a AclObject>>,
    /// The same by (kind, schema, name); overloaded functions share a name.
    named: BTreeMap<(&'static str, &'a str, &'a str), Vec<&'a AclObject>>,
    /// The spec's grants by grantee.
    grants_of: BTreeMap<&'a str, Vec<&'a Grant>>,
}

/// The kind, schema and name of a table, sequence or function.
fn kind_schema_name(object: &AclObject) -> Option<(&'static str, &str, &str)> {
    match object {
        AclObject::Table { schema, name } => Some(("table", schema, name)),
        AclObject::Sequence { schema, name } => Some(("sequence", schema, name)),
        AclObject::Function { schema, name, .. } => Some(("function", schema, name)),
        _ => None,
    }
}

impl<'a> Context<'a> {
    fn new(want: &'a Database, have: Option<&'a Database>, live: &'a Deployment) -> Context<'a> {
        let server = live.server.as_ref();
        let mut context = Context {
            want,
            have,
            version_num: server.map_or(0, |server| server.version_num),
            current_user: server
                .and_then(|server| server.current_user.as_deref())
                .unwrap_or("postgres"),
            acls: BTreeMap::new(),
            objects: BTreeMap::new(),
            named: BTreeMap::new(),
            grants_of: BTreeMap::new(),
        };
        for acl in have.map(|have| have.acls.as_slice()).unwrap_or_default() {
            context.acls.entry(&acl.object).or_insert(acl);
            if let Some((kind, schema, name)) = kind_schema_name(&acl.object) {
                context
                    .objects
                    .entry((kind, schema))
                    .or_default()
                    .push(&acl.object);
                context
                    .named
                    .entry((kind, schema, name))
                    .or_default()
                    .push(&acl.object);
            }
        }
        for grant in &want.grants {
            context
                .grants_of
                .entry(grant.grantee.as_str())
                .or_default()
                .push(grant);
        }
        context
    }

    fn acl(&self, object: &AclObject) -> Option<&Acl> {
        self.acls.get(object).copied()
    }

    /// The spec's grants to `grantee`.
    fn grants_to(&self, grantee: &str) -> &[&'a Grant] {
        self.grants_of.get(grantee).map_or(&[], Vec::as_slice)
    }

    /// What `grantee` holds on `object`; `None` when the object does not
    /// exist and will not be created by this plan.
    fn held(&self, object: &AclObject, grantee: &str) -> Option<BTreeSet<String>> {
        if let Some(acl) = self.acl(object) {
            return Some(acl.privileges.held(grantee));
        }
        let defaults = match object {
            // A database the plan creates starts with acldefault('d').
            AclObject::Database => match self.have {
                None => privileges::new_database(
                    self.want.owner.as_deref().unwrap_or(self.current_user),
                ),
                Some(_) => Vec::new(),
            },
            // `public` in a new database (PostgreSQL 15+).
            AclObject::Schema { schema } if self.have.is_none() && schema == "public" => {
                privileges::new_public_schema()
            }
            AclObject::Schema { schema } => {
                let exists = self
                    .have
                    .is_some_and(|database| database.schemas.contains_key(schema));
                if exists {
                    Vec::new()
                } else {
                    // A schema the plan creates starts with acldefault('n').
                    let planned = self.want.schemas.get(schema)?;
                    privileges::new_schema(planned.owner.as_deref().unwrap_or(self.current_user))
                }
            }
            AclObject::Default { .. } => Vec::new(),
            _ => return None,
        };
        Some(
            defaults
                .into_iter()
                .find(|(role, _)| *role == grantee)
                .map(|(_, privileges)| {
                    privileges
                        .iter()
                        .map(|&privilege| privilege.to_owned())
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    /// Objects of a kind in a schema, live.
    fn objects_in(&self, kind: &'static str, schema: &str) -> Vec<&'a AclObject> {
        self.objects
            .get(&(kind, schema))
            .cloned()
            .unwrap_or_default()
    }

    /// Objects of a kind in a schema with a name, live.
    fn objects_named(&self, kind: &'static str, schema: &str, name: &str) -> Vec<&'a AclObject> {
        self.named
            .get(&(kind, schema, name))
            .cloned()
            .unwrap_or_default()
    }
}

/// The SQL name of an object after `ON`.
fn object_sql(object: &AclObject) -> String {
    match object {
        AclObject::Database | AclObject::Default { .. } => String::new(),
        AclObject::Schema { schema } => format!("SCHEMA {}", quote_ident(schema)),
        AclObject::Table { schema, name } => format!("TABLE {}", qualified(schema, name)),
        AclObject::Sequence { schema, name } => format!("SEQUENCE {}", qualified(schema, name)),
        // The argument list is the server's own text
        // (pg_get_function_identity_arguments), not a spec value.
        AclObject::Function {
            schema,
            name,
            arguments,
        } => format!("FUNCTION {}({arguments})", qualified(schema, name)),
    }
}

/// The change field naming one object of a many-object action:
/// `schema.public/table.items`, `schema.public/function."f(integer)"`.
pub fn object_field(object: &AclObject) -> String {
    match object {
        AclObject::Table { schema, name } => address::object(schema, Some(("table", name))),
        AclObject::Sequence { schema, name } => address::object(schema, Some(("sequence", name))),
        AclObject::Function {
            schema,
            name,
            arguments,
        } => address::object(schema, Some(("function", &format!("{name}({arguments})")))),
        AclObject::Schema { schema } => address::object(schema, None),
        AclObject::Database | AclObject::Default { .. } => PRIVILEGES.to_owned(),
    }
}

/// GRANT and REVOKE statements that turn `held` into `wanted`.
fn delta_statements(
    on: &str,
    grantee: &str,
    wanted: &BTreeSet<String>,
    held: &BTreeSet<String>,
) -> Vec<String> {
    let missing: Vec<&str> = wanted.difference(held).map(String::as_str).collect();
    let extra: Vec<&str> = held.difference(wanted).map(String::as_str).collect();
    let grantee = grantee_sql(grantee);
    let mut statements = Vec::new();
    if !missing.is_empty() {
        statements.push(format!("GRANT {} ON {on} TO {grantee}", missing.join(", ")));
    }
    if !extra.is_empty() {
        statements.push(format!(
            "REVOKE {} ON {on} FROM {grantee}",
            extra.join(", ")
        ));
    }
    statements
}

pub fn diff(want: &Database, have: Option<&Database>, live: &Deployment, plan: &mut Plan) {
    let context = Context::new(want, have, live);
    for grant in &want.grants {
        match &grant.target {
            GrantTarget::Database => single(&context, grant, AclObject::Database, "database", plan),
            GrantTarget::Schema { schema } => single(
                &context,
                grant,
                AclObject::Schema {
                    schema: schema.clone(),
                },
                "schema",
                plan,
            ),
            GrantTarget::Tables { schema, names } => {
                many(&context, grant, "table", schema, names.as_deref(), plan);
            }
            GrantTarget::Sequences { schema, names } => {
                many(&context, grant, "sequence", schema, names.as_deref(), plan);
            }
            GrantTarget::Functions { schema, names } => {
                many(&context, grant, "function", schema, names.as_deref(), plan);
            }
            GrantTarget::Default {
                schema,
                object,
                for_role,
            } => default_privilege(&context, grant, schema, object, for_role.as_deref(), plan),
        }
    }
}

/// Why a grantee's privileges on one object change.
fn held_reason(grantee: &str, kind: &str, holds_any: bool) -> String {
    if !holds_any {
        format!("the spec grants `{grantee}` privileges on this {kind}; it holds none")
    } else {
        format!("`{grantee}` holds other privileges on this {kind} than the spec grants")
    }
}

/// A grant on the database or one schema.
fn single(context: &Context, grant: &Grant, object: AclObject, kind: &str, plan: &mut Plan) {
    let database = &context.want.name;
    let object_address = match &object {
        AclObject::Schema { schema } => address::object(schema, None),
        _ => String::new(),
    };
    let address = address::grant(database, &object_address, &grant.grantee);
    let wanted = expand(&grant.privileges, kind, context.version_num);
    let Some(held) = context.held(&object, &grant.grantee) else {
        plan.notes.push(Note {
            address,
            message: "the schema does not exist and the spec does not create it; the grant \
                      is planned once it exists"
                .to_owned(),
        });
        return;
    };
    if wanted == held {
        return;
    }
    let on = match &object {
        AclObject::Database => format!("DATABASE {}", quote_ident(database)),
        other => object_sql(other),
    };
    let run_in = match object {
        AclObject::Database => None,
        _ => Some(database.clone()),
    };
    let statements = delta_statements(&on, &grant.grantee, &wanted, &held);
    let reason = held_reason(&grant.grantee, kind, !held.is_empty());
    plan.add(one_object_action(
        address,
        ObjectKind::Grant,
        reason,
        &held,
        &wanted,
        run_in,
        statements,
    ));
}

/// The action that turns what a grantee holds on one object into what the
/// spec grants, with `statements` run in `database` (`None`: the
/// maintenance database).
fn one_object_action(
    address: String,
    object: ObjectKind,
    reason: String,
    held: &BTreeSet<String>,
    wanted: &BTreeSet<String>,
    database: Option<String>,
    statements: Vec<String>,
) -> Action {
    Action {
        address,
        object,
        kind: if held.is_empty() {
            ActionKind::Create
        } else {
            ActionKind::Update
        },
        reason,
        risk: Risk::none(),
        changes: vec![Change::new(PRIVILEGES, list_text(held), list_text(wanted))],
        steps: vec![Step::Sql {
            database,
            statements,
            transaction: true,
        }],
    }
}

/// A grant on tables, sequences or functions of a schema: every one that
/// exists now (`names` is `None`) or the named ones.
fn many(
    context: &Context,
    grant: &Grant,
    kind: &'static str,
    schema: &str,
    names: Option<&[String]>,
    plan: &mut Plan,
) {
    let database = &context.want.name;
    let name_of = |object: &AclObject| {
        kind_schema_name(object)
            .map(|(_, _, name)| name.to_owned())
            .unwrap_or_default()
    };
    // One action for "all", one per named object otherwise.
    let groups: Vec<(String, Vec<&AclObject>)> = match names {
        None => vec![(format!("{kind}s.all"), context.objects_in(kind, schema))],
        Some(names) => names
            .iter()
            .map(|name| {
                (
                    format!("{kind}.{}", address::name(name)),
                    context.objects_named(kind, schema, name),
                )
            })
            .collect(),
    };
    for (segment, objects) in groups {
        let address = address::grant(
            database,
            &format!("{}/{segment}", address::object(schema, None)),
            &grant.grantee,
        );
        if objects.is_empty() {
            if names.is_some() {
                plan.notes.push(Note {
                    address,
                    message: format!(
                        "no {kind} of that name exists in schema `{schema}`; the grant is \
                         planned once it exists"
                    ),
                });
            }
            continue;
        }
        // An object several grants name gets the union of their privileges,
        // planned once: by the "all" grant when there is one.
        let covered_by_all = names.is_some()
            && context
                .grants_to(&grant.grantee)
                .iter()
                .any(|other| target_covers(&other.target, kind, schema, None));
        if covered_by_all {
            continue;
        }
        let mut changes = Vec::new();
        let mut steps = Vec::new();
        let mut new_grants = 0;
        for object in &objects {
            let wanted = wanted_on(context, &grant.grantee, kind, schema, &name_of(object));
            let held = context.held(object, &grant.grantee).unwrap_or_default();
            if held == wanted {
                continue;
            }
            if held.is_empty() {
                new_grants += 1;
            }
            changes.push(Change::new(
                object_field(object),
                list_text(&held),
                list_text(&wanted),
            ));
            steps.push(Step::Sql {
                database: Some(database.clone()),
                statements: delta_statements(&object_sql(object), &grant.grantee, &wanted, &held),
                transaction: true,
            });
        }
        if steps.is_empty() {
            continue;
        }
        let reason = if names.is_none() {
            format!(
                "{} of {} existing {kind}s in schema `{schema}` differ from the spec's grant to \
                 `{}`; this covers {kind}s that exist now, default privileges cover later ones",
                steps.len(),
                objects.len(),
                grant.grantee
            )
        } else {
            held_reason(&grant.grantee, kind, new_grants < steps.len())
        };
        plan.add(Action {
            address,
            object: ObjectKind::Grant,
            kind: if new_grants == steps.len() {
                ActionKind::Create
            } else {
                ActionKind::Update
            },
            reason,
            risk: Risk::none(),
            changes,
            steps,
        });
    }
}

/// Whether a grant target covers the objects of `kind` in `schema` named
/// `name` (`None`: whether it covers all of them).
fn target_covers(target: &GrantTarget, kind: &str, schema: &str, name: Option<&str>) -> bool {
    let (target_kind, target_schema, names) = match target {
        GrantTarget::Tables { schema, names } => ("table", schema, names),
        GrantTarget::Sequences { schema, names } => ("sequence", schema, names),
        GrantTarget::Functions { schema, names } => ("function", schema, names),
        _ => return false,
    };
    target_kind == kind
        && target_schema == schema
        && match (names, name) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(names), Some(name)) => names.iter().any(|listed| listed == name),
        }
}

/// Everything the spec grants `grantee` on one object, across grants.
fn wanted_on(
    context: &Context,
    grantee: &str,
    kind: &str,
    schema: &str,
    name: &str,
) -> BTreeSet<String> {
    context
        .grants_to(grantee)
        .iter()
        .filter(|grant| target_covers(&grant.target, kind, schema, Some(name)))
        .flat_map(|grant| expand(&grant.privileges, kind, context.version_num))
        .collect()
}

/// Default privileges on objects `for_role` (default: the database owner)
/// creates later in `schema`.
fn default_privilege(
    context: &Context,
    grant: &Grant,
    schema: &str,
    object: &str,
    for_role: Option<&str>,
    plan: &mut Plan,
) {
    let database = &context.want.name;
    let owner = for_role
        .or(context.want.owner.as_deref())
        .or_else(|| context.have.and_then(|have| have.owner.as_deref()))
        .unwrap_or(context.current_user);
    let address = address::default_privilege(database, schema, object, owner, &grant.grantee);
    if object == "schemas" && !schema.is_empty() {
        plan.errors.push(PlanError {
            address,
            message: "default privileges on schemas cannot be limited to a schema".to_owned(),
        });
        return;
    }
    let wanted = expand(&grant.privileges, object, context.version_num);
    let acl_object = AclObject::Default {
        schema: schema.to_owned(),
        object: object.to_owned(),
        for_role: owner.to_owned(),
    };
    let held = context
        .held(&acl_object, &grant.grantee)
        .unwrap_or_default();
    if held == wanted {
        return;
    }
    let mut prefix = format!("ALTER DEFAULT PRIVILEGES FOR ROLE {}", quote_ident(owner));
    if !schema.is_empty() {
        prefix.push_str(&format!(" IN SCHEMA {}", quote_ident(schema)));
    }
    let statements = delta_statements(&object.to_uppercase(), &grant.grantee, &wanted, &held)
        .into_iter()
        .map(|statement| format!("{prefix} {statement}"))
        .collect();
    let reason = format!(
        "{object} `{owner}` creates later{} differ from the spec's default privileges for `{}`",
        if schema.is_empty() {
            String::new()
        } else {
            format!(" in schema `{schema}`")
        },
        grant.grantee
    );
    plan.add(one_object_action(
        address,
        ObjectKind::DefaultPrivilege,
        reason,
        &held,
        &wanted,
        Some(database.clone()),
        statements,
    ));
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{Schema, ServerInfo};

    fn acl(object: AclObject, grants: &[(&str, &[&str])]) -> Acl {
        Acl {
            object,
            privileges: grants
                .iter()
                .map(|(grantee, privileges)| {
                    (
                        (*grantee).to_owned(),
                        privileges.iter().map(|p| (*p).to_owned()).collect(),
                    )
                })
                .collect(),
        }
    }

    fn table(name: &str) -> AclObject {
        AclObject::Table {
            schema: "public".to_owned(),
            name: name.to_owned(),
        }
    }

    fn live(acls: Vec<Acl>) -> (Deployment, Database) {
        let database = Database {
            name: "app".to_owned(),
            owner: Some("app".to_owned()),
            schemas: BTreeMap::from([(
                "public".to_owned(),
                Schema {
                    name: "public".to_owned(),
                    owner: Some("pg_database_owner".to_owned()),
                },
            )]),
            acls,
            ..Database::default()
        };
        let deployment = Deployment {
            server: Some(ServerInfo {
                version_num: 170_000,
                current_user: Some("postgres".to_owned()),
                ..ServerInfo::default()
            }),
            ..Deployment::default()
        };
        (deployment, database)
    }

    fn want(grants: Vec<Grant>) -> Database {
        Database {
            name: "app".to_owned(),
            owner: Some("app".to_owned()),
            grants,
            ..Database::default()
        }
    }

    fn grant(grantee: &str, target: GrantTarget, privileges: &[&str]) -> Grant {
        Grant {
            grantee: grantee.to_owned(),
            target,
            privileges: privileges.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    fn statements(plan: &Plan) -> Vec<String> {
        plan.actions
            .iter()
            .flat_map(|action| &action.steps)
            .flat_map(|step| match step {
                Step::Sql { statements, .. } => statements.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn the_delta_is_minimal_and_public_is_a_keyword() {
        let (deployment, have) = live(vec![acl(
            AclObject::Database,
            &[
                ("app", &["CONNECT", "CREATE", "TEMPORARY"]),
                ("PUBLIC", &["CONNECT", "TEMPORARY"]),
            ],
        )]);
        let want = want(vec![grant(PUBLIC, GrantTarget::Database, &["TEMPORARY"])]);
        let mut plan = Plan::default();
        diff(&want, Some(&have), &deployment, &mut plan);
        assert_eq!(
            statements(&plan),
            [r#"REVOKE CONNECT ON DATABASE "app" FROM PUBLIC"#]
        );
        assert_eq!(plan.actions[0].address, "database.app/grant.PUBLIC");
    }

    #[test]
    fn all_tables_names_each_table_and_runs_one_step_per_table() {
        let (deployment, have) = live(vec![
            acl(table("a"), &[("app", &["SELECT"])]),
            acl(table("b"), &[("reader", &["INSERT", "SELECT"])]),
            acl(table("c"), &[("reader", &["SELECT"])]),
        ]);
        let want = want(vec![grant(
            "reader",
            GrantTarget::Tables {
                schema: "public".to_owned(),
                names: None,
            },
            &["SELECT"],
        )]);
        let mut plan = Plan::default();
        diff(&want, Some(&have), &deployment, &mut plan);
        let action = &plan.actions[0];
        assert_eq!(
            action.address,
            "database.app/schema.public/tables.all/grant.reader"
        );
        let fields: Vec<&str> = action.changes.iter().map(|c| c.field.as_ref()).collect();
        assert_eq!(fields, ["schema.public/table.a", "schema.public/table.b"]);
        assert_eq!(action.steps.len(), 2);
        assert_eq!(
            statements(&plan),
            [
                r#"GRANT SELECT ON TABLE "public"."a" TO "reader""#,
                r#"REVOKE INSERT ON TABLE "public"."b" FROM "reader""#,
            ]
        );
    }

    #[test]
    fn default_privileges_are_for_the_owner_and_apart_from_existing_tables() {
        let (deployment, have) = live(Vec::new());
        let want = want(vec![grant(
            "reader",
            GrantTarget::Default {
                schema: "public".to_owned(),
                object: "tables".to_owned(),
                for_role: None,
            },
            &["SELECT"],
        )]);
        let mut plan = Plan::default();
        diff(&want, Some(&have), &deployment, &mut plan);
        assert_eq!(
            plan.actions[0].address,
            "database.app/schema.public/future_tables.app/default_privilege.reader"
        );
        assert_eq!(
            statements(&plan),
            [
                r#"ALTER DEFAULT PRIVILEGES FOR ROLE "app" IN SCHEMA "public" GRANT SELECT ON TABLES TO "reader""#
            ]
        );
    }

    #[test]
    fn all_expands_per_server_version() {
        assert!(expand(&["ALL".to_owned()], "tables", 170_000).contains("MAINTAIN"));
        assert!(!expand(&["ALL".to_owned()], "tables", 150_000).contains("MAINTAIN"));
    }
}
