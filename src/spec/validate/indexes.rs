//! Checks of a database's `indexes`: the table, the keys, the method and
//! the expressions pgspec builds into `CREATE INDEX`.

use super::checker::Checker;
use crate::spec::expression;
use crate::spec::file::{IndexColumn, IndexSpec};
use crate::spec::load::{join_index, join_key};

const INDEX_METHODS: &[&str] = &["btree", "gin", "gist", "hash", "brin", "spgist"];

impl Checker<'_> {
    /// An index expression or predicate must be one SQL expression: pgspec
    /// puts it into a `CREATE INDEX` statement, and it must not end that
    /// statement or reach outside it.
    pub(super) fn check_expression(&mut self, path: &str, text: &str, what: &str) {
        if let Err(why) = expression::check_one_expression(text) {
            self.error(
                path,
                format!("{what} is not one SQL expression: {}", why.describe()),
            )
            .help = Some(
                "write a single expression, without `;` or comments, with every bracket and \
                 quote closed; pgspec builds it into `CREATE INDEX` and never runs it as a \
                 statement of its own"
                    .to_owned(),
            );
        }
    }

    pub(super) fn check_index(&mut self, path: &str, index: &IndexSpec) {
        let table_path = join_key(path, "table");
        let parts: Vec<&str> = index.table.split('.').collect();
        if parts.len() > 2 {
            self.error(
                &table_path,
                format!("table `{}` has more than a schema and a name", index.table),
            );
        } else {
            for part in &parts {
                self.check_identifier(&table_path, part, "table");
            }
        }
        let columns_path = join_key(path, "columns");
        if index.columns.is_empty() {
            self.error(
                &columns_path,
                format!("index `{}` has no columns", index.name),
            )
            .help = Some("list at least one column or expression".to_owned());
        }
        for (column_index, column) in index.columns.iter().enumerate() {
            let column_path = join_index(&columns_path, column_index);
            if let IndexColumn::Full(full) = column {
                for (key, name, what) in [
                    ("opclass", &full.opclass, "operator class"),
                    ("collation", &full.collation, "collation"),
                ] {
                    if let Some(name) = name {
                        self.check_no_control(&join_key(&column_path, key), name, what);
                    }
                }
            }
            match column {
                IndexColumn::Name(name) => self.check_identifier(&column_path, name, "column"),
                IndexColumn::Full(full) => match (&full.column, &full.expression) {
                    (Some(_), Some(_)) => {
                        self.error(
                            &column_path,
                            "an index key takes `column` or `expression`, not both",
                        );
                    }
                    (None, None) => {
                        self.error(&column_path, "an index key needs `column` or `expression`");
                    }
                    (Some(name), None) => {
                        self.check_identifier(&join_key(&column_path, "column"), name, "column");
                    }
                    (None, Some(expression)) => {
                        let expression_path = join_key(&column_path, "expression");
                        if expression.trim().is_empty() {
                            self.error(&expression_path, "index expression is empty");
                        } else {
                            self.check_expression(&expression_path, expression, "index expression");
                        }
                    }
                },
            }
        }
        for (include_index, name) in index.include.iter().enumerate() {
            self.check_identifier(
                &join_index(&join_key(path, "include"), include_index),
                name,
                "column",
            );
        }
        if let Some(using) = &index.using
            && !INDEX_METHODS.contains(&using.to_ascii_lowercase().as_str())
        {
            self.error_with_choices(
                &join_key(path, "using"),
                format!("unknown index method `{using}`"),
                using,
                INDEX_METHODS,
                INDEX_METHODS.iter().copied(),
            );
        }
        for parameter in index.with.keys() {
            let valid = parameter
                .chars()
                .next()
                .is_some_and(|first| first.is_ascii_lowercase() || first == '_')
                && parameter.chars().all(|character| {
                    character.is_ascii_lowercase() || character.is_ascii_digit() || character == '_'
                });
            if !valid {
                self.error(
                    &join_key(&join_key(path, "with"), parameter),
                    format!("storage parameter `{parameter}` is not a plain lower-case name"),
                );
            }
        }
        if let Some(predicate) = &index.predicate {
            let predicate_path = join_key(path, "where");
            if predicate.trim().is_empty() {
                self.error(&predicate_path, "index predicate is empty");
            } else {
                self.check_expression(&predicate_path, predicate, "index predicate");
            }
        }
    }
}
