//! Indexes taken apart into the spec's parts: key columns or expressions
//! with their non-default operator class, collation and order, INCLUDE
//! columns, the method, the predicate and storage parameters. The server
//! puts them back together when the plan canonicalises the spec's index,
//! so what matters is that the parts build the same index, not the same
//! text.

use std::collections::BTreeMap;

use crate::live::all::{DatabaseSurvey, IndexParts};
use crate::model::Database;
use crate::spec::file::{
    IndexColumn, IndexColumnSpec, IndexSpec, NullsOrder, SettingValue, SortOrder,
};

/// The indexes of one database, and notes about those left out.
pub fn indexes(
    live: &Database,
    survey: &DatabaseSurvey,
    include_system: bool,
) -> (Vec<IndexSpec>, Vec<String>) {
    let mut specs: Vec<IndexSpec> = Vec::new();
    let mut notes = Vec::new();
    let mut partition_indexes = 0;
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (key, index) in &live.indexes {
        let Some(parts) = survey.indexes.get(key) else {
            continue;
        };
        if index.constraint.is_some() && !include_system {
            continue;
        }
        if parts.partition {
            partition_indexes += 1;
            continue;
        }
        let label = format!("`{}.{}`", parts.schema, parts.name);
        if index.invalid {
            notes.push(format!(
                "index {label} is invalid (a failed concurrent build) and is left out; drop it \
                 or build it again, then import"
            ));
            continue;
        }
        if parts.on_partitioned_table {
            notes.push(format!(
                "index {label} is on partitioned table `{}`; indexes of partitioned tables are \
                 not reconciled yet and are left out",
                parts.table
            ));
            continue;
        }
        if parts.schema.contains('.') || parts.table.contains('.') {
            notes.push(format!(
                "index {label} is left out: its table `{}.{}` has a `.` in its name, which the \
                 spec's `table: schema.name` cannot say",
                parts.schema, parts.table
            ));
            continue;
        }
        if let Some(first) = seen.get(&parts.name) {
            notes.push(format!(
                "index {label} is left out: index names are unique per database in a spec, and \
                 `{first}.{}` has the same name",
                parts.name
            ));
            continue;
        }
        if parts
            .keys
            .iter()
            .skip(parts.key_count)
            .any(|key| key.column.is_none())
        {
            notes.push(format!(
                "index {label} is left out: an INCLUDE column is not a plain column"
            ));
            continue;
        }
        seen.insert(parts.name.clone(), parts.schema.clone());
        specs.push(index_spec(parts));
    }
    if partition_indexes > 0 {
        notes.push(format!(
            "{partition_indexes} index(es) of partitions are left out: they come with the index \
             of their partitioned table"
        ));
    }
    specs.sort_by(|left, right| (&left.table, &left.name).cmp(&(&right.table, &right.name)));
    (specs, notes)
}

fn index_spec(parts: &IndexParts) -> IndexSpec {
    let columns = parts
        .keys
        .iter()
        .take(parts.key_count)
        .map(|key| {
            let order = key.descending.then_some(SortOrder::Desc);
            // ASC defaults to NULLS LAST, DESC to NULLS FIRST.
            let nulls = match (key.descending, key.nulls_first) {
                (false, true) => Some(NullsOrder::First),
                (true, false) => Some(NullsOrder::Last),
                _ => None,
            };
            match (&key.column, &key.expression) {
                (Some(column), _)
                    if key.opclass.is_none()
                        && key.collation.is_none()
                        && order.is_none()
                        && nulls.is_none() =>
                {
                    IndexColumn::Name(column.clone())
                }
                (column, expression) => IndexColumn::Full(IndexColumnSpec {
                    column: column.clone(),
                    expression: if column.is_some() {
                        None
                    } else {
                        expression.clone()
                    },
                    opclass: key.opclass.clone(),
                    collation: key.collation.clone(),
                    order,
                    nulls,
                }),
            }
        })
        .collect();
    let include = parts
        .keys
        .iter()
        .skip(parts.key_count)
        .filter_map(|key| key.column.clone())
        .collect();
    let with = parts
        .options
        .iter()
        .filter_map(|option| option.split_once('='))
        .map(|(name, value)| (name.to_owned(), option_value(value)))
        .collect();
    IndexSpec {
        name: parts.name.clone(),
        table: if parts.schema == "public" {
            parts.table.clone()
        } else {
            format!("{}.{}", parts.schema, parts.table)
        },
        columns,
        using: (parts.method != "btree").then(|| parts.method.clone()),
        unique: parts.unique,
        nulls_not_distinct: parts.nulls_not_distinct,
        predicate: parts.predicate.clone(),
        include,
        with,
    }
}

/// A storage parameter's value: a number when it is one.
fn option_value(value: &str) -> SettingValue {
    match value.parse::<i64>() {
        Ok(number) if number.to_string() == value => SettingValue::Integer(number),
        _ => SettingValue::Text(value.to_owned()),
    }
}
