//! The `replicas` section of an imported spec, and the pools that go to a
//! replica: what `live::replicas` and PgBouncer's `SHOW DATABASES` report.

use crate::model::ContainerState;
use crate::model::replicas::AT_LEAST_PRIMARY;
use crate::spec::file::{PoolTarget, PoolerDatabaseSpec, ReplicaSpec, ReplicasSpec};

impl super::Importer<'_> {
    /// `count` when the replicas are named `1`, `2`, …, else a `list` of
    /// their names; the role is the one login role with `REPLICATION` that
    /// is not a superuser, when there is exactly one.
    pub(super) fn replicas(
        &mut self,
        roles: &[crate::spec::file::RoleSpec],
    ) -> Option<ReplicasSpec> {
        let container = self.options.container.as_ref()?;
        let replication = container.replication.as_ref()?;
        let names: Vec<&String> = replication
            .replicas
            .values()
            .filter(|replica| replica.state != ContainerState::Missing)
            .map(|replica| &replica.name)
            .collect();
        if names.is_empty() {
            return None;
        }
        let numbered = names
            .iter()
            .enumerate()
            .all(|(index, name)| **name == (index + 1).to_string());
        let candidates: Vec<&str> = roles
            .iter()
            .filter(|role| {
                role.replication == Some(true)
                    && role.login == Some(true)
                    && role.superuser != Some(true)
                    && role.password.is_some()
            })
            .map(|role| role.name.as_str())
            .collect();
        let role = match candidates.as_slice() {
            [one] => Some((*one).to_owned()),
            _ => {
                self.note(
                    "replicas",
                    "no single login role with REPLICATION and a password: name the role the \
                     replicas connect as in `replicas.role`"
                        .to_owned(),
                );
                None
            }
        };
        Some(ReplicasSpec {
            count: numbered.then_some(names.len() as i64),
            list: if numbered {
                Vec::new()
            } else {
                names
                    .iter()
                    .map(|name| ReplicaSpec {
                        name: (*name).clone(),
                        ..ReplicaSpec::default()
                    })
                    .collect()
            },
            role,
            ..ReplicasSpec::default()
        })
    }

    /// The settings every replica has on its command line that a standby
    /// needs at least as high as the server's: pgspec puts the server's
    /// value there, so the spec says it as the server's setting.
    pub(super) fn replica_settings(&self) -> Vec<(String, String)> {
        let Some(replication) = self
            .options
            .container
            .as_ref()
            .and_then(|container| container.replication.as_ref())
        else {
            return Vec::new();
        };
        let mut replicas = replication
            .replicas
            .values()
            .filter(|replica| replica.state != ContainerState::Missing);
        let Some(first) = replicas.next() else {
            return Vec::new();
        };
        let rest: Vec<_> = replicas.collect();
        first
            .settings
            .iter()
            .filter(|(name, value)| {
                AT_LEAST_PRIMARY.contains(&name.as_str())
                    && rest
                        .iter()
                        .all(|replica| replica.settings.get(*name) == Some(*value))
            })
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }

    /// The pools PgBouncer sends to a replica or to another database than
    /// their name, as `pooler.databases` entries.
    pub(super) fn routed_pools(&self) -> Vec<(String, PoolerDatabaseSpec)> {
        let Some(container) = self.options.container.as_ref() else {
            return Vec::new();
        };
        let Some(pooler) = container.pooler.as_ref() else {
            return Vec::new();
        };
        let replicas: Vec<&str> = container
            .replication
            .iter()
            .flat_map(|replication| replication.replicas.values())
            .map(|replica| replica.container.as_str())
            .collect();
        pooler
            .served
            .iter()
            .filter_map(|(name, route)| {
                let replica = replicas.contains(&route.host.as_str());
                if !replica && route.host != container.container.name {
                    return None;
                }
                Some((
                    name.clone(),
                    PoolerDatabaseSpec {
                        database: (route.database != *name).then(|| route.database.clone()),
                        target: replica.then_some(PoolTarget::Replica),
                        ..PoolerDatabaseSpec::default()
                    },
                ))
            })
            .collect()
    }
}
