//! The five seed deployments (specs/*.yaml), end to end from an empty Docker
//! host against the real engine and the locally built images:
//!
//! 1. `apply` on an empty host; the application's migrations (the test's
//!    fixture) create their tables; `apply` again builds what hangs on them.
//!    Every declared object is then checked with plain SQL and the Docker
//!    API, independently of pgspec's own observer.
//! 2. `plan --detailed-exitcode` exits 0.
//! 3. One hand-made change of each kind the spec uses (container, setting,
//!    role, grant, extension, index, pooler, backup schedule); `drift` exits
//!    2 and names each one.
//! 4. `apply`; `drift` exits 0.
//! 5. The rows the fixture wrote are all still there.
//! 6. `import` of the running deployment writes a spec whose plan is empty.
//!
//! Each spec is used as written, except for what keeps a test from colliding
//! with the host or another test: the deployment name (and the volume names
//! derived from it, or named after the runbook's), the published ports, and
//! the images — the seed specs
//! name registry images (postgres:16.4, a PgBouncer image) and the tests run
//! the locally built ones; PostgreSQL 16 is not packaged for Debian, so the
//! 16 specs run on 17 — and CPU limits above what this host has, which the
//! engine (and pgspec's plan) refuses.

mod common;

use std::collections::BTreeMap;

use bollard::Docker;
use bollard::models::{ContainerUpdateBody, RestartPolicy, RestartPolicyNameEnum};
use common::{
    Cleanup, Workdir, arg, connect, docker, free_port, pgspec, postgres_image, unique_name,
};

/// A hand-made change and the address `drift` must name for it.
enum Change {
    /// `docker update --restart no` on the server container.
    ContainerRestartPolicy,
    /// SQL run as the superuser in a database.
    Sql {
        database: &'static str,
        sql: &'static str,
        address: &'static str,
    },
    /// `SET name = value` on PgBouncer's admin console.
    PoolerSet { sql: &'static str },
    /// `docker rm -f` of the backup container.
    RemoveBackupContainer,
}

struct Seed {
    file: &'static str,
    major: u32,
    /// (database, role the migrations run as, SQL).
    fixture: &'static [(&'static str, &'static str, &'static str)],
    /// (database, table, rows the fixture wrote).
    rows: &'static [(&'static str, &'static str, i64)],
    changes: &'static [Change],
}

/// A seed spec made unique for one test run.
struct Run {
    name: String,
    port: u16,
    pooler_port: u16,
    env: BTreeMap<String, String>,
    spec: String,
    work: Workdir,
    _cleanup: Cleanup,
}

impl Run {
    fn new(seed: &'static Seed) -> Run {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/specs/").to_owned() + seed.file;
        let original = std::fs::read_to_string(&path).expect("read seed spec");
        let document: serde_yaml::Value =
            serde_yaml::from_str(&original).expect("seed spec is YAML");
        let deployment = document["name"].as_str().expect("name").to_owned();
        let name = unique_name(&deployment.chars().take(6).collect::<String>());
        let port = free_port();
        let pooler_port = free_port();
        let mut text = original.replace(
            &format!("\nname: {deployment}\n"),
            &format!("\nname: {name}\n"),
        );
        // A data volume named as a runbook named it (not after the
        // deployment) gets the test's name too.
        if let Some(volume) = document["postgres"]["volume"].as_str() {
            text = text.replace(
                &format!("volume: {volume}\n"),
                &format!("volume: {name}-pgdata\n"),
            );
        }
        // So does a container named as a runbook named it.
        if let Some(container) = document["postgres"]["container_name"].as_str() {
            text = text.replace(
                &format!("container_name: {container} "),
                &format!("container_name: {name}-postgres "),
            );
        }
        text = text
            .replace(&format!("{deployment}-pgdata"), &format!("{name}-pgdata"))
            .replace(&format!("{deployment}-backups"), &format!("{name}-backups"))
            .replace("  port: 6432", &format!("  port: {pooler_port}"))
            .replace("  port: 5432", &format!("  port: {port}"));
        let server_image = document["postgres"]["image"].as_str().expect("image");
        text = text.replace(
            &format!("image: {server_image}"),
            &format!("image: {}", postgres_image(seed.major)),
        );
        if let Some(pooler_image) = document["pooler"]["image"].as_str() {
            text = text.replace(
                &format!("image: {pooler_image}"),
                "image: pgspec-test/pgbouncer:1",
            );
        }
        // A spec may ask for more CPUs than this host has; the engine refuses
        // that (and pgspec's plan says so), so the test caps it.
        let host_cpus = std::thread::available_parallelism().map_or(1, usize::from);
        if let Some(cpus) = document["postgres"]["resources"]["cpus"].as_i64()
            && cpus > host_cpus as i64
        {
            text = text.replace(&format!("cpus: {cpus}"), &format!("cpus: {host_cpus}"));
        }
        // Every secret the spec names gets a value of its own.
        let mut env = BTreeMap::new();
        for line in original.lines() {
            if let Some(rest) = line.split("{ env: ").nth(1) {
                let variable = rest
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches('}');
                env.insert(
                    variable.to_owned(),
                    format!("{}-{}", variable.to_lowercase(), unique_name("pw")),
                );
            }
        }
        let mut cleanup = Cleanup::default();
        for suffix in ["postgres", "pgbouncer", "backup"] {
            cleanup.containers.push(format!("{name}-{suffix}"));
        }
        // Streaming replicas (`replicas.count`), with their volumes.
        for number in 1..=document["replicas"]["count"].as_i64().unwrap_or(0) {
            cleanup.containers.push(format!("{name}-replica-{number}"));
            cleanup
                .volumes
                .push(format!("{name}-replica-{number}-pgdata"));
        }
        cleanup.volumes.push(format!("{name}-pgdata"));
        cleanup.volumes.push(format!("{name}-backups"));
        cleanup.networks.push(format!("{name}-net"));
        let work = Workdir::new();
        let spec = arg(&work.write(seed.file, &text)).to_owned();
        Run {
            name,
            port,
            pooler_port,
            env,
            spec,
            work,
            _cleanup: cleanup,
        }
    }

    fn pgspec(&self, args: &[&str]) -> common::Run {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["-f", &self.spec]);
        pgspec(&full, &env)
    }

    fn superuser_password(&self) -> &str {
        self.env
            .iter()
            .find(|(name, _)| name.ends_with("_PG_PASSWORD"))
            .map(|(_, value)| value.as_str())
            .expect("a superuser password variable")
    }

    async fn sql(&self, database: &str, sql: &str) {
        connect(self.port, self.superuser_password(), database)
            .await
            .unwrap_or_else(|error| panic!("connect to {database}: {error}"))
            .batch_execute(sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
    }

    async fn count(&self, database: &str, sql: &str) -> i64 {
        connect(self.port, self.superuser_password(), database)
            .await
            .unwrap_or_else(|error| panic!("connect to {database}: {error}"))
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
            .get(0)
    }
}

async fn seed_end_to_end(seed: &'static Seed) {
    let docker = docker().await;
    let run = Run::new(seed);
    let document: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&run.spec).expect("spec")).expect("yaml");

    // 1. An empty host; indexes wait for the tables the migrations create,
    // and the first apply still exits 0 (issue 16: `pgspec apply && migrate
    // && pgspec apply` is the flow of a new deployment).
    let first = run.pgspec(&["apply", "--auto-approve"]).expect(0);
    let declares_indexes = document["databases"]
        .as_sequence()
        .into_iter()
        .flatten()
        .any(|database| {
            database["indexes"]
                .as_sequence()
                .is_some_and(|indexes| !indexes.is_empty())
        });
    if declares_indexes {
        assert!(
            first
                .stdout
                .contains("wait for their tables; run `pgspec apply` again"),
            "{}\n{}",
            first.stdout,
            first.stderr
        );
        // Not yet what the spec says: drift still reports the indexes.
        let drift = run.pgspec(&["drift"]).expect(2);
        assert!(drift.stdout.contains("Waiting:"), "{}", drift.stdout);
    }
    for (database, role, sql) in seed.fixture {
        let migration = if role.is_empty() {
            (*sql).to_owned()
        } else {
            format!("SET ROLE \"{role}\"; {sql}")
        };
        run.sql(database, &migration).await;
    }
    run.pgspec(&["apply", "--auto-approve"]).expect(0);
    check_declared_objects(&run, &document, &docker).await;

    // 2. Nothing left to do.
    run.pgspec(&["plan", "--detailed-exitcode"]).expect(0);

    // 3. One hand-made change of each kind; drift names every one.
    let mut expected = Vec::new();
    for change in seed.changes {
        match change {
            Change::ContainerRestartPolicy => {
                docker
                    .update_container(
                        &format!("{}-postgres", run.name),
                        ContainerUpdateBody {
                            restart_policy: Some(RestartPolicy {
                                name: Some(RestartPolicyNameEnum::NO),
                                maximum_retry_count: None,
                            }),
                            ..ContainerUpdateBody::default()
                        },
                    )
                    .await
                    .expect("docker update --restart no");
                expected.push(format!("container.{}-postgres", run.name));
            }
            Change::Sql {
                database,
                sql,
                address,
            } => {
                // One statement at a time: ALTER SYSTEM refuses to run in
                // the implicit transaction of a multi-statement query.
                for statement in sql.split(';').filter(|part| !part.trim().is_empty()) {
                    run.sql(database, statement).await;
                }
                expected.push((*address).to_owned());
            }
            Change::PoolerSet { sql } => {
                // TLS when PgBouncer offers it (a seed may require it).
                let client = pgspec::live::Target {
                    host: "127.0.0.1".to_owned(),
                    port: run.pooler_port,
                    user: "postgres".to_owned(),
                    password: Some(pgspec::secret::SecretValue::from_env_value(
                        run.superuser_password().to_owned(),
                    )),
                    database: "pgbouncer".to_owned(),
                    ssl: Default::default(),
                    route: Default::default(),
                }
                .connect()
                .await
                .expect("PgBouncer's admin console");
                client.simple_query(sql).await.expect("SET on the console");
                expected.push(format!("pooler.{}-pgbouncer", run.name));
            }
            Change::RemoveBackupContainer => {
                docker
                    .remove_container(
                        &format!("{}-backup", run.name),
                        Some(bollard::query_parameters::RemoveContainerOptions {
                            force: true,
                            // Its anonymous volume (the image's VOLUME) goes too.
                            v: true,
                            link: false,
                        }),
                    )
                    .await
                    .expect("docker rm -f -v the backup container");
                expected.push(format!("backup.{}-backup", run.name));
            }
        }
    }
    let drift = run.pgspec(&["drift"]).expect(2);
    for address in &expected {
        assert!(
            drift.stdout.contains(&format!(" {address}\n")),
            "drift must name `{address}`:\n{}",
            drift.stdout
        );
    }

    // 4. Apply repairs all of it.
    run.pgspec(&["apply", "--auto-approve"]).expect(0);
    run.pgspec(&["drift"]).expect(0);

    // 5. No row lost.
    for (database, table, rows) in seed.rows {
        assert_eq!(
            run.count(database, &format!("SELECT count(*) FROM {table}"))
                .await,
            *rows,
            "{database}.{table}"
        );
    }

    // 6. Adopting it: the spec `import` writes plans empty against the same
    //    deployment, with passwords given through the variables it names.
    let imported = run.work.path("imported.yaml");
    let mut env: Vec<(String, String)> = vec![(
        "PGSPEC_PASSWORD_POSTGRES".to_owned(),
        run.superuser_password().to_owned(),
    )];
    for role in document["roles"].as_sequence().into_iter().flatten() {
        let name = role["name"].as_str().expect("role name");
        if let Some(variable) = role["password"]["env"].as_str() {
            let imported_variable = format!(
                "PGSPEC_PASSWORD_{}",
                name.to_uppercase()
                    .chars()
                    .map(|character| if character.is_ascii_alphanumeric() {
                        character
                    } else {
                        '_'
                    })
                    .collect::<String>()
            );
            env.push((imported_variable, run.env[variable].clone()));
        }
    }
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    // import connects as the container's superuser with PGPASSWORD.
    let mut import_env = env.clone();
    import_env.push(("PGPASSWORD", run.superuser_password()));
    let import = pgspec(
        &["import", "--deployment", &run.name, "--out", arg(&imported)],
        &import_env,
    )
    .expect(0);
    let plan = pgspec(&["plan", "-f", arg(&imported), "--detailed-exitcode"], &env);
    assert_eq!(
        plan.code,
        0,
        "import then plan must be empty\n--- import stderr\n{}\n--- imported spec\n{}\n--- plan\n{}\n{}",
        import.stderr,
        std::fs::read_to_string(&imported).unwrap_or_default(),
        plan.stdout,
        plan.stderr
    );
    drop(run.work);
}

/// Checks every object the spec declares with plain SQL and the Docker API.
async fn check_declared_objects(run: &Run, document: &serde_yaml::Value, docker: &Docker) {
    let container = docker
        .inspect_container(&format!("{}-postgres", run.name), None)
        .await
        .expect("server container");
    assert_eq!(container.state.and_then(|state| state.running), Some(true));
    if let Some(memory) = document["postgres"]["resources"]["memory"].as_str() {
        let gib: i64 = memory.trim_end_matches("GiB").parse().expect("GiB");
        assert_eq!(
            container.host_config.and_then(|config| config.memory),
            Some(gib << 30)
        );
    }
    if document["pooler"].is_mapping() {
        let pooler = docker
            .inspect_container(&format!("{}-pgbouncer", run.name), None)
            .await
            .expect("pooler container");
        assert_eq!(pooler.state.and_then(|state| state.running), Some(true));
    }
    if document["backup"].is_mapping() {
        let backup = docker
            .inspect_container(&format!("{}-backup", run.name), None)
            .await
            .expect("backup container");
        assert_eq!(backup.state.and_then(|state| state.running), Some(true));
    }
    for role in document["roles"].as_sequence().into_iter().flatten() {
        let name = role["name"].as_str().expect("role name");
        let login = role["login"].as_bool().unwrap_or(false);
        let found = run
            .count(
                "postgres",
                &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{name}' AND rolcanlogin = {login}"),
            )
            .await;
        assert_eq!(found, 1, "role {name}");
    }
    for (name, value) in document["postgres"]["settings"]
        .as_mapping()
        .into_iter()
        .flatten()
    {
        let name = name.as_str().expect("setting name");
        let client = connect(run.port, run.superuser_password(), "postgres")
            .await
            .expect("connect");
        let row = client
            .query_one(
                "SELECT current_setting($1), pending_restart FROM pg_settings WHERE name = $1",
                &[&name],
            )
            .await
            .unwrap_or_else(|error| panic!("setting {name}: {error}"));
        let (shown, pending): (String, bool) = (row.get(0), row.get(1));
        assert!(!pending, "setting {name} waits for a restart");
        assert_eq!(shown, show_form(value), "setting {name}");
    }
    for database in document["databases"].as_sequence().into_iter().flatten() {
        let name = database["name"].as_str().expect("database name");
        let owner = database["owner"].as_str().unwrap_or("postgres");
        let found = run
            .count(
                "postgres",
                &format!(
                    "SELECT count(*) FROM pg_database WHERE datname = '{name}' AND pg_get_userbyid(datdba) = '{owner}'"
                ),
            )
            .await;
        assert_eq!(found, 1, "database {name} owned by {owner}");
        for extension in database["extensions"].as_sequence().into_iter().flatten() {
            let extension = extension
                .as_str()
                .or_else(|| extension["name"].as_str())
                .expect("extension name");
            let found = run
                .count(
                    name,
                    &format!("SELECT count(*) FROM pg_extension WHERE extname = '{extension}'"),
                )
                .await;
            assert_eq!(found, 1, "extension {extension} in {name}");
        }
        for index in database["indexes"].as_sequence().into_iter().flatten() {
            let index = index["name"].as_str().expect("index name");
            let found = run
                .count(
                    name,
                    &format!(
                        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                         WHERE c.relname = '{index}' AND i.indisvalid"
                    ),
                )
                .await;
            assert_eq!(found, 1, "index {index} in {name}");
        }
    }
}

/// How the server shows a value written in a seed spec.
fn show_form(value: &serde_yaml::Value) -> String {
    let text = match value {
        serde_yaml::Value::Sequence(items) => items
            .iter()
            .filter_map(|item| item.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        serde_yaml::Value::String(text) => text.clone(),
        other => serde_yaml::to_string(other)
            .expect("yaml")
            .trim()
            .to_owned(),
    };
    match text.as_str() {
        "1000" | "1000ms" => "1s".to_owned(),
        "300s" => "5min".to_owned(),
        _ => text,
    }
}

const CRAWL_LEDGER_TABLES: &str = "
    CREATE TABLE crawl_ledger (
        url text PRIMARY KEY, source text NOT NULL, state text NOT NULL,
        text_hash text, minhash_signature bytea, silver_id bigint,
        discovered_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz, metadata jsonb);
    CREATE TABLE rss_feeds (id bigserial PRIMARY KEY, url text NOT NULL, source text NOT NULL);
    INSERT INTO crawl_ledger (url, source, state, text_hash, silver_id, metadata)
        SELECT 'https://example.org/' || g, 'source-' || (g % 7), 'state-' || (g % 3),
               md5(g::text), g, jsonb_build_object('n', g)
        FROM generate_series(1, 5000) g;
    INSERT INTO rss_feeds (url, source) SELECT 'https://feeds.example.org/' || g, 's' FROM generate_series(1, 50) g;";

static CRAWL_LEDGER: Seed = Seed {
    file: "crawl-ledger.yaml",
    major: 17,
    fixture: &[("somali_nlp", "somali", CRAWL_LEDGER_TABLES)],
    rows: &[
        ("somali_nlp", "crawl_ledger", 5000),
        ("somali_nlp", "rss_feeds", 50),
    ],
    changes: &[
        Change::ContainerRestartPolicy,
        Change::Sql {
            database: "postgres",
            sql: "ALTER SYSTEM SET log_min_duration_statement = 5000; SELECT pg_reload_conf()",
            address: "setting.log_min_duration_statement",
        },
        Change::Sql {
            database: "postgres",
            sql: "ALTER ROLE somali CONNECTION LIMIT 3",
            address: "role.somali",
        },
        Change::Sql {
            database: "somali_nlp",
            sql: "DROP EXTENSION pg_stat_statements",
            address: "database.somali_nlp/extension.pg_stat_statements",
        },
        Change::Sql {
            database: "somali_nlp",
            sql: "DROP INDEX idx_crawl_ledger_source_state",
            address: "database.somali_nlp/index.idx_crawl_ledger_source_state",
        },
        Change::RemoveBackupContainer,
    ],
};

static FEEDBACK_ENGINE: Seed = Seed {
    file: "feedback-engine.yaml",
    major: 17,
    fixture: &[(
        "ffe",
        "ffe_user",
        "CREATE TABLE feedback (id bigserial PRIMARY KEY, body text NOT NULL, created_at timestamptz DEFAULT now());
         INSERT INTO feedback (body) SELECT 'feedback ' || g FROM generate_series(1, 2000) g;",
    )],
    rows: &[("ffe", "feedback", 2000)],
    changes: &[
        Change::ContainerRestartPolicy,
        Change::Sql {
            database: "postgres",
            sql: "ALTER SYSTEM SET log_min_duration_statement = 5000; SELECT pg_reload_conf()",
            address: "setting.log_min_duration_statement",
        },
        Change::Sql {
            database: "postgres",
            sql: "ALTER ROLE ffe_user CONNECTION LIMIT 3",
            address: "role.ffe_user",
        },
        Change::Sql {
            database: "ffe",
            sql: "DROP EXTENSION pg_stat_statements",
            address: "database.ffe/extension.pg_stat_statements",
        },
        Change::PoolerSet {
            sql: "SET default_pool_size = 5",
        },
        Change::RemoveBackupContainer,
    ],
};

const LETTERS_TABLES: &str = "
    CREATE TABLE letters (id bigserial PRIMARY KEY, source_file_path text, status text, file_hash text,
        created_at timestamptz DEFAULT now(), document_name text, raw_grok_json jsonb, validation_details_json jsonb);
    CREATE TABLE letter_products (id bigserial PRIMARY KEY, letter_id bigint REFERENCES letters (id),
        range_label text, product_identifier text);
    CREATE TABLE letter_product_matches (id bigserial PRIMARY KEY, letter_id bigint REFERENCES letters (id),
        letter_product_id bigint REFERENCES letter_products (id), ibcatalogue_product_identifier text,
        match_confidence numeric);
    CREATE TABLE processing_debug (id bigserial PRIMARY KEY, letter_id bigint REFERENCES letters (id),
        step_timestamp timestamptz DEFAULT now(), processing_step text);
    INSERT INTO letters (source_file_path, status, file_hash, document_name, raw_grok_json, validation_details_json)
        SELECT '/letters/' || g || '.pdf', 'done', md5(g::text), 'letter ' || g, '{}', '{}' FROM generate_series(1, 300) g;
    INSERT INTO letter_products (letter_id, range_label, product_identifier) SELECT g, 'r', 'p' || g FROM generate_series(1, 300) g;
    INSERT INTO letter_product_matches (letter_id, letter_product_id, ibcatalogue_product_identifier, match_confidence)
        SELECT g, g, 'ib' || g, 0.9 FROM generate_series(1, 300) g;
    INSERT INTO processing_debug (letter_id, processing_step) SELECT g, 'ocr' FROM generate_series(1, 300) g;";

static LETTERS: Seed = Seed {
    file: "letters.yaml",
    major: 15,
    // The runbook builds the schema as the superuser.
    fixture: &[
        ("se_letters_dev", "", LETTERS_TABLES),
        ("se_letters_test", "", LETTERS_TABLES),
        ("se_letters", "", LETTERS_TABLES),
    ],
    rows: &[
        ("se_letters_dev", "letters", 300),
        ("se_letters_test", "letter_products", 300),
        ("se_letters", "processing_debug", 300),
    ],
    changes: &[
        Change::ContainerRestartPolicy,
        Change::Sql {
            database: "se_letters_dev",
            sql: "DROP EXTENSION pg_stat_statements",
            address: "database.se_letters_dev/extension.pg_stat_statements",
        },
        Change::Sql {
            database: "se_letters",
            sql: "DROP INDEX idx_letters_raw_grok_gin",
            address: "database.se_letters/index.idx_letters_raw_grok_gin",
        },
        Change::RemoveBackupContainer,
    ],
};

static THREADR: Seed = Seed {
    file: "threadr.yaml",
    major: 15,
    fixture: &[(
        "threadr",
        "threadr",
        "CREATE TABLE threads (id uuid PRIMARY KEY DEFAULT uuid_generate_v4(), title text NOT NULL);
         CREATE TABLE posts (id bigserial PRIMARY KEY, thread_id uuid REFERENCES threads (id), body text);
         INSERT INTO threads (title) SELECT 'thread ' || g FROM generate_series(1, 200) g;
         INSERT INTO posts (thread_id, body) SELECT id, 'first post' FROM threads;",
    )],
    rows: &[("threadr", "threads", 200), ("threadr", "posts", 200)],
    changes: &[
        Change::ContainerRestartPolicy,
        Change::Sql {
            database: "postgres",
            sql: "ALTER SYSTEM SET work_mem = '16MB'; SELECT pg_reload_conf()",
            address: "setting.work_mem",
        },
        Change::Sql {
            database: "postgres",
            sql: "ALTER ROLE threadr CONNECTION LIMIT 3",
            address: "role.threadr",
        },
        Change::Sql {
            database: "threadr",
            sql: "REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM threadr_readonly",
            address: "database.threadr/schema.public/tables.all/grant.threadr_readonly",
        },
        Change::Sql {
            database: "threadr",
            sql: "DROP EXTENSION pg_trgm",
            address: "database.threadr/extension.pg_trgm",
        },
        Change::RemoveBackupContainer,
    ],
};

static ISH_CHAT: Seed = Seed {
    file: "ish-chat.yaml",
    major: 17,
    fixture: &[(
        "ish_chat",
        "",
        "CREATE TABLE rooms (id bigserial PRIMARY KEY, name text NOT NULL);
         CREATE TABLE messages (id bigserial PRIMARY KEY, room_id bigint REFERENCES rooms (id), body text,
             sent_at timestamptz DEFAULT now());
         INSERT INTO rooms (name) SELECT 'room ' || g FROM generate_series(1, 20) g;
         INSERT INTO messages (room_id, body) SELECT 1 + g % 20, 'hello ' || g FROM generate_series(1, 3000) g;",
    )],
    rows: &[("ish_chat", "messages", 3000), ("ish_chat", "rooms", 20)],
    changes: &[
        Change::ContainerRestartPolicy,
        Change::Sql {
            database: "postgres",
            sql: "ALTER SYSTEM SET random_page_cost = 4; SELECT pg_reload_conf()",
            address: "setting.random_page_cost",
        },
        Change::Sql {
            database: "postgres",
            sql: "ALTER ROLE ish_chat_app CONNECTION LIMIT 3",
            address: "role.ish_chat_app",
        },
        Change::Sql {
            database: "ish_chat",
            sql: "GRANT TRUNCATE ON ALL TABLES IN SCHEMA public TO ish_chat_app",
            address: "database.ish_chat/schema.public/tables.all/grant.ish_chat_app",
        },
        Change::Sql {
            database: "ish_chat",
            sql: "DROP EXTENSION pg_stat_statements",
            address: "database.ish_chat/extension.pg_stat_statements",
        },
        Change::PoolerSet {
            sql: "SET default_pool_size = 5",
        },
        Change::RemoveBackupContainer,
    ],
};

#[test]
fn crawl_ledger() {
    common::block_on(seed_end_to_end(&CRAWL_LEDGER));
}

#[test]
fn feedback_engine() {
    common::block_on(seed_end_to_end(&FEEDBACK_ENGINE));
}

#[test]
fn letters() {
    common::block_on(seed_end_to_end(&LETTERS));
}

#[test]
fn threadr() {
    common::block_on(seed_end_to_end(&THREADR));
}

#[test]
fn ish_chat() {
    common::block_on(seed_end_to_end(&ISH_CHAT));
}
