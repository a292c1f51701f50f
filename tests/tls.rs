//! TLS against the real engine and the locally built PostgreSQL 15 and 17
//! images and both PgBouncer images: a generated certificate that psql and
//! pgspec verify by name, the pooler serving it, then certificates from
//! files, changed without a restart.

mod common;

use bollard::Docker;
use common::{Cleanup, Workdir, arg, connect, docker, free_port, pgspec, unique_name};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

const PASSWORD_ENV: &str = "PGSPEC_IT_TLS_PASSWORD";
const KEY_ENV: &str = "PGSPEC_IT_TLS_KEY";
const PGDATA: &str = "/var/lib/postgresql/data";

struct Deployment {
    name: String,
    port: u16,
    pooler_port: u16,
    password: String,
    work: Workdir,
    _cleanup: Cleanup,
}

impl Deployment {
    fn new() -> Deployment {
        let name = unique_name("tls");
        let mut cleanup = Cleanup::default();
        cleanup.containers.push(format!("{name}-pgbouncer"));
        cleanup.containers.push(format!("{name}-postgres"));
        cleanup.volumes.push(format!("{name}-pgdata"));
        cleanup.networks.push(format!("{name}-net"));
        Deployment {
            port: free_port(),
            pooler_port: free_port(),
            password: format!("pw-{}", unique_name("secret")),
            work: Workdir::new(),
            name,
            _cleanup: cleanup,
        }
    }

    fn container(&self) -> String {
        format!("{}-postgres", self.name)
    }

    fn pooler(&self) -> String {
        format!("{}-pgbouncer", self.name)
    }

    /// Writes the spec with `tls` and `connection` (flow mappings) and
    /// returns its path.
    fn spec(&self, major: u32, tls: &str, connection: &str) -> String {
        self.spec_with(major, tls, connection, "")
    }

    /// The spec with `sections` (top-level YAML) added.
    fn spec_with(&self, major: u32, tls: &str, connection: &str, sections: &str) -> String {
        let pooler_image = if major == 15 { "1" } else { "community" };
        let text = format!(
            "version: 1\nname: {}\npostgres:\n  image: pgspec-test/postgres:{major}\n  \
             port: {}\n  superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n  \
             tls: {tls}\n  connection: {connection}\n\
             pooler:\n  image: pgspec-test/pgbouncer:{pooler_image}\n  port: {}\n{sections}",
            self.name, self.port, self.pooler_port
        );
        arg(&self.work.write("spec.yaml", &text)).to_owned()
    }

    fn pgspec(&self, args: &[&str], key: &str) -> common::Run {
        pgspec(
            args,
            &[(PASSWORD_ENV, self.password.as_str()), (KEY_ENV, key)],
        )
    }

    /// psql in `container` over TCP to `host`, `sslmode=verify-full`
    /// against `root`: whether the session uses TLS.
    async fn psql_verify_full(
        &self,
        docker: &Docker,
        container: &str,
        host: &str,
        port: u16,
        root: &str,
    ) -> String {
        let command = format!(
            "PGPASSWORD='{}' psql 'host={host} port={port} user=postgres dbname=postgres \
             sslmode=verify-full sslrootcert={root}' -tAc \
             'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'",
            self.password
        );
        let output = pgspec::engine::container::exec(
            docker,
            container,
            &["sh".to_owned(), "-c".to_owned(), command],
            false,
        )
        .await
        .expect("exec psql");
        assert_eq!(output.code, 0, "psql: {}", output.stderr);
        output.stdout.trim().to_owned()
    }

    async fn started_at(&self) -> String {
        connect(self.port, &self.password, "postgres")
            .await
            .expect("connect")
            .query_one("SELECT pg_postmaster_start_time()::text", &[])
            .await
            .expect("start time")
            .get(0)
    }
}

async fn exec(docker: &Docker, container: &str, command: &str) -> String {
    let output = pgspec::engine::container::exec(
        docker,
        container,
        &["sh".to_owned(), "-c".to_owned(), command.to_owned()],
        false,
    )
    .await
    .expect("exec");
    assert_eq!(output.code, 0, "{command}: {}", output.stderr);
    output.stdout
}

/// A CA of the test's own and a server certificate it signs for the names
/// pgspec and psql use.
struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new() -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "pgspec test CA");
        let pem = params.self_signed(&key).expect("CA").pem();
        TestCa {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate and its key, PEM.
    fn issue(&self, names: &[String]) -> (String, String) {
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(names.to_vec()).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].as_str());
        let certificate = params.signed_by(&key, &self.issuer).expect("certificate");
        (certificate.pem(), key.serialize_pem())
    }
}

async fn tls_lifecycle(major: u32) {
    let docker = docker().await;
    let deployment = Deployment::new();
    let container = deployment.container();

    // A generated certificate: the first apply connects with `prefer`.
    let generated = deployment.spec(major, "{ generate: self-signed }", "{}");
    let plan = deployment.pgspec(&["plan", "-f", &generated], "").expect(0);
    assert!(
        plan.stdout.contains(&format!("+ tls.{container}")),
        "{}",
        plan.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &generated, "--auto-approve"], "")
        .expect(0);
    deployment
        .pgspec(&["plan", "-f", &generated, "--detailed-exitcode"], "")
        .expect(0);
    let key_file = exec(
        &docker,
        &container,
        &format!("stat -c '%a %U' {PGDATA}/pgspec-tls/server.key"),
    )
    .await;
    assert_eq!(key_file.trim(), "600 postgres");

    // psql verifies the server by its container name and by `localhost`.
    let ca = format!("{PGDATA}/pgspec-tls/ca.crt");
    for host in [container.as_str(), "localhost"] {
        let ssl = deployment
            .psql_verify_full(&docker, &container, host, 5432, &ca)
            .await;
        assert_eq!(ssl, "t", "{host}");
    }
    // The pooler serves TLS clients with the same certificate, and reaches
    // the server over TLS.
    let ssl = deployment
        .psql_verify_full(
            &docker,
            &deployment.pooler(),
            "localhost",
            6432,
            "/etc/pgbouncer/ca.crt",
        )
        .await;
    assert_eq!(ssl, "t");

    // Status shows the certificate and its days to expiry.
    let status = deployment.pgspec(&["status", "-f", &generated], "");
    assert!(
        status.stdout.contains("certificate") && status.stdout.contains("(in 39"),
        "{}",
        status.stdout
    );

    // pgspec verifies the server against the CA it generated...
    let verified = deployment.spec(
        major,
        "{ generate: self-signed }",
        "{ sslmode: verify-full }",
    );
    deployment
        .pgspec(&["plan", "-f", &verified, "--detailed-exitcode"], "")
        .expect(0);
    // ... and refuses a server its root certificate did not sign.
    let other = TestCa::new();
    let other_root = deployment.work.write("other-ca.crt", &other.pem);
    let wrong = deployment.spec(
        major,
        "{ generate: self-signed }",
        &format!(
            "{{ sslmode: verify-full, sslrootcert: '{}' }}",
            arg(&other_root)
        ),
    );
    let refused = deployment.pgspec(&["plan", "-f", &wrong], "").expect(1);
    assert!(
        refused.stderr.contains("invalid peer certificate"),
        "{}",
        refused.stderr
    );

    // Certificates from files: the test's own CA, the key in the
    // environment. Changed without a restart.
    let started = deployment.started_at().await;
    let test_ca = TestCa::new();
    let root = deployment.work.write("ca.crt", &test_ca.pem);
    let names = [
        container.clone(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ];
    let verify_with_test_ca = format!("{{ sslmode: verify-full, sslrootcert: '{}' }}", arg(&root));
    for round in 0..2 {
        let (certificate, key) = test_ca.issue(&names);
        let certificate_file = deployment
            .work
            .write(&format!("server-{round}.crt"), &certificate);
        let tls = format!(
            "{{ certificate: {{ file: '{}' }}, key: {{ env: {KEY_ENV} }}, ca: {{ file: '{}' }} }}",
            arg(&certificate_file),
            arg(&root)
        );
        // The server still serves the previous certificate: connect with
        // `require` to change it.
        let files = deployment.spec(major, &tls, "{ sslmode: require }");
        let plan = deployment
            .pgspec(&["plan", "-f", &files, "--detailed-exitcode"], &key)
            .expect(2);
        assert!(
            plan.stdout.contains(&format!("~ tls.{container}"))
                && plan.stdout.contains("SHA256:")
                && plan.stdout.contains("the server reloads its certificate"),
            "{}",
            plan.stdout
        );
        assert!(!plan.stdout.contains("PRIVATE KEY"), "{}", plan.stdout);
        deployment
            .pgspec(&["apply", "-f", &files, "--auto-approve"], &key)
            .expect(0);
        let verified = deployment.spec(major, &tls, &verify_with_test_ca);
        deployment
            .pgspec(&["plan", "-f", &verified, "--detailed-exitcode"], &key)
            .expect(0);
        assert_eq!(deployment.started_at().await, started, "no restart");
        let served = exec(
            &docker,
            &deployment.pooler(),
            "cat /etc/pgbouncer/server.crt",
        )
        .await;
        assert_eq!(
            served.trim(),
            certificate.trim(),
            "the pooler's certificate"
        );
    }
    let ssl = deployment
        .psql_verify_full(
            &docker,
            &deployment.pooler(),
            "localhost",
            6432,
            "/etc/pgbouncer/ca.crt",
        )
        .await;
    assert_eq!(ssl, "t");

    // `require` with access rules: the server itself refuses clients
    // without TLS; pgspec, psql with TLS and the pooler still get in.
    let required = deployment.spec_with(
        major,
        "{ generate: self-signed, require: true }",
        "{}",
        "access:\n  - { type: local, database: all, user: all, method: trust }\n  \
         - { type: host, database: all, user: all, address: all, method: scram-sha-256 }\n",
    );
    let plan = deployment.pgspec(&["plan", "-f", &required], "").expect(0);
    assert!(
        plan.stdout.contains("hostnossl all all all reject"),
        "{}",
        plan.stdout
    );
    deployment
        .pgspec(&["apply", "-f", &required, "--auto-approve"], "")
        .expect(0);
    deployment
        .pgspec(&["plan", "-f", &required, "--detailed-exitcode"], "")
        .expect(0);
    let refused = connect(deployment.port, &deployment.password, "postgres")
        .await
        .err()
        .map(|error| format!("{error:?}"))
        .unwrap_or_default();
    assert!(refused.contains("no encryption"), "{refused}");
    let ssl = exec(
        &docker,
        &container,
        &format!(
            "PGPASSWORD='{}' psql 'host=localhost user=postgres dbname=postgres sslmode=require' \
             -tAc 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'",
            deployment.password
        ),
    )
    .await;
    assert_eq!(ssl.trim(), "t");
    let through_pooler = exec(
        &docker,
        &deployment.pooler(),
        &format!(
            "PGPASSWORD='{}' psql 'host=localhost port=6432 user=postgres dbname=postgres \
             sslmode=require' -tAc 'SELECT 1'",
            deployment.password
        ),
    )
    .await;
    assert_eq!(
        through_pooler.trim(),
        "1",
        "the pooler reaches the server over TLS"
    );
}

for_each_major!(tls, super::tls_lifecycle);
