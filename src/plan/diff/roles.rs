//! Roles, their passwords and per-role settings, and memberships.
//!
//! A role the spec declares is declared whole: attributes it does not
//! mention take PostgreSQL's defaults (`NOLOGIN`, `INHERIT`, …). Per-role
//! settings and memberships the spec names are added; others are reported,
//! never removed.

use crate::model::DiffOptions;
use crate::model::address::ObjectKind;
use crate::model::{Deployment, MAX_SCRAM_ITERATIONS, PasswordState, Role, address, managed_mark};
use crate::plan::{Action, ActionKind, Change, Note, Plan, PlanError, Risk, Step};
use crate::sql::{quote_ident, quote_literal};

use super::settings;

/// Reads one boolean attribute of a role.
type Flag = fn(&Role) -> bool;

/// Boolean attributes: field name, keyword when true, keyword when false.
const FLAGS: &[(&str, &str, &str, Flag)] = &[
    ("login", "LOGIN", "NOLOGIN", |role| role.login),
    ("superuser", "SUPERUSER", "NOSUPERUSER", |role| {
        role.superuser
    }),
    ("createdb", "CREATEDB", "NOCREATEDB", |role| role.createdb),
    ("createrole", "CREATEROLE", "NOCREATEROLE", |role| {
        role.createrole
    }),
    ("replication", "REPLICATION", "NOREPLICATION", |role| {
        role.replication
    }),
    ("bypassrls", "BYPASSRLS", "NOBYPASSRLS", |role| {
        role.bypassrls
    }),
    ("inherit", "INHERIT", "NOINHERIT", |role| role.inherit),
];

pub fn diff(desired: &Deployment, live: &Deployment, options: &DiffOptions, plan: &mut Plan) {
    let current_user = live
        .server
        .as_ref()
        .and_then(|server| server.current_user.as_deref());
    for (name, want) in &desired.roles {
        match live.roles.get(name) {
            None => plan.add(create(want, &desired.name)),
            Some(have) => update(want, have, live, current_user, plan),
        }
        diff_memberships(want, live.roles.get(name), plan);
    }
    for (name, have) in &live.roles {
        if desired.roles.contains_key(name) {
            continue;
        }
        let address = address::role(name);
        let protected = have.superuser || Some(name.as_str()) == current_user;
        if have.managed && options.prune && !protected {
            plan.add(Action {
                address,
                object: ObjectKind::Role,
                kind: ActionKind::Delete,
                reason: "created by pgspec, no longer in the spec, and pruning is on".to_owned(),
                risk: Risk::none(),
                changes: vec![Change::new("login", Some(have.login.to_string()), None)],
                // DROP ROLE fails while the role owns objects or holds
                // privileges; pgspec never reassigns or drops those for it.
                steps: vec![Step::Sql {
                    database: None,
                    statements: vec![format!("DROP ROLE {}", quote_ident(name))],
                    transaction: true,
                }],
            });
        } else {
            plan.unmanaged.push(address);
        }
    }
}

fn flag_keywords(role: &Role) -> Vec<&'static str> {
    FLAGS
        .iter()
        .map(|(_, yes, no, get)| if get(role) { *yes } else { *no })
        .collect()
}

fn create(want: &Role, deployment: &str) -> Action {
    let name = quote_ident(&want.name);
    let mut statement = format!("CREATE ROLE {name} WITH {}", flag_keywords(want).join(" "));
    statement.push_str(&format!(" CONNECTION LIMIT {}", want.connection_limit));
    // The plan lists what differs from CREATE ROLE's own defaults
    // (NOLOGIN … INHERIT, no connection limit); the statement spells out all.
    let defaults = Role {
        inherit: true,
        connection_limit: -1,
        ..Role::default()
    };
    let mut changes: Vec<Change> = FLAGS
        .iter()
        .filter(|(_, _, _, get)| get(want) != get(&defaults))
        .map(|(field, _, _, get)| Change::new(*field, None, Some(get(want).to_string())))
        .collect();
    if want.connection_limit != defaults.connection_limit {
        changes.push(Change::new(
            "connection_limit",
            None,
            Some(want.connection_limit.to_string()),
        ));
    }
    if let Some(valid_until) = &want.valid_until {
        statement.push_str(&format!(" VALID UNTIL {}", quote_literal(valid_until)));
        changes.push(Change::new("valid_until", None, Some(valid_until.clone())));
    }
    let mut statements = vec![
        statement,
        format!(
            "COMMENT ON ROLE {name} IS {}",
            quote_literal(&managed_mark(deployment))
        ),
    ];
    for (setting, value) in &want.settings {
        statements.push(set_statement(&want.name, setting, value));
        changes.push(Change::new(
            format!("settings.{setting}"),
            None,
            Some(value.clone()),
        ));
    }
    let mut steps = vec![Step::Sql {
        database: None,
        statements,
        transaction: true,
    }];
    if let Some(secret) = &want.password {
        changes.push(Change::sensitive("password"));
        steps.push(Step::SetPassword {
            role: want.name.clone(),
            secret: secret.clone(),
        });
    }
    Action {
        address: address::role(&want.name),
        object: ObjectKind::Role,
        kind: ActionKind::Create,
        reason: "declared in the spec, not on the server".to_owned(),
        risk: Risk::none(),
        changes,
        steps,
    }
}

fn set_statement(role: &str, setting: &str, value: &str) -> String {
    format!(
        "ALTER ROLE {} SET {} = {}",
        quote_ident(role),
        quote_ident(setting),
        settings::value_sql(setting, value)
    )
}

fn update(
    want: &Role,
    have: &Role,
    live: &Deployment,
    current_user: Option<&str>,
    plan: &mut Plan,
) {
    let address = address::role(&want.name);
    let name = quote_ident(&want.name);
    let mut changes = Vec::new();
    let mut statements = Vec::new();
    let mut reasons = Vec::new();

    let mut keywords = Vec::new();
    for (field, yes, no, get) in FLAGS {
        if get(want) != get(have) {
            changes.push(Change::new(
                *field,
                Some(get(have).to_string()),
                Some(get(want).to_string()),
            ));
            keywords.push(if get(want) { *yes } else { *no });
        }
    }
    if Some(want.name.as_str()) == current_user
        && ((have.superuser && !want.superuser) || (have.login && !want.login))
    {
        plan.errors.push(PlanError {
            address,
            message: format!(
                "the spec takes SUPERUSER or LOGIN away from `{}`, the role pgspec connects \
                 as; pgspec would lock itself out (declare `superuser: true` and \
                 `login: true` for it)",
                want.name
            ),
        });
        return;
    }
    if !keywords.is_empty() {
        statements.push(format!("ALTER ROLE {name} WITH {}", keywords.join(" ")));
    }
    if want.connection_limit != have.connection_limit {
        changes.push(Change::new(
            "connection_limit",
            Some(have.connection_limit.to_string()),
            Some(want.connection_limit.to_string()),
        ));
        statements.push(format!(
            "ALTER ROLE {name} WITH CONNECTION LIMIT {}",
            want.connection_limit
        ));
    }
    if let Some(valid_until) = &want.valid_until
        && !have
            .valid_until
            .as_deref()
            .is_some_and(|live_value| same_timestamp(valid_until, live_value))
    {
        changes.push(Change::new(
            "valid_until",
            have.valid_until.clone(),
            Some(valid_until.clone()),
        ));
        statements.push(format!(
            "ALTER ROLE {name} WITH VALID UNTIL {}",
            quote_literal(valid_until)
        ));
    }
    for (setting, value) in &want.settings {
        let live_setting = live.settings.get(setting);
        let same = have.settings.get(setting).is_some_and(|live_value| {
            settings::same_value(setting, value, live_value, live_setting)
        });
        if !same {
            changes.push(Change::new(
                format!("settings.{setting}"),
                have.settings.get(setting).cloned(),
                Some(value.clone()),
            ));
            statements.push(set_statement(&want.name, setting, value));
        }
    }
    if !changes.is_empty() {
        reasons.push("differs from the spec".to_owned());
    }

    let mut steps = Vec::new();
    if !statements.is_empty() {
        steps.push(Step::Sql {
            database: None,
            statements,
            transaction: true,
        });
    }
    if let Some(secret) = &want.password {
        let reason = match have.password_state {
            Some(PasswordState::Matches) => None,
            Some(PasswordState::Differs) => {
                Some("the stored password does not match the spec's secret")
            }
            Some(PasswordState::Md5) => {
                changes.push(Change::new(
                    "password_encryption",
                    Some("md5".to_owned()),
                    Some("scram-sha-256".to_owned()),
                ));
                Some("the password is stored as an MD5 hash; the spec wants SCRAM-SHA-256")
            }
            Some(PasswordState::Missing) => Some("the role has no password"),
            Some(PasswordState::TooManyIterations { iterations }) => {
                plan.notes.push(Note {
                    address: address.clone(),
                    message: format!(
                        "the password cannot be verified: its SCRAM verifier asks for \
                         {iterations} iterations, more than the {MAX_SCRAM_ITERATIONS} pgspec \
                         spends on one check; pgspec leaves it as it is"
                    ),
                });
                None
            }
            Some(PasswordState::Unverifiable) | None => {
                plan.notes.push(Note {
                    address: address.clone(),
                    message: "the password cannot be verified: the connecting role cannot read \
                              pg_authid; pgspec leaves it as it is"
                        .to_owned(),
                });
                None
            }
        };
        if let Some(reason) = reason {
            changes.push(Change::sensitive("password"));
            reasons.push(reason.to_owned());
            steps.push(Step::SetPassword {
                role: want.name.clone(),
                secret: secret.clone(),
            });
        }
    }
    if steps.is_empty() {
        return;
    }
    plan.add(Action {
        address,
        object: ObjectKind::Role,
        kind: ActionKind::Update,
        reason: reasons.join("; "),
        risk: Risk::none(),
        changes,
        steps,
    });
}

/// A timestamp split into its local part (`2027-01-01T00:00:00`) and its
/// UTC offset in minutes, when it has one.
fn parse_timestamp(text: &str) -> Option<(String, Option<i64>)> {
    let trimmed = text.trim().replacen(' ', "T", 1);
    let (local, offset) = match trimmed
        .char_indices()
        .skip(10)
        .find(|(_, character)| matches!(character, '+' | '-' | 'Z' | 'z'))
    {
        Some((index, _)) => (&trimmed[..index], Some(&trimmed[index..])),
        None => (trimmed.as_str(), None),
    };
    let mut local = local.trim_end_matches('T').to_owned();
    match local.len() {
        10 => local.push_str("T00:00:00"),
        16 => local.push_str(":00"),
        19 => {}
        _ => return None,
    }
    let offset = match offset {
        None => None,
        Some("Z" | "z") => Some(0),
        Some(offset) => {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let digits: String = offset[1..].chars().filter(char::is_ascii_digit).collect();
            let (hours, minutes) = match digits.len() {
                2 => (digits.parse::<i64>().ok()?, 0),
                4 => (
                    digits[..2].parse::<i64>().ok()?,
                    digits[2..].parse::<i64>().ok()?,
                ),
                _ => return None,
            };
            Some(sign * (hours * 60 + minutes))
        }
    };
    Some((local, offset))
}

/// Seconds since 1970 of a local time at an offset (proleptic Gregorian).
fn epoch_seconds(local: &str, offset_minutes: i64) -> Option<i64> {
    let number = |range: std::ops::Range<usize>| local.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let shifted_year = if month <= 2 { year - 1 } else { year };
    let era = shifted_year.div_euclid(400);
    let year_of_era = shifted_year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60)
}

/// Whether the spec's `valid_until` names the instant live holds. Live is
/// in the server's time zone with its offset (`2027-01-01T00:00:00+01`); a
/// desired value without an offset is read in that same zone, as the
/// server reads it, and one with an offset is compared as an instant.
fn same_timestamp(desired: &str, live: &str) -> bool {
    if desired.trim().eq_ignore_ascii_case("infinity") || live.eq_ignore_ascii_case("infinity") {
        return desired.trim().eq_ignore_ascii_case(live);
    }
    let (Some((desired_local, desired_offset)), Some((live_local, Some(live_offset)))) =
        (parse_timestamp(desired), parse_timestamp(live))
    else {
        return desired.trim() == live;
    };
    match desired_offset {
        None => desired_local == live_local,
        Some(offset) => {
            epoch_seconds(&desired_local, offset) == epoch_seconds(&live_local, live_offset)
        }
    }
}

/// Grants the memberships the spec names that live lacks. Any grantor
/// satisfies a membership: one granted by another superuser is not drift.
fn diff_memberships(want: &Role, have: Option<&Role>, plan: &mut Plan) {
    for parent in &want.member_of {
        if have.is_some_and(|have| have.member_of.contains(parent)) {
            continue;
        }
        plan.add(Action {
            address: address::membership(&want.name, parent),
            object: ObjectKind::Membership,
            kind: ActionKind::Create,
            reason: format!("the spec makes `{}` a member of `{parent}`", want.name),
            risk: Risk::none(),
            changes: vec![Change::new("member_of", None, Some(parent.clone()))],
            steps: vec![Step::Sql {
                database: None,
                statements: vec![format!(
                    "GRANT {} TO {}",
                    quote_ident(parent),
                    quote_ident(&want.name)
                )],
                transaction: true,
            }],
        });
    }
    if let Some(have) = have {
        for parent in &have.member_of {
            if !want.member_of.contains(parent) {
                plan.unmanaged.push(address::membership(&want.name, parent));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_compare_as_the_server_reads_them() {
        assert!(same_timestamp("2027-01-01", "2027-01-01T00:00:00+00"));
        assert!(same_timestamp("2027-01-01 00:00", "2027-01-01T00:00:00+01"));
        assert!(same_timestamp(
            "2027-01-01T00:00:00Z",
            "2027-01-01T01:00:00+01"
        ));
        assert!(same_timestamp(
            "2027-01-01 00:00:00+05:30",
            "2026-12-31T18:30:00+00"
        ));
        assert!(same_timestamp("Infinity", "infinity"));
        assert!(!same_timestamp("2027-01-02", "2027-01-01T00:00:00+00"));
        assert!(!same_timestamp(
            "2027-01-01T00:00:00Z",
            "2027-01-01T00:00:00+01"
        ));
        assert!(!same_timestamp("infinity", "2027-01-01T00:00:00+00"));
    }
}

#[cfg(test)]
mod diff_tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::ServerInfo;
    use crate::secret::Secret;

    fn deployment(roles: Vec<Role>) -> Deployment {
        Deployment {
            roles: roles
                .into_iter()
                .map(|role| (role.name.clone(), role))
                .collect::<BTreeMap<_, _>>(),
            server: Some(ServerInfo {
                current_user: Some("postgres".to_owned()),
                ..ServerInfo::default()
            }),
            ..Deployment::default()
        }
    }

    fn role(name: &str) -> Role {
        Role {
            name: name.to_owned(),
            login: true,
            inherit: true,
            connection_limit: -1,
            ..Role::default()
        }
    }

    fn planned(desired: &Deployment, live: &Deployment) -> Plan {
        let mut plan = Plan::default();
        diff(
            desired,
            live,
            &DiffOptions {
                prune: true,
                ..DiffOptions::default()
            },
            &mut plan,
        );
        plan
    }

    #[test]
    fn passwords_are_set_only_when_they_differ() {
        let desired = deployment(vec![Role {
            password: Some(Secret::env("PGSPEC_UNIT_PASSWORD")),
            ..role("app")
        }]);
        for (state, changes) in [
            (PasswordState::Matches, 0),
            (PasswordState::Differs, 1),
            (PasswordState::Missing, 1),
            (PasswordState::Md5, 2),
        ] {
            let live = deployment(vec![Role {
                password_state: Some(state),
                ..role("app")
            }]);
            let plan = planned(&desired, &live);
            let found: usize = plan.actions.iter().map(|action| action.changes.len()).sum();
            assert_eq!(found, changes, "{state:?}");
            for action in &plan.actions {
                assert!(action.changes.iter().any(|change| change.sensitive));
                assert!(matches!(
                    action.steps.last(),
                    Some(Step::SetPassword { .. })
                ));
            }
        }
        let live = deployment(vec![Role {
            password_state: Some(PasswordState::Unverifiable),
            ..role("app")
        }]);
        let plan = planned(&desired, &live);
        assert!(plan.actions.is_empty());
        assert!(plan.notes[0].message.contains("cannot be verified"));

        let live = deployment(vec![Role {
            password_state: Some(PasswordState::TooManyIterations {
                iterations: 2_147_483_647,
            }),
            ..role("app")
        }]);
        let plan = planned(&desired, &live);
        assert!(plan.actions.is_empty());
        assert!(
            plan.notes[0]
                .message
                .contains("cannot be verified: its SCRAM verifier asks for 2147483647 iterations"),
            "{}",
            plan.notes[0].message
        );
    }

    #[test]
    fn the_connecting_role_and_superusers_are_protected() {
        let desired = deployment(vec![role("postgres")]);
        let live = deployment(vec![Role {
            superuser: true,
            ..role("postgres")
        }]);
        let plan = planned(&desired, &live);
        assert!(plan.actions.is_empty());
        assert!(plan.errors[0].message.contains("lock itself out"));

        let desired = deployment(Vec::new());
        let live = deployment(vec![
            Role {
                managed: true,
                ..role("old")
            },
            Role {
                managed: true,
                superuser: true,
                ..role("admin")
            },
            role("theirs"),
        ]);
        let plan = planned(&desired, &live);
        let deleted: Vec<&str> = plan.actions.iter().map(|a| a.address.as_str()).collect();
        assert_eq!(deleted, ["role.old"]);
        assert_eq!(plan.unmanaged, ["role.admin", "role.theirs"]);
    }

    #[test]
    fn a_membership_from_any_grantor_satisfies_the_spec() {
        let desired = deployment(vec![Role {
            member_of: vec!["readers".to_owned()],
            ..role("app")
        }]);
        let live = deployment(vec![Role {
            member_of: vec!["readers".to_owned()],
            memberships: vec![crate::model::Membership {
                role: "readers".to_owned(),
                grantor: "another_superuser".to_owned(),
                admin: false,
                inherit: Some(true),
                set: Some(true),
            }],
            ..role("app")
        }]);
        assert!(planned(&desired, &live).actions.is_empty());
        let live = deployment(vec![role("app")]);
        let plan = planned(&desired, &live);
        assert_eq!(plan.actions[0].address, "role.app/membership.readers");
        assert!(matches!(&plan.actions[0].steps[0],
            Step::Sql { statements, .. } if statements == &[r#"GRANT "readers" TO "app""#]));
    }
}
