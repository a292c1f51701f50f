//! Issue 17: client authentication rules against real servers (PostgreSQL
//! 15 and 17), one scenario per major: threadr's rules (adapted to the
//! deployment's network) converge and plan empty; a client a `reject` rule
//! names is refused; rules that would refuse pgspec itself are a plan
//! error and apply writes nothing; a rule edited by hand in the live file
//! is drift and apply restores it; a rule the server rejects leaves the old
//! file in force, byte for byte, and apply fails saying why.

mod common;

use common::{Cleanup, Workdir, arg, free_port, pgspec, postgres_image, unique_name};

const PASSWORD_ENV: &str = "PGSPEC_IT_ACCESS_PASSWORD";
const THREADR_PASSWORD_ENV: &str = "PGSPEC_IT_ACCESS_THREADR_PASSWORD";
const INTRUDER_PASSWORD: &str = "intruder password";

/// The spec with `access` (a YAML block, or empty).
fn spec(name: &str, major: u32, port: u16, access: &str) -> String {
    format!(
        "version: 1\nname: {name}\n\
         postgres:\n  image: {image}\n  port: {port}\n  \
         superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n\
         roles:\n  \
         - {{ name: threadr, login: true, password: {{ env: {THREADR_PASSWORD_ENV} }} }}\n  \
         - {{ name: replicator, login: true, replication: true }}\n  \
         - {{ name: intruder, login: true, password: {{ env: {THREADR_PASSWORD_ENV} }} }}\n\
         databases:\n  - name: threadr\n{access}",
        image = postgres_image(major),
    )
}

/// threadr's runbook rules; its Docker networks (172.16.0.0/12) stand for
/// the deployment network here, whose subnet the engine chose. The
/// superuser may connect from it (pgspec, from this host, comes in through
/// its gateway); `intruder` is refused from everywhere.
fn threadr_rules(subnet: &str, threadr_method: &str, extra_option: &str) -> String {
    format!(
        "access:\n  \
         - {{ type: local, database: all, user: postgres, method: peer }}\n  \
         - {{ type: local, database: all, user: threadr, method: md5 }}\n  \
         - {{ type: host, database: all, user: intruder, address: all, method: reject }}\n  \
         - {{ type: host, database: all, user: threadr, address: 127.0.0.1/32, method: md5 }}\n  \
         - {{ type: host, database: all, user: threadr, address: 10.0.0.0/8, method: {threadr_method}{extra_option} }}\n  \
         - {{ type: host, database: all, user: threadr, address: 172.16.0.0/12, method: md5 }}\n  \
         - {{ type: host, database: replication, user: replicator, address: 10.0.0.0/8, method: md5 }}\n  \
         - {{ type: host, database: all, user: postgres, address: {subnet}, method: scram-sha-256 }}\n"
    )
}

async fn connect_as(port: u16, user: &str, password: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(user)
        .password(password)
        .dbname("threadr")
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(connection);
    client.simple_query("SELECT 1").await?;
    Ok(())
}

async fn access_rules_converge_and_guard_the_file(major: u32) {
    let name = unique_name("access");
    let mut cleanup = Cleanup::default();
    cleanup.containers.push(format!("{name}-postgres"));
    cleanup.volumes.push(format!("{name}-pgdata"));
    cleanup.networks.push(format!("{name}-net"));
    let port = free_port();
    let password = format!("pw-{}", unique_name("secret"));
    let work = Workdir::new();
    let env = [
        (PASSWORD_ENV, password.as_str()),
        (THREADR_PASSWORD_ENV, INTRUDER_PASSWORD),
    ];
    let run = |args: &[&str]| pgspec(args, &env);

    // Without `access` the server's own file stays as the image wrote it.
    let plain = work.write("plain.yaml", &spec(&name, major, port, ""));
    run(&["apply", "-f", arg(&plain), "--auto-approve"]).expect(0);
    let server = common::connect(port, &password, "postgres")
        .await
        .expect("connect as the superuser");
    let row = server
        .query_one(
            "SELECT current_setting('hba_file'), pg_read_file(current_setting('hba_file'))",
            &[],
        )
        .await
        .expect("read hba_file");
    let (hba_file, image_file): (String, String) = (row.get(0), row.get(1));
    assert!(!image_file.contains("pgspec"), "{image_file}");
    connect_as(port, "intruder", INTRUDER_PASSWORD)
        .await
        .expect("intruder may connect before the rules");

    let docker = common::docker().await;
    let network = docker
        .inspect_network(
            &format!("{name}-net"),
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )
        .await
        .expect("inspect network");
    let subnet = network
        .ipam
        .and_then(|ipam| ipam.config)
        .and_then(|configs| configs.into_iter().find_map(|config| config.subnet))
        .expect("the deployment network's subnet");

    // threadr's rules converge, and plan empty afterwards.
    let good = work.write(
        "threadr.yaml",
        &spec(&name, major, port, &threadr_rules(&subnet, "md5", "")),
    );
    let planned = run(&["plan", "-f", arg(&good)]).expect(0);
    assert!(
        planned.stdout.contains("~ access.pg_hba"),
        "{}",
        planned.stdout
    );
    run(&["apply", "-f", arg(&good), "--auto-approve"]).expect(0);
    run(&["drift", "-f", arg(&good)]).expect(0);
    let written: String = server
        .query_one("SELECT pg_read_file(current_setting('hba_file'))", &[])
        .await
        .expect("read hba_file")
        .get(0);
    assert!(written.starts_with("# Managed by pgspec"), "{written}");
    assert!(
        written.contains("\nhost all threadr 172.16.0.0/12 md5\n"),
        "{written}"
    );

    // The rules are in force: `reject` refuses intruder from this host.
    let refused = connect_as(port, "intruder", INTRUDER_PASSWORD)
        .await
        .expect_err("intruder is refused");
    let refusal = refused
        .as_db_error()
        .map(|error| error.message().to_owned())
        .unwrap_or_else(|| refused.to_string());
    assert!(
        refusal.contains("pg_hba.conf rejects connection"),
        "{refusal}"
    );

    // A rule edited by hand (the server reloaded) is drift; apply puts the
    // spec's rule back.
    let edited = written.replace(
        "host all threadr 10.0.0.0/8 md5",
        "host all threadr 10.0.0.0/8 trust",
    );
    assert_ne!(edited, written);
    server
        .batch_execute(&format!(
            "COPY (SELECT unnest(string_to_array(rtrim($hba${edited}$hba$, E'\\n'), E'\\n'))) \
             TO '{hba_file}'; SELECT pg_reload_conf();"
        ))
        .await
        .expect("edit the file by hand");
    let drift = run(&["drift", "-f", arg(&good)]).expect(2);
    assert!(
        drift.stdout.contains("- host all threadr 10.0.0.0/8 trust")
            && drift.stdout.contains("+ host all threadr 10.0.0.0/8 md5"),
        "{}",
        drift.stdout
    );
    run(&["apply", "-f", arg(&good), "--auto-approve"]).expect(0);
    run(&["drift", "-f", arg(&good)]).expect(0);
    let restored: String = server
        .query_one("SELECT pg_read_file(current_setting('hba_file'))", &[])
        .await
        .expect("read hba_file")
        .get(0);
    assert_eq!(restored, written);

    // Rules that would refuse pgspec's own connection are a plan error
    // naming the way out; nothing is written.
    let lockout = work.write(
        "lockout.yaml",
        &spec(
            &name,
            major,
            port,
            "access:\n  - { type: host, database: all, user: postgres, address: all, method: reject }\n",
        ),
    );
    let refused = run(&["plan", "-f", arg(&lockout)]).expect(1);
    assert!(
        refused.stdout.contains("these rules would lock pgspec out")
            && refused.stdout.contains("access_lockout: allow"),
        "{}\n{}",
        refused.stdout,
        refused.stderr
    );
    run(&["apply", "-f", arg(&lockout), "--auto-approve"]).expect(1);
    run(&["drift", "-f", arg(&good)]).expect(0);

    // `map` is an option of the spec's format, but the server takes it only
    // for ident, peer, gss, sspi and cert: apply fails, the file is the one
    // it had, byte for byte, and its rules are still in force.
    let rejected = work.write(
        "rejected.yaml",
        &spec(
            &name,
            major,
            port,
            &threadr_rules(&subnet, "scram-sha-256", ", options: { map: threadr }"),
        ),
    );
    run(&["plan", "-f", arg(&rejected)]).expect(0);
    let failed = run(&["apply", "-f", arg(&rejected), "--auto-approve"]).expect(1);
    assert!(
        failed
            .stderr
            .contains("the server rejects the access rules")
            && failed.stderr.contains("map=threadr")
            && failed.stderr.contains("is back in place"),
        "{}",
        failed.stderr
    );
    let after: String = server
        .query_one("SELECT pg_read_file(current_setting('hba_file'))", &[])
        .await
        .expect("read hba_file")
        .get(0);
    assert_eq!(after, written);
    run(&["drift", "-f", arg(&good)]).expect(0);
    connect_as(port, "intruder", INTRUDER_PASSWORD)
        .await
        .expect_err("intruder is still refused");
}

for_each_major!(
    access_rules_converge,
    super::access_rules_converge_and_guard_the_file
);
