//! What was reviewed: the approved plan, looked up by address, against the
//! plan made again under the lock or the one a moved deployment now needs.
//! Both hold up to tens of thousands of actions, so neither is scanned once
//! for each action of the other.

use std::collections::{HashMap, HashSet};

use crate::plan::{Action, Plan};

/// The actions of an approved plan by address.
pub(super) struct Seen<'a> {
    by_address: HashMap<&'a str, Vec<&'a Action>>,
}

impl<'a> Seen<'a> {
    pub(super) fn of(plan: &'a Plan) -> Seen<'a> {
        let mut by_address: HashMap<&str, Vec<&Action>> = HashMap::new();
        for action in &plan.actions {
            by_address
                .entry(action.address.as_str())
                .or_default()
                .push(action);
        }
        Seen { by_address }
    }

    /// Whether the approved plan holds this action as it would run: the
    /// same object, the same kind of change, the same statements and calls.
    /// An approved action the second plan no longer needs is simply not run.
    pub(super) fn holds(&self, action: &Action) -> bool {
        self.actions(action)
            .any(|seen| seen.kind == action.kind && seen.steps == action.steps)
    }

    /// Whether the approved plan holds this very action, reason and all.
    fn holds_exactly(&self, action: &Action) -> bool {
        self.actions(action).any(|seen| *seen == action)
    }

    fn actions(&self, action: &Action) -> impl Iterator<Item = &&'a Action> {
        self.by_address
            .get(action.address.as_str())
            .into_iter()
            .flatten()
    }
}

/// Which addresses differ between the approved and a fresh plan: those of
/// the fresh plan's new actions, then those of the approved plan's actions
/// the fresh one no longer holds, each once.
pub(super) fn describe_moves(approved: &Plan, fresh: &Plan) -> String {
    let (approved_seen, fresh_seen) = (Seen::of(approved), Seen::of(fresh));
    let mut named = HashSet::new();
    let moved: Vec<&str> = fresh
        .actions
        .iter()
        .filter(|action| !approved_seen.holds_exactly(action))
        .chain(
            approved
                .actions
                .iter()
                .filter(|action| !fresh_seen.holds_exactly(action)),
        )
        .map(|action| action.address.as_str())
        .filter(|address| named.insert(*address))
        .collect();
    if moved.is_empty() {
        "objects outside the plan's actions changed".to_owned()
    } else {
        format!("now different: {}", moved.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ActionKind, Step};

    fn plan(actions: Vec<Action>) -> Plan {
        Plan {
            actions,
            ..Plan::default()
        }
    }

    fn sql(address: &str, kind: ActionKind, statement: &str) -> Action {
        Action {
            steps: vec![Step::Sql {
                database: None,
                statements: vec![statement.to_owned()],
                transaction: true,
            }],
            ..Action::bare(address, kind)
        }
    }

    #[test]
    fn an_action_is_reviewed_when_the_same_address_kind_and_steps_were_approved() {
        let approved = plan(vec![
            sql("role.a", ActionKind::Create, "CREATE ROLE a"),
            sql("role.b", ActionKind::Update, "ALTER ROLE b LOGIN"),
        ]);
        let seen = Seen::of(&approved);
        assert!(seen.holds(&sql("role.a", ActionKind::Create, "CREATE ROLE a")));
        // Another reason changes nothing that runs.
        assert!(seen.holds(&Action {
            reason: "said otherwise".to_owned(),
            ..sql("role.a", ActionKind::Create, "CREATE ROLE a")
        }));
        assert!(!seen.holds(&sql("role.a", ActionKind::Create, "CREATE ROLE a LOGIN")));
        assert!(!seen.holds(&sql("role.a", ActionKind::Update, "CREATE ROLE a")));
        assert!(!seen.holds(&sql("role.c", ActionKind::Create, "CREATE ROLE a")));
    }

    #[test]
    fn moves_name_each_changed_address_once_new_ones_first() {
        let approved = plan(vec![
            sql("role.a", ActionKind::Create, "CREATE ROLE a"),
            sql("role.b", ActionKind::Create, "CREATE ROLE b"),
            sql("role.gone", ActionKind::Create, "CREATE ROLE gone"),
        ]);
        let fresh = plan(vec![
            sql("role.a", ActionKind::Create, "CREATE ROLE a"),
            sql("role.b", ActionKind::Update, "ALTER ROLE b LOGIN"),
            sql("role.new", ActionKind::Create, "CREATE ROLE new"),
        ]);
        assert_eq!(
            describe_moves(&approved, &fresh),
            "now different: role.b, role.new, role.gone"
        );
        assert_eq!(
            describe_moves(&approved, &approved),
            "objects outside the plan's actions changed"
        );
    }
}
