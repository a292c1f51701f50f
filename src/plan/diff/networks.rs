//! The networks the server container joins besides the deployment's own:
//! existing ones pgspec does not create (a Compose project's), each with
//! the aliases the container answers to there. A missing attachment is
//! connected and a missing alias added in place, never by a new
//! container; a network that does not exist is a plan error, and
//! attachments and aliases the spec does not name are left alone.

use crate::model::{Container, Deployment, NetworkAttachment, address};
use crate::plan::{Change, DockerStep, Plan, PlanError, Step};

/// What joining the spec's networks changes in the live container.
#[derive(Debug, Default)]
pub(super) struct Joins {
    pub changes: Vec<Change>,
    pub steps: Vec<Step>,
    /// An attachment is connected again to add an alias, which drops the
    /// connections made over that network.
    pub reconnects: bool,
}

/// Plan errors for the networks of the spec that do not exist; returns
/// whether there were any.
pub(super) fn absent_errors(want: &Container, live: &Deployment, plan: &mut Plan) -> bool {
    let mut absent: Vec<&str> = live
        .container
        .as_ref()
        .map(|container| {
            container
                .absent_networks
                .iter()
                .map(String::as_str)
                .collect()
        })
        .unwrap_or_default();
    let deployment_network_exists = live
        .container
        .as_ref()
        .is_some_and(|container| container.network_exists);
    if want.network_external
        && !deployment_network_exists
        && !absent.contains(&want.network.as_str())
    {
        absent.insert(0, &want.network);
    }
    for network in &absent {
        let (field, creates) = if *network == want.network {
            ("postgres.network", "and never creates it".to_owned())
        } else if want.network_external {
            ("postgres.networks", "and never creates them".to_owned())
        } else {
            (
                "postgres.networks",
                format!("but creates only its own (`{}`)", want.network),
            )
        };
        plan.errors.push(PlanError {
            address: address::container(&want.name),
            message: format!(
                "network `{network}` does not exist: pgspec joins the networks in `{field}` \
                 {creates}. Create it (`docker network create {network}`, or start the \
                 Compose project that defines it; Compose names a network \
                 `<project>_<network>` unless it sets `name:`) and plan again",
            ),
        });
    }
    !absent.is_empty()
}

/// The aliases the container answers to on the deployment's network:
/// those of `postgres.network`, kept as an entry of `networks`.
pub(super) fn deployment_aliases(want: &Container) -> &[String] {
    want.networks
        .iter()
        .find(|network| network.name == want.network)
        .map(|network| network.aliases.as_slice())
        .unwrap_or_default()
}

/// The changes and steps that attach `have` to every network `want`
/// joins with at least the aliases it names. A missing alias is added by
/// connecting the attachment again with the aliases it has and those the
/// spec adds, so none the container answers to today goes away.
pub(super) fn joins(have: &Container, want: &Container) -> Joins {
    let mut joins = Joins::default();
    for wanted in &want.networks {
        // Joining the deployment's network is the `network` change, its
        // aliases given as it connects; only missing aliases are a join.
        if wanted.name == want.network && have.network != want.network {
            continue;
        }
        let field = format!("networks.{}", wanted.name);
        match have
            .networks
            .iter()
            .find(|attached| attached.name == wanted.name)
        {
            None => {
                joins
                    .changes
                    .push(Change::new(field.clone(), None, Some(wanted.describe())));
                joins.steps.push(join_step(want, wanted, false));
            }
            Some(attached) => {
                let missing = wanted
                    .aliases
                    .iter()
                    .any(|alias| !attached.aliases.contains(alias));
                if !missing {
                    continue;
                }
                let mut aliases = attached.aliases.clone();
                aliases.extend(wanted.aliases.iter().cloned());
                aliases.sort();
                aliases.dedup();
                let merged = NetworkAttachment {
                    name: wanted.name.clone(),
                    aliases,
                };
                joins.changes.push(Change::new(
                    field.clone(),
                    Some(attached.describe()),
                    Some(merged.describe()),
                ));
                joins.steps.push(join_step(want, &merged, true));
                joins.reconnects = true;
            }
        }
    }
    joins
}

fn join_step(want: &Container, network: &NetworkAttachment, reconnect: bool) -> Step {
    Step::Docker(DockerStep::JoinNetwork {
        network: network.name.clone(),
        container: want.name.clone(),
        aliases: network.aliases.clone(),
        reconnect,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(name: &str, aliases: &[&str]) -> NetworkAttachment {
        NetworkAttachment {
            name: name.to_owned(),
            aliases: aliases.iter().map(|alias| (*alias).to_owned()).collect(),
        }
    }

    fn container(networks: Vec<NetworkAttachment>) -> Container {
        Container {
            name: "ffe-postgres".to_owned(),
            networks,
            ..Container::default()
        }
    }

    #[test]
    fn a_missing_attachment_is_connected_with_its_aliases() {
        let want = container(vec![attachment("app-net", &["postgres"])]);
        let have = container(vec![attachment("bridge", &[])]);
        let joins = joins(&have, &want);
        assert!(!joins.reconnects);
        assert_eq!(
            joins.changes,
            [Change::new(
                "networks.app-net",
                None,
                Some("aliases postgres".to_owned())
            )]
        );
        assert_eq!(
            joins.steps,
            [Step::Docker(DockerStep::JoinNetwork {
                network: "app-net".to_owned(),
                container: "ffe-postgres".to_owned(),
                aliases: vec!["postgres".to_owned()],
                reconnect: false,
            })]
        );
    }

    #[test]
    fn a_missing_alias_reconnects_keeping_the_aliases_it_has() {
        let want = container(vec![attachment("app-net", &["postgres"])]);
        let have = container(vec![attachment("app-net", &["db"])]);
        let joins = joins(&have, &want);
        assert!(joins.reconnects);
        assert_eq!(
            joins.steps,
            [Step::Docker(DockerStep::JoinNetwork {
                network: "app-net".to_owned(),
                container: "ffe-postgres".to_owned(),
                aliases: vec!["db".to_owned(), "postgres".to_owned()],
                reconnect: true,
            })]
        );
        assert_eq!(
            joins.changes[0].new.as_deref(),
            Some("aliases db, postgres")
        );
    }

    #[test]
    fn extra_attachments_and_aliases_are_left_alone() {
        let want = container(vec![attachment("app-net", &["postgres"])]);
        let have = container(vec![
            attachment("app-net", &["db", "postgres"]),
            attachment("monitoring", &[]),
        ]);
        let joins = joins(&have, &want);
        assert!(joins.changes.is_empty() && joins.steps.is_empty());
    }
}
