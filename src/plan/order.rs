//! Dependency order: container → TLS files → settings → roles → databases → schemas →
//! extensions → indexes → grants → access rules → replicas → pooler → backups → exporters, then deletions in the
//! reverse order, then restarts.

use crate::model::address::ObjectKind;
use crate::plan::{Action, ActionKind, Plan};

/// The phase of an action about a kind of object.
fn phase(object: ObjectKind) -> u8 {
    match object {
        ObjectKind::Container => 0,
        // The files exist before `ssl_cert_file` names them.
        ObjectKind::Tls => 1,
        ObjectKind::Setting => 2,
        ObjectKind::Role => 3,
        ObjectKind::Membership => 4,
        ObjectKind::Database => 5,
        ObjectKind::Schema => 6,
        ObjectKind::Extension => 7,
        ObjectKind::Index => 8,
        ObjectKind::Grant | ObjectKind::DefaultPrivilege => 9,
        ObjectKind::Access => 10,
        // After the replication role and its `pg_hba` rule; before the
        // pooler, whose read-only pools go to them.
        ObjectKind::Replica => 11,
        ObjectKind::Pooler => 12,
        ObjectKind::Backup => 13,
        // After the pooler (whose `stats_users` it needs) and the roles.
        ObjectKind::Exporter => 14,
    }
}

/// Sorts actions into the order apply runs them, and every other list of the
/// plan by address so equal inputs render to equal bytes.
pub fn sort(plan: &mut Plan) {
    // A plan at scale holds tens of thousands of actions: the list gives
    // back what it reserved while it grew, and is sorted by way of their
    // positions, which a stable sort copies instead of the actions.
    plan.actions.shrink_to_fit();
    let mut order: Vec<usize> = (0..plan.actions.len()).collect();
    order.sort_by(|&left, &right| key(&plan.actions[left]).cmp(&key(&plan.actions[right])));
    permute(&mut plan.actions, order);
    plan.unmanaged.sort();
    plan.unmanaged.dedup();
    plan.notes.sort();
    plan.errors.sort();
}

/// Rearranges `items` in place so that position `i` holds what was at
/// `order[i]`, following each cycle of the permutation once.
fn permute<T>(items: &mut [T], mut order: Vec<usize>) {
    for start in 0..items.len() {
        let mut at = start;
        while order[at] != at {
            let from = order[at];
            // Done: `at` will hold what it should once the cycle closes.
            order[at] = at;
            if from == start {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

/// Whether an action replaces a replica for a new image: in a rolling
/// update the standbys go first, one at a time, then the server, so it runs
/// in the container phase, before the server's own replace.
pub fn rolls_before_server(action: &Action) -> bool {
    action.object == ObjectKind::Replica
        && action.kind == ActionKind::Replace
        && action
            .changes
            .iter()
            .any(|change| change.field == "image" && change.old.is_some())
}

fn key(action: &Action) -> (u8, i16, &str) {
    if rolls_before_server(action) {
        return (0, -1, action.address.as_str());
    }
    match action.kind {
        ActionKind::Restart => (2, 0, action.address.as_str()),
        ActionKind::Delete => (1, -i16::from(phase(action.object)), action.address.as_str()),
        _ => (0, i16::from(phase(action.object)), action.address.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn permute_puts_each_item_where_the_order_says(
            order in Just((0..40).collect::<Vec<usize>>()).prop_shuffle()
        ) {
            let mut items: Vec<usize> = (100..140).collect();
            permute(&mut items, order.clone());
            let expected: Vec<usize> = order.iter().map(|from| from + 100).collect();
            prop_assert_eq!(items, expected);
        }
    }

    #[test]
    fn creates_follow_dependencies_and_deletes_run_backwards() {
        let mut plan = Plan {
            actions: vec![
                Action::bare("database.app/index.i", ActionKind::Delete),
                Action::bare("container.x-postgres", ActionKind::Restart),
                Action::bare("database.app/extension.e", ActionKind::Delete),
                Action::bare("database.app/extension.pg_trgm", ActionKind::Create),
                Action::bare("database.app", ActionKind::Create),
                Action::bare("role.app", ActionKind::Create),
                Action::bare("container.x-postgres", ActionKind::Create),
            ],
            ..Plan::default()
        };
        sort(&mut plan);
        let order: Vec<_> = plan
            .actions
            .iter()
            .map(|action| (action.address.as_str(), action.kind))
            .collect();
        assert_eq!(
            order,
            [
                ("container.x-postgres", ActionKind::Create),
                ("role.app", ActionKind::Create),
                ("database.app", ActionKind::Create),
                ("database.app/extension.pg_trgm", ActionKind::Create),
                ("database.app/index.i", ActionKind::Delete),
                ("database.app/extension.e", ActionKind::Delete),
                ("container.x-postgres", ActionKind::Restart),
            ]
        );
    }
}
