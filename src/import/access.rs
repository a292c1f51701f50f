//! The client authentication rules of a server in a container pgspec can
//! write them into: the `access` section, rule for rule as the server reads
//! them. All or nothing: pgspec owns the whole file when the section is
//! there, so a rule it cannot write leaves the section out, with a comment.

use crate::model::access::{SECRET_OPTIONS, is_plain_name};
use crate::spec::file::{AccessNames, AccessRuleSpec};

use super::Importer;

impl Importer<'_> {
    /// `access:`, or `None` with a note saying why it is left out.
    pub(super) fn access(&mut self) -> Option<Vec<AccessRuleSpec>> {
        let live = self.survey.deployment.access.as_ref()?;
        if self.options.container.is_none() {
            self.header.push(
                "Client authentication rules are not imported: pgspec writes them only into \
                 a server container it runs."
                    .to_owned(),
            );
            return None;
        }
        if let Some(error) = live.errors.first() {
            self.header.push(format!(
                "Client authentication rules are not imported: line {} of the server's file \
                 is rejected by the server ({}).",
                error.line, error.message
            ));
            return None;
        }
        let unwritable = live.rules.iter().find(|rule| {
            !rule.databases.iter().all(|name| is_plain_name(name, false))
                || !rule.users.iter().all(|name| is_plain_name(name, true))
                || rule.options.iter().any(|(name, value)| {
                    SECRET_OPTIONS.contains(&name.as_str())
                        || value.contains('"')
                        || value.chars().any(char::is_control)
                })
        });
        if let Some(rule) = unwritable {
            self.header.push(format!(
                "Client authentication rules are not imported: pgspec cannot write the rule \
                 `{}` (a quoted name or a secret option), and it owns the whole file when the \
                 spec has `access`.",
                rule.line()
            ));
            return None;
        }
        let names = |names: &[String]| match names {
            [one] => AccessNames::One(one.clone()),
            many => AccessNames::Many(many.to_vec()),
        };
        Some(
            live.rules
                .iter()
                .map(|rule| AccessRuleSpec {
                    kind: rule.kind.clone(),
                    database: names(&rule.databases),
                    user: names(&rule.users),
                    address: rule.address.clone(),
                    method: rule.method.clone(),
                    options: rule.options.clone(),
                })
                .collect(),
        )
    }
}
