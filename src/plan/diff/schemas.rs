//! Schemas and their owners. A schema holds data: pgspec creates and
//! re-owns schemas but never drops one.

use crate::model::address::ObjectKind;
use crate::model::{Database, address, managed_mark};
use crate::plan::{Action, ActionKind, Change, Plan, Risk, Step};
use crate::sql::{quote_ident, quote_literal};

/// Schemas every database has, never worth reporting as unmanaged.
const BUILTIN_SCHEMAS: &[&str] = &["public"];

pub fn diff(deployment: &str, want: &Database, have: Option<&Database>, plan: &mut Plan) {
    for (name, schema) in &want.schemas {
        let address = address::schema(&want.name, name);
        let quoted = quote_ident(name);
        match have.and_then(|database| database.schemas.get(name)) {
            None => {
                let mut statement = format!("CREATE SCHEMA IF NOT EXISTS {quoted}");
                let mut changes = Vec::new();
                if let Some(owner) = &schema.owner {
                    statement.push_str(&format!(" AUTHORIZATION {}", quote_ident(owner)));
                    changes.push(Change::new("owner", None, Some(owner.clone())));
                }
                plan.add(Action {
                    address,
                    object: ObjectKind::Schema,
                    kind: ActionKind::Create,
                    reason: "declared in the spec, not in the database".to_owned(),
                    risk: Risk::none(),
                    changes,
                    steps: vec![Step::Sql {
                        database: Some(want.name.clone()),
                        statements: vec![
                            statement,
                            format!(
                                "COMMENT ON SCHEMA {quoted} IS {}",
                                quote_literal(&managed_mark(deployment))
                            ),
                        ],
                        transaction: true,
                    }],
                });
            }
            Some(live_schema) => {
                if let Some(owner) = &schema.owner
                    && live_schema.owner.as_ref() != Some(owner)
                {
                    plan.add(Action {
                        address,
                        object: ObjectKind::Schema,
                        kind: ActionKind::Update,
                        reason: "owned by another role than the spec says".to_owned(),
                        risk: Risk::none(),
                        changes: vec![Change::new(
                            "owner",
                            live_schema.owner.clone(),
                            Some(owner.clone()),
                        )],
                        steps: vec![Step::Sql {
                            database: Some(want.name.clone()),
                            statements: vec![format!(
                                "ALTER SCHEMA {quoted} OWNER TO {}",
                                quote_ident(owner)
                            )],
                            transaction: true,
                        }],
                    });
                }
            }
        }
    }
    if let Some(have) = have {
        for name in have.schemas.keys() {
            if !want.schemas.contains_key(name) && !BUILTIN_SCHEMAS.contains(&name.as_str()) {
                plan.unmanaged.push(address::schema(&want.name, name));
            }
        }
    }
}
