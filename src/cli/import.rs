//! `pgspec import`: write the spec of a live deployment.
//!
//! Reads a server in a container (`--container`, or `--deployment` by
//! pgspec's label) or outside Docker (`--host`, `--port`, `--user`,
//! `--dbname`, or the libpq variables; the password only from PGPASSWORD),
//! and prints the spec on stdout or writes it to `--out`. The environment
//! variables the spec's password references read are listed on stderr.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::import::{self, ImportOptions};
use crate::live::Target;
use crate::live::all::{self, ContainerSelector};
use crate::lock;
use crate::model::{Connection, Desired, DiffOptions};
use crate::model::{ContainerState, Deployment};
use crate::output;
use crate::spec::file::ConnectionSpec;

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  PGPASSWORD=... pgspec import --container ledger-postgres --out specs/ledger.yaml
  PGHOST=db.internal PGUSER=admin PGPASSWORD=... pgspec import --database app --role-pattern 'app_*'

Passwords are never exported: each role with a password gets `{ env: PGSPEC_PASSWORD_<ROLE> }`,
and the variables to set are listed on stderr. `pgspec plan -f SPEC --detailed-exitcode` on the
imported spec exits 0.")]
pub struct ImportArgs {
    /// Read the server in this Docker container (its published port, as its
    /// superuser).
    #[arg(long, value_name = "NAME", conflicts_with = "deployment")]
    pub container: Option<String>,
    /// Read the server container pgspec runs for this deployment (found by
    /// its `org.pgspec.deployment` label).
    #[arg(long, value_name = "NAME")]
    pub deployment: Option<String>,
    /// Host of a server outside Docker (default PGHOST, then localhost).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Port of the server (default PGPORT, then 5432).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Role to connect as (default PGUSER); the password comes from
    /// PGPASSWORD.
    #[arg(long, value_name = "ROLE")]
    pub user: Option<String>,
    /// Database to connect to first (default PGDATABASE, then postgres).
    #[arg(long, value_name = "NAME")]
    pub dbname: Option<String>,
    /// Import only this database; repeat for more (default: all).
    #[arg(long = "database", value_name = "NAME")]
    pub databases: Vec<String>,
    /// Import only roles whose names match this glob (`*`, `?`).
    #[arg(long, value_name = "GLOB")]
    pub role_pattern: Option<String>,
    /// Leave out what PostgreSQL and extensions made (the default).
    #[arg(long, overrides_with = "include_system")]
    pub exclude_system: bool,
    /// Also import the bootstrap superuser, an untouched `postgres`
    /// database, objects of extensions and indexes of constraints.
    #[arg(long, overrides_with = "exclude_system")]
    pub include_system: bool,
    /// Name of the deployment in the spec (default: from the container,
    /// else `imported`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Write the spec to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// `$schema` of the first line, for editors (default: the schema next
    /// to the spec in a checkout of pgspec).
    #[arg(
        long,
        value_name = "URL",
        default_value = "../schema/pgspec.schema.json"
    )]
    pub schema: String,
}

/// How long import waits for an apply in progress.
const LOCK_WAIT: Duration = Duration::from_secs(600);

pub async fn run(args: &ImportArgs) -> anyhow::Result<super::Exit> {
    let selector = match (&args.container, &args.deployment) {
        (Some(name), _) => Some(ContainerSelector::Name(name.clone())),
        (None, Some(deployment)) => Some(ContainerSelector::Deployment(deployment.clone())),
        (None, None) => None,
    };
    let connected = match &selector {
        Some(_) => Some(
            crate::engine::connect_to(None)
                .await
                .context("cannot read the server container")?,
        ),
        None => None,
    };
    // A remote engine's container is reached the way `plan` reaches it.
    let route = connected.as_ref().map(crate::engine::Engine::route);
    let engine = connected.map(|engine| engine.docker);
    let container = match (&selector, &engine) {
        (Some(selector), Some(engine)) => {
            let survey = all::observe_container(engine, selector)
                .await
                .context("cannot read the server container")?;
            match (survey, selector) {
                (Some(survey), _) => Some(survey),
                (None, ContainerSelector::Name(name)) => {
                    anyhow::bail!("no container is named `{name}` (`docker ps -a` lists them)")
                }
                (None, ContainerSelector::Deployment(deployment)) => anyhow::bail!(
                    "no container carries the label `org.pgspec.deployment={deployment}`; \
                     name the container with `--container`"
                ),
            }
        }
        _ => None,
    };

    if let Some(survey) = &container
        && survey.container.state != ContainerState::Running
    {
        anyhow::bail!(
            "container `{}` is not running; start it (`docker start {}`) and import again",
            survey.container.name,
            survey.container.name
        );
    }

    // The connection resolves the way `plan` resolves it, so that what is
    // imported is what the spec will reach: flags, then the container, then
    // the libpq variables.
    let mut connection = Connection {
        host: args.host.clone(),
        port: args.port,
        user: args.user.clone(),
        database: args.dbname.clone(),
        ..Connection::default()
    };
    if let Some(survey) = &container {
        let target = all::container_target(&survey.container);
        connection.host.get_or_insert(target.host);
        connection.port.get_or_insert(target.port);
        connection.user.get_or_insert(target.user);
    }
    let resolve_from = Desired {
        path: PathBuf::new(),
        deployment: Deployment::default(),
        connection,
        options: DiffOptions::default(),
        monitoring: Default::default(),
    };
    let mut target = Target::resolve(&resolve_from).context("cannot resolve the connection")?;
    if let Some(route) = route
        && args.host.is_none()
    {
        target.route = route;
    }
    let name = args
        .name
        .clone()
        .or_else(|| container.as_ref().map(|survey| survey.deployment.clone()))
        .unwrap_or_else(|| "imported".to_owned());
    // Like `plan`, read under the shared lock, so an apply in progress is
    // never imported half-way.
    let lock = lock::AdvisoryLock::acquire(&target, &name, lock::Mode::Shared, LOCK_WAIT)
        .await
        .with_context(|| format!("cannot read the server at {target}"))?;
    let survey = all::observe_all(&target, &args.databases)
        .await
        .with_context(|| format!("cannot read the server at {target}"))?;
    let mut container = container;
    if let (Some(container), Some(engine)) = (&mut container, &engine) {
        container.pooler = all::observe_pooler(engine, &target, container, &survey.deployment)
            .await
            .context("cannot read the pooler")?;
        container.replication = all::observe_replicas(engine, &target, container)
            .await
            .context("cannot read the replicas")?;
    }
    drop(lock);
    for name in &args.databases {
        if !survey.databases.contains_key(name) {
            anyhow::bail!(
                "database `{name}` does not exist on the server (or allows no connections)"
            );
        }
    }

    let connection = container.is_none().then(|| ConnectionSpec {
        host: Some(target.host.clone()),
        port: Some(i64::from(target.port)),
        user: Some(target.user.clone()),
        database: (target.database != "postgres").then(|| target.database.clone()),
        ..ConnectionSpec::default()
    });
    let options = ImportOptions {
        name,
        container,
        connection,
        databases: args.databases.clone(),
        role_pattern: args.role_pattern.clone(),
        include_system: args.include_system,
        schema_url: args.schema.clone(),
    };
    let imported = import::import(&survey, &options);
    let text = imported.render();
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text)
                .with_context(|| format!("cannot write the spec to `{}`", path.display()))?;
            output::status(&format!(
                "Wrote the spec of deployment `{}` to {}.",
                options.name,
                path.display()
            ));
        }
        None => output::stdout(&text).context("cannot write the spec to stdout")?,
    }
    if !imported.variables.is_empty() {
        output::status(
            "Set these environment variables before `pgspec plan` (passwords are not exported):",
        );
        for variable in &imported.variables {
            output::status(&format!(
                "  {}  {}",
                crate::diag::printable(&variable.name),
                crate::diag::printable(&variable.purpose)
            ));
        }
    }
    if options.connection.is_some() {
        output::status(
            "The spec connects like this import did; the password comes from PGPASSWORD.",
        );
    }
    Ok(super::Exit::Success)
}
