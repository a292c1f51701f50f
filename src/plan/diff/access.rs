//! Client authentication rules: the spec's `access` section against the
//! rules the server reads (`pg_hba_file_rules`), compared rule by rule in
//! order. pgspec owns the whole file when the section is present; without
//! it the file is left alone.
//!
//! Also the guards around the rules: a rule set that refuses pgspec's own
//! connection is a plan error unless the spec allows it on purpose, one
//! that refuses the pooler or backup container is a note, and a port
//! published beyond the loopback with no rule narrower than `all` is a
//! note.

use crate::model::Deployment;
use crate::model::access::{
    self, Access, AccessRule, Cidr, Client, Verdict, effective_rules, is_loopback, rules_text,
};
use crate::model::address::{self, ObjectKind};
use crate::plan::{Action, ActionKind, Change, Note, Plan, PlanError, Risk, Step};

/// Plans the rules of a server pgspec has observed.
pub fn diff(desired: &Deployment, live: &Deployment, plan: &mut Plan) {
    let Some(want) = &desired.access else {
        return;
    };
    let address = address::access();
    let Some(container) = &desired.container else {
        plan.errors.push(PlanError {
            address,
            message: "pgspec writes the `access` rules into the server container's data \
                      directory, and this spec runs no container (`postgres.image`)"
                .to_owned(),
        });
        return;
    };
    let rules: Vec<AccessRule> = effective_rules(want, requires_tls(desired))
        .iter()
        .map(AccessRule::canonical)
        .collect();
    let empty = Access::default();
    let have = live.access.as_ref().unwrap_or(&empty);
    guard_lockout(desired, live, want, &rules, plan);
    guard_services(desired, live, &rules, plan);
    if have.rules == rules && have.errors.is_empty() {
        return;
    }
    let mut old = rules_text(&have.rules);
    for error in &have.errors {
        old.push_str(&format!(
            "# line {} is rejected by the server: {}\n",
            error.line, error.message
        ));
    }
    let reason = match (live.access.is_some(), have.rules == rules) {
        (false, _) => "declared in the spec; the server's rules are read once it runs",
        (true, false) if have.errors.is_empty() => "the server's rules differ from the spec",
        (true, false) => {
            "the server's file holds lines it rejects, and its rules differ from the spec"
        }
        (true, true) => "the server's file holds lines it rejects",
    };
    plan.actions.push(Action {
        address,
        object: ObjectKind::Access,
        kind: ActionKind::Update,
        reason: reason.to_owned(),
        risk: Risk::none(),
        changes: vec![Change::new("rules", Some(old), Some(rules_text(&rules)))],
        steps: vec![Step::WriteAccessRules {
            container: container.name.clone(),
            rules,
        }],
    });
}

/// A plan error when the rules refuse pgspec's own connection to a
/// database it uses, unless the spec allows it.
fn guard_lockout(
    desired: &Deployment,
    live: &Deployment,
    want: &Access,
    rules: &[AccessRule],
    plan: &mut Plan,
) {
    let Some(session) = live.access.as_ref().and_then(|have| have.session.as_ref()) else {
        return;
    };
    if want.lockout_allowed {
        return;
    }
    let from = match &session.address {
        None => None,
        Some(text) => match text.parse::<std::net::IpAddr>() {
            Ok(ip) => Some(Cidr {
                address: ip,
                prefix: if ip.is_ipv4() { 32 } else { 128 },
            }),
            Err(_) => return,
        },
    };
    let server_network = live
        .container
        .as_ref()
        .and_then(|container| Cidr::parse(&container.network_subnet));
    let mut databases = vec![session.database.as_str()];
    databases.extend(desired.databases.keys().map(String::as_str));
    databases.dedup();
    let member = |user: &str, group: &str| is_member(live, user, group);
    for database in databases {
        let client = Client {
            from,
            server_network,
            // With `postgres.tls`, pgspec's next sessions use TLS: the
            // certificate and `ssl` come before the rules in the plan.
            ssl: session.ssl || desired.tls.is_some(),
            database,
            user: &session.user,
        };
        let verdict = access::verdict(rules, &client, &member);
        let Some(why) = refusal(&verdict, rules) else {
            continue;
        };
        let origin = session
            .address
            .as_deref()
            .map_or("a Unix socket".to_owned(), |address| format!("`{address}`"));
        plan.errors.push(PlanError {
            address: address::access(),
            message: format!(
                "these rules would lock pgspec out: its own connection (user `{}` from {origin}, \
                 database `{database}`) {why}; add a rule that admits it before the others, or \
                 write `access_lockout: allow` in the spec if that is meant",
                session.user
            ),
        });
        return;
    }
}

/// Notes naming the pooler and backup containers when the rules refuse
/// them: they reach the server over the deployment's network, as the
/// superuser (and, through the pooler, as the spec's login roles).
fn guard_services(desired: &Deployment, live: &Deployment, rules: &[AccessRule], plan: &mut Plan) {
    let Some(container) = &desired.container else {
        return;
    };
    let Some(network) = live
        .container
        .as_ref()
        .and_then(|live| Cidr::parse(&live.network_subnet))
    else {
        return;
    };
    let superuser = container.superuser.as_str();
    let member = |user: &str, group: &str| is_member(live, user, group);
    let databases: Vec<&str> = desired.databases.keys().map(String::as_str).collect();
    let refused = |users: &[&str]| -> Option<String> {
        for user in users {
            for database in &databases {
                let client = Client {
                    from: Some(network),
                    server_network: Some(network),
                    // The pooler and the backup agent use TLS when the
                    // server offers it.
                    ssl: desired.tls.is_some(),
                    database,
                    user,
                };
                if let Some(why) = refusal(&access::verdict(rules, &client, &member), rules) {
                    return Some(format!(
                        "user `{user}` from the deployment's network ({network}) to database \
                         `{database}` {why}"
                    ));
                }
            }
        }
        None
    };
    if desired.pooler.is_some() {
        let mut users = vec![superuser];
        users.extend(
            desired
                .roles
                .values()
                .filter(|role| role.login)
                .map(|role| role.name.as_str()),
        );
        if let Some(why) = refused(&users) {
            plan.notes.push(Note {
                address: address::pooler(&desired.name),
                message: format!(
                    "the `access` rules would refuse the pooler container `{}-pgbouncer`: {why}",
                    desired.name
                ),
            });
        }
    }
    if desired.backup.is_some()
        && let Some(why) = refused(&[superuser])
    {
        plan.notes.push(Note {
            address: super::backup::backup_address(&desired.name),
            message: format!(
                "the `access` rules would refuse the backup container `{}`: {why}",
                crate::model::backup::container_name(&desired.name)
            ),
        });
    }
}

/// Why `verdict` refuses a client, for a message; `None` when it admits it.
fn refusal(verdict: &Verdict, rules: &[AccessRule]) -> Option<String> {
    match verdict {
        Verdict::Admitted { .. } => None,
        Verdict::Unmatched => Some("matches no rule".to_owned()),
        Verdict::Refused { rule, method } => Some(format!(
            "meets rule {} `{}` first, whose method `{method}` it cannot pass",
            rule + 1,
            rules[*rule].line()
        )),
    }
}

/// Whether `user` is a member of `group`, directly or through other roles,
/// as the live server has it.
fn is_member(live: &Deployment, user: &str, group: &str) -> bool {
    let mut seen = vec![user.to_owned()];
    let mut index = 0;
    while let Some(name) = seen.get(index).cloned() {
        index += 1;
        let Some(role) = live.roles.get(&name) else {
            continue;
        };
        for parent in &role.member_of {
            if parent == group {
                return true;
            }
            if !seen.contains(parent) {
                seen.push(parent.clone());
            }
        }
    }
    false
}

/// Notes for ports published beyond the loopback when no `access` rule
/// narrows where clients may connect from.
pub fn listening_notes(desired: &Deployment, plan: &mut Plan) {
    let open = desired.access.as_ref().is_none_or(|access| {
        effective_rules(access, requires_tls(desired))
            .iter()
            .filter(|rule| rule.kind != "local")
            .all(|rule| rule.address.as_deref() == Some("all"))
    });
    if !open {
        return;
    }
    let rules = if desired.access.is_some() {
        "every `access` rule admits `address: all`"
    } else {
        "the spec has no `access` rules, so the server's own file decides"
    };
    if let Some(container) = &desired.container
        && !is_loopback(&container.bind_address)
    {
        plan.notes.push(Note {
            address: address::container(&container.name),
            message: format!(
                "the server is published on `{}:{}`, beyond this host's loopback, and {rules}; \
                 list the networks clients come from in `access`",
                container.bind_address, container.port
            ),
        });
    }
    if let Some(pooler) = &desired.pooler
        && !is_loopback(&pooler.bind_address)
    {
        plan.notes.push(Note {
            address: address::pooler(&desired.name),
            message: format!(
                "the pooler is published on `{}:{}`, beyond this host's loopback, and {rules}; \
                 the server sees the pooler's address, not its clients', so only passwords \
                 guard it",
                pooler.bind_address, pooler.port
            ),
        });
    }
}

/// What the rules are after an action that writes them.
pub fn simulate(next: &mut Deployment, action: &Action) {
    for step in &action.steps {
        if let Step::WriteAccessRules { rules, .. } = step {
            let access = next.access.get_or_insert_with(Access::default);
            access.rules = rules.clone();
            access.errors.clear();
        }
    }
}

/// Whether the spec refuses clients without TLS (`postgres.tls.require`).
pub fn requires_tls(desired: &Deployment) -> bool {
    desired.tls.as_ref().is_some_and(|tls| tls.require)
}
