//! Indexes end to end against real PostgreSQL 15 and 17, on tables of
//! 100 000 rows made the way an application's migrations make them:
//! converging from no indexes, canonical comparison, replacing an index
//! while queries keep using it, repairing an invalid index, giving up on a
//! lock instead of queueing behind it, and the preload a preloaded
//! extension needs. Every check reads the catalogs with plain SQL,
//! independently of pgspec's observer.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Server, Workdir, arg, block_on, pgspec};

const PASSWORD_ENV: &str = "PGSPEC_IT_INDEXES_PASSWORD";

fn spec(server: &Server, indexes: &str) -> String {
    format!(
        "version: 1\nname: index-test\npostgres:\n{}databases:\n  - name: app\n    indexes:\n{indexes}",
        server.connection_yaml(PASSWORD_ENV)
    )
}

/// The crawl ledger as the application's migration creates it, with
/// 100 000 rows.
const CRAWL_LEDGER: &str = "
CREATE TABLE crawl_ledger (
    url text PRIMARY KEY,
    source text NOT NULL,
    state text NOT NULL,
    text_hash text,
    minhash_signature bytea,
    silver_id bigint,
    discovered_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    metadata jsonb
);
INSERT INTO crawl_ledger
SELECT 'https://example.org/page/' || n,
       'source-' || (n % 7),
       (ARRAY['discovered', 'fetched', 'processed', 'failed'])[1 + n % 4],
       md5(n::text),
       decode(md5('minhash' || n), 'hex'),
       CASE WHEN n % 3 = 0 THEN n END,
       timestamptz '2024-01-01' + n * interval '1 minute',
       timestamptz '2024-06-01' + n * interval '1 minute',
       jsonb_build_object('lang', (ARRAY['so', 'en', 'ar'])[1 + n % 3], 'depth', n % 5)
FROM generate_series(1, 100000) AS n;
ANALYZE crawl_ledger;
";

/// The nine indexes of the crawl ledger, plus (when `extra` is set) a
/// partial expression index whose spelling the tests vary.
fn crawl_ledger_indexes(text_hash_columns: &str, extra: &str) -> String {
    format!(
        "      - {{ name: idx_crawl_ledger_source, table: crawl_ledger, columns: [source] }}
      - {{ name: idx_crawl_ledger_state, table: crawl_ledger, columns: [state] }}
      - {{ name: idx_crawl_ledger_source_state, table: crawl_ledger, columns: [source, state] }}
      - {{ name: idx_crawl_ledger_text_hash, table: crawl_ledger, columns: {text_hash_columns} }}
      - {{ name: idx_crawl_ledger_minhash, table: crawl_ledger, columns: [minhash_signature] }}
      - {{ name: idx_crawl_ledger_silver_id, table: crawl_ledger, columns: [silver_id] }}
      - {{ name: idx_crawl_ledger_discovered_at, table: crawl_ledger, columns: [discovered_at] }}
      - {{ name: idx_crawl_ledger_updated_at, table: crawl_ledger, columns: [updated_at] }}
      - {{ name: idx_crawl_ledger_metadata, table: crawl_ledger, using: gin, columns: [metadata] }}
{extra}"
    )
}

/// Index name → (definition, valid, comment) as the catalogs say.
async fn indexes(server: &Server) -> Vec<(String, String, bool, Option<String>)> {
    server
        .client("app")
        .await
        .query(
            "SELECT c.relname::text, pg_get_indexdef(c.oid), i.indisvalid AND i.indisready, \
                    obj_description(c.oid, 'pg_class') \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .expect("read indexes")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect()
}

/// Whether an index comment is the stamp pgspec puts on indexes it builds.
fn stamped(comment: &Option<String>) -> bool {
    comment.as_deref().is_some_and(|comment| {
        comment.starts_with("managed by pgspec; deployment=") && comment.contains("; spec=")
    })
}

fn names(indexes: &[(String, String, bool, Option<String>)]) -> Vec<&str> {
    indexes.iter().map(|index| index.0.as_str()).collect()
}

async fn crawl_ledger(major: u32) {
    let server = Server::start(major).await;
    server.execute("postgres", "CREATE DATABASE app").await;
    server.execute("app", CRAWL_LEDGER).await;
    let work = Workdir::new();
    let env = [(PASSWORD_ENV, server.password.as_str())];
    let partial = "      - { name: idx_crawl_ledger_pending_url, table: crawl_ledger, \
                   columns: [{ expression: \"lower(url)\" }], where: \"state = 'discovered'\" }\n";
    let spec_path = work.write(
        "spec.yaml",
        &spec(&server, &crawl_ledger_indexes("[text_hash]", partial)),
    );
    let spec_arg = arg(&spec_path);

    let plan = pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(2);
    assert!(
        plan.stdout
            .contains("Plan: 10 to add, 0 to change, 0 to replace, 0 to destroy."),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("CREATE INDEX CONCURRENTLY"),
        "{}",
        plan.stdout
    );

    let started = Instant::now();
    let apply = pgspec(&["apply", "-f", spec_arg, "--auto-approve"], &env).expect(0);
    eprintln!(
        "PostgreSQL {major}: 10 indexes on 100 000 rows built in {:.1}s\n{}",
        started.elapsed().as_secs_f64(),
        apply.stderr
    );
    let built = indexes(&server).await;
    assert_eq!(
        names(&built),
        [
            "crawl_ledger_pkey",
            "idx_crawl_ledger_discovered_at",
            "idx_crawl_ledger_metadata",
            "idx_crawl_ledger_minhash",
            "idx_crawl_ledger_pending_url",
            "idx_crawl_ledger_silver_id",
            "idx_crawl_ledger_source",
            "idx_crawl_ledger_source_state",
            "idx_crawl_ledger_state",
            "idx_crawl_ledger_text_hash",
            "idx_crawl_ledger_updated_at",
        ]
    );
    for (name, definition, valid, comment) in &built {
        assert!(valid, "{name} is not valid");
        if name != "crawl_ledger_pkey" {
            assert!(stamped(comment), "{name}: {comment:?}");
        }
        if name == "idx_crawl_ledger_metadata" {
            assert!(definition.contains("USING gin (metadata)"), "{definition}");
        }
        if name == "idx_crawl_ledger_pending_url" {
            assert!(
                definition.ends_with("USING btree (lower(url)) WHERE (state = 'discovered'::text)"),
                "{definition}"
            );
        }
    }
    // Every index pgspec built is proven in sync by its stamp: the server
    // canonicalises none of them again.
    let again = pgspec(
        &["plan", "-f", spec_arg, "--detailed-exitcode", "-vv"],
        &env,
    )
    .expect(0);
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    let stamped_count = built.iter().filter(|index| stamped(&index.3)).count();
    assert_eq!(stamped_count, 10);
    assert!(
        again
            .stderr
            .contains(&format!("proven_by_stamp={stamped_count} canonicalised=0")),
        "{}",
        again.stderr
    );
    pgspec(&["drift", "-f", spec_arg], &env).expect(0);

    // A hand-made change to a stamped index is still drift: the server
    // prints another definition, so the stamp proves nothing.
    server
        .execute(
            "app",
            "ALTER INDEX idx_crawl_ledger_text_hash SET (fillfactor = 70)",
        )
        .await;
    let altered = pgspec(&["drift", "-f", spec_arg], &env).expect(2);
    assert!(
        altered
            .stdout
            .contains("-/+ database.app/index.idx_crawl_ledger_text_hash"),
        "{}",
        altered.stdout
    );
    pgspec(&["apply", "-f", spec_arg, "--auto-approve"], &env).expect(0);
    pgspec(&["drift", "-f", spec_arg], &env).expect(0);

    // Spelling is not a change: whitespace, casts, parentheses, case.
    let respelled = "      - { name: idx_crawl_ledger_pending_url, table: crawl_ledger, \
                     columns: [{ expression: \"LOWER( (url)::text )\", opclass: text_ops }], \
                     where: \"((state)::text = ('discovered'::text))\" }\n";
    work.write(
        "spec.yaml",
        &spec(&server, &crawl_ledger_indexes("[text_hash]", respelled)),
    );
    let respell = pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(0);
    assert!(respell.stdout.contains("No changes."), "{}", respell.stdout);

    // Another column is a replace, and a query that needs the index gets an
    // index scan at every moment of it.
    work.write(
        "spec.yaml",
        &spec(
            &server,
            &crawl_ledger_indexes("[text_hash, silver_id]", respelled),
        ),
    );
    let replace = pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(2);
    assert!(
        replace
            .stdout
            .contains("-/+ database.app/index.idx_crawl_ledger_text_hash"),
        "{}",
        replace.stdout
    );
    assert!(
        replace
            .stdout
            .contains("Plan: 0 to add, 0 to change, 1 to replace, 0 to destroy."),
        "{}",
        replace.stdout
    );

    let query_client = server.client("app").await;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut scans: Vec<String> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                scans.push(explain(&query_client, EXPLAINED).await);
            }
            scans
        })
    };
    let before = explain(&server.client("app").await, EXPLAINED).await;
    assert!(before.ends_with("idx_crawl_ledger_text_hash"), "{before}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let spec_owned = spec_arg.to_owned();
    let password = server.password.clone();
    let started = Instant::now();
    let applied = tokio::task::spawn_blocking(move || {
        pgspec(
            &["apply", "-f", &spec_owned, "--auto-approve"],
            &[(PASSWORD_ENV, password.as_str())],
        )
    })
    .await
    .expect("apply thread")
    .expect(0);
    let replace_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let scans = watcher.await.expect("query loop");
    eprintln!(
        "PostgreSQL {major}: replace took {replace_seconds:.1}s; {} queries ran meanwhile\n{}",
        scans.len(),
        applied.stderr
    );
    assert!(scans.len() >= 20, "only {} queries ran", scans.len());
    let not_indexed: Vec<&String> = scans
        .iter()
        .filter(|scan| {
            !(scan.starts_with("Index Scan")
                || scan.starts_with("Bitmap Index Scan")
                || scan.starts_with("Index Only Scan"))
        })
        .collect();
    assert!(
        not_indexed.is_empty(),
        "plans without the index: {not_indexed:?}"
    );
    assert!(
        scans
            .iter()
            .any(|scan| scan.ends_with("idx_crawl_ledger_text_hash")),
        "{scans:?}"
    );
    let replaced = indexes(&server).await;
    let text_hash = replaced
        .iter()
        .find(|index| index.0 == "idx_crawl_ledger_text_hash")
        .expect("text_hash index");
    assert!(
        text_hash.1.ends_with("USING btree (text_hash, silver_id)"),
        "{}",
        text_hash.1
    );
    assert!(text_hash.2);
    assert!(stamped(&text_hash.3), "{:?}", text_hash.3);
    assert_eq!(replaced.len(), built.len(), "{:?}", names(&replaced));
    pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(0);

    // Issue 16: an index on a table the migrations have not created waits
    // for it. The plan lists it in its own group (exit 2: not yet what the
    // spec says), apply builds everything else and exits 0, and the apply
    // after the migrations builds it.
    let missing = format!(
        "{respelled}      - {{ name: idx_crawl_ledger_url_prefix, table: crawl_ledger, \
         columns: [{{ column: url, opclass: text_pattern_ops }}] }}
      - {{ name: idx_archive_url, table: archive.crawl_ledger_archive, columns: [url] }}\n"
    );
    work.write(
        "spec.yaml",
        &spec(
            &server,
            &crawl_ledger_indexes("[text_hash, silver_id]", &missing),
        ),
    );
    let waiting = pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(2);
    assert!(
        waiting
            .stdout
            .contains("Waiting: 1 index(es) wait for their tables")
            && waiting.stdout.contains(
                "database.app/index.idx_archive_url (table `archive.crawl_ledger_archive`)"
            ),
        "{}",
        waiting.stdout
    );
    let applied = pgspec(&["apply", "-f", spec_arg, "--auto-approve"], &env).expect(0);
    assert!(
        applied
            .stdout
            .contains("1 index(es) wait for their tables; run `pgspec apply` again"),
        "{}",
        applied.stdout
    );
    let now = indexes(&server).await;
    let names_now = names(&now);
    assert!(
        names_now.contains(&"idx_crawl_ledger_url_prefix"),
        "{names_now:?}"
    );
    assert!(!names_now.contains(&"idx_archive_url"), "{names_now:?}");
    pgspec(&["drift", "-f", spec_arg], &env).expect(2);

    // A misspelt table on a database that has tables names the closest one.
    server
        .execute(
            "app",
            "CREATE SCHEMA archive; CREATE TABLE archive.crawl_ledger_archive (url text)",
        )
        .await;
    work.write(
        "spec.yaml",
        &spec(
            &server,
            &crawl_ledger_indexes(
                "[text_hash, silver_id]",
                &missing.replace("crawl_ledger_archive", "crawl_ledger_archiv"),
            ),
        ),
    );
    let typo = pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(2);
    assert!(
        typo.stdout
            .contains("`archive.crawl_ledger_archive` exists: a misspelling?"),
        "{}",
        typo.stdout
    );

    // Once the migrations made the table, the next apply builds the index.
    work.write(
        "spec.yaml",
        &spec(
            &server,
            &crawl_ledger_indexes("[text_hash, silver_id]", &missing),
        ),
    );
    pgspec(&["apply", "-f", spec_arg, "--auto-approve"], &env).expect(0);
    let built: bool = server
        .client("app")
        .await
        .query_one(
            "SELECT to_regclass('archive.idx_archive_url') IS NOT NULL",
            &[],
        )
        .await
        .expect("look up the index")
        .get(0);
    assert!(built, "the waiting index was built once its table existed");
    pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(0);

    small_and_large_tables(&server, &work, &missing).await;
    tenants_of_one_shape(&server, &work, &missing).await;
}

/// With the limit of plain builds lowered to 64 kB: the index of a small
/// table is built with a plain CREATE INDEX, that of a larger one
/// concurrently, and that of a table that grew past the limit between a
/// saved plan and its apply concurrently after all; all converge.
async fn small_and_large_tables(server: &Server, work: &Workdir, missing: &str) {
    server
        .execute(
            "app",
            "CREATE TABLE flags (name text); \
             INSERT INTO flags SELECT 'flag-' || n FROM generate_series(1, 20) AS n; \
             CREATE TABLE events (at timestamptz, kind text); \
             INSERT INTO events SELECT now(), 'kind-' || n FROM generate_series(1, 3000) AS n; \
             CREATE TABLE grows (id int); \
             ANALYZE flags, events, grows;",
        )
        .await;
    let extra = format!(
        "{missing}      - {{ name: idx_flags_name, table: flags, columns: [name] }}
      - {{ name: idx_events_at, table: events, columns: [at] }}
      - {{ name: idx_grows_id, table: grows, columns: [id] }}\n"
    );
    let spec_path = work.write(
        "spec.yaml",
        &spec(
            server,
            &crawl_ledger_indexes("[text_hash, silver_id]", &extra),
        ),
    );
    let spec_arg = arg(&spec_path);
    let env = [
        (PASSWORD_ENV, server.password.as_str()),
        ("PGSPEC_TEST_PLAIN_INDEX_MAX_BYTES", "65536"),
    ];
    let plan_file = work.path("small.plan");
    let plan = pgspec(&["plan", "-f", spec_arg, "--out", arg(&plan_file)], &env).expect(0);
    for expected in [
        "LOCK TABLE \"public\".\"flags\" IN SHARE MODE",
        "LOCK TABLE \"public\".\"grows\" IN SHARE MODE",
        "(one transaction): CREATE INDEX \"idx_flags_name\"",
        "sql in `app`: CREATE INDEX CONCURRENTLY \"idx_events_at\"",
    ] {
        assert!(
            plan.stdout.contains(expected),
            "{expected}\n{}",
            plan.stdout
        );
    }
    assert!(
        !plan.stdout.contains("LOCK TABLE \"public\".\"events\""),
        "{}",
        plan.stdout
    );
    // `grows` takes 3 000 rows after the plan: its build is concurrent.
    server
        .execute(
            "app",
            "INSERT INTO grows SELECT n FROM generate_series(1, 3000) AS n",
        )
        .await;
    let applied = pgspec(&["apply", arg(&plan_file), "-vv"], &env).expect(0);
    for expected in [
        "LOCK TABLE \"public\".\"flags\" IN SHARE MODE",
        "the table grew past the plain build's limit",
        "CREATE INDEX CONCURRENTLY \"idx_grows_id\"",
        "CREATE INDEX CONCURRENTLY \"idx_events_at\"",
    ] {
        assert!(
            applied.stderr.contains(expected),
            "{expected}\n{}",
            applied.stderr
        );
    }
    let now = indexes(server).await;
    for name in ["idx_flags_name", "idx_events_at", "idx_grows_id"] {
        let index = now.iter().find(|index| index.0 == name);
        assert!(
            index.is_some_and(|index| index.2 && stamped(&index.3)),
            "{name}: {now:?}"
        );
    }
    pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(0);
}

/// Tables of one shape share the server's reading of their indexes (one
/// scratch build per shape of index): the same two indexes on two tenants'
/// `items`, and one on a third whose `name` is an integer. Each gets its
/// own table's definition, only the integer one is refused, and once it is
/// gone from the spec the rest converge.
async fn tenants_of_one_shape(server: &Server, work: &Workdir, missing: &str) {
    server
        .execute(
            "app",
            "CREATE SCHEMA tenant_a; CREATE SCHEMA tenant_b; CREATE SCHEMA tenant_c; \
             CREATE TABLE tenant_a.items (id int, name text); \
             CREATE TABLE tenant_b.items (id int, name text); \
             CREATE TABLE tenant_c.items (id int, name int);",
        )
        .await;
    let kept = format!(
        "{missing}      - {{ name: idx_flags_name, table: flags, columns: [name] }}
      - {{ name: idx_events_at, table: events, columns: [at] }}
      - {{ name: idx_grows_id, table: grows, columns: [id] }}\n"
    );
    let tenant = |schema: &str| {
        format!(
            "      - {{ name: idx_{schema}_lower, table: {schema}.items, columns: [{{ expression: \"lower(name)\" }}] }}
      - {{ name: idx_{schema}_id, table: {schema}.items, columns: [id, name] }}\n"
        )
    };
    let tenants = format!("{kept}{}{}", tenant("tenant_a"), tenant("tenant_b"));
    let refused = "      - { name: idx_tenant_c_lower, table: tenant_c.items, \
                   columns: [{ expression: \"lower(name)\" }] }\n";
    let indexes_yaml = |extra: &str| {
        spec(
            server,
            &crawl_ledger_indexes("[text_hash, silver_id]", &format!("{tenants}{extra}")),
        )
    };
    let env = [(PASSWORD_ENV, server.password.as_str())];
    // What the indexes before this step cost (some were adopted, not
    // built, and carry no stamp).
    let spec_path = work.write(
        "spec.yaml",
        &spec(
            server,
            &crawl_ledger_indexes("[text_hash, silver_id]", &kept),
        ),
    );
    let spec_arg = arg(&spec_path);
    let before = pgspec(&["plan", "-f", spec_arg, "-vv"], &env).expect(0);
    let (indexes, tables, builds) = canonicalising(&before.stderr);
    work.write("spec.yaml", &indexes_yaml(refused));
    let plan = pgspec(&["plan", "-f", spec_arg, "-vv"], &env).expect(1);
    assert!(
        plan.stdout
            .contains("function lower(integer) does not exist"),
        "{}",
        plan.stdout
    );
    // Five indexes more; two shapes of table, three of index on them.
    assert_eq!(
        canonicalising(&plan.stderr),
        (indexes + 5, tables + 2, builds + 3),
        "{}",
        plan.stderr
    );
    for (index, definition) in [
        (
            "tenant_a_lower",
            "ON tenant_a.items USING btree (lower(name))",
        ),
        (
            "tenant_b_lower",
            "ON tenant_b.items USING btree (lower(name))",
        ),
        ("tenant_a_id", "ON tenant_a.items USING btree (id, name)"),
        ("tenant_b_id", "ON tenant_b.items USING btree (id, name)"),
    ] {
        assert!(
            plan.stdout
                .contains(&format!("CREATE INDEX idx_{index} {definition}")),
            "{index}\n{}",
            plan.stdout
        );
    }

    work.write("spec.yaml", &indexes_yaml(""));
    pgspec(&["apply", "-f", spec_arg, "--auto-approve"], &env).expect(0);
    // Stamps removed: the server canonicalises all four again, and finds
    // each one in sync with its own table.
    server
        .execute(
            "app",
            "COMMENT ON INDEX tenant_a.idx_tenant_a_lower IS NULL; \
             COMMENT ON INDEX tenant_a.idx_tenant_a_id IS NULL; \
             COMMENT ON INDEX tenant_b.idx_tenant_b_lower IS NULL; \
             COMMENT ON INDEX tenant_b.idx_tenant_b_id IS NULL;",
        )
        .await;
    let again = pgspec(
        &["plan", "-f", spec_arg, "--detailed-exitcode", "-vv"],
        &env,
    )
    .expect(0);
    assert_eq!(
        canonicalising(&again.stderr),
        (indexes + 4, tables + 1, builds + 2),
        "{}",
        again.stderr
    );
}

/// How many desired indexes a `-vv` plan canonicalised, on how many scratch
/// tables, with how many scratch builds; zeros when it canonicalised none.
fn canonicalising(stderr: &str) -> (usize, usize, usize) {
    let Some(line) = stderr
        .lines()
        .find(|line| line.contains("canonicalising desired indexes"))
    else {
        return (0, 0, 0);
    };
    let field = |name: &str| -> usize {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(&format!("{name}=")))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {line}"))
    };
    (
        field("indexes"),
        field("scratch_tables"),
        field("scratch_builds"),
    )
}

/// A query the text_hash index serves, as an application would run it.
const EXPLAINED: &str =
    "EXPLAIN (FORMAT JSON) SELECT url, state FROM crawl_ledger WHERE text_hash = md5('4242')";

/// The scan the server picks for a query: `Index Scan idx_a`, `Seq Scan`.
async fn explain(client: &tokio_postgres::Client, statement: &str) -> String {
    let messages = client.simple_query(statement).await.expect("explain");
    let text = messages
        .iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("explain row");
    let plan: serde_json::Value = serde_json::from_str(&text).expect("explain json");
    scan_of(&plan)
}

/// The scan node of an EXPLAIN (FORMAT JSON) plan and the index it uses.
fn scan_of(plan: &serde_json::Value) -> String {
    fn find(node: &serde_json::Value) -> Option<String> {
        let kind = node["Node Type"].as_str()?;
        if kind.contains("Scan") && kind != "Bitmap Heap Scan" {
            return Some(match node["Index Name"].as_str() {
                Some(index) => format!("{kind} {index}"),
                None => kind.to_owned(),
            });
        }
        node["Plans"].as_array()?.iter().find_map(find)
    }
    find(&plan[0]["Plan"]).unwrap_or_else(|| plan.to_string())
}

#[test]
fn crawl_ledger_converges_respells_and_replaces_on_pg15() {
    block_on(crawl_ledger(15));
}

/// The letters tables as the application's migrations create them, with
/// 100 000 rows each.
const LETTERS: &str = "
CREATE TABLE letters (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_file_path text NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    file_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    document_name text,
    raw_grok_json jsonb,
    validation_details_json jsonb
);
CREATE TABLE letter_products (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    letter_id bigint NOT NULL REFERENCES letters (id),
    range_label text,
    product_identifier text
);
CREATE TABLE letter_product_matches (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    letter_id bigint NOT NULL REFERENCES letters (id),
    letter_product_id bigint NOT NULL REFERENCES letter_products (id),
    ibcatalogue_product_identifier text,
    match_confidence real
);
CREATE TABLE processing_debug (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    letter_id bigint REFERENCES letters (id),
    step_timestamp timestamptz NOT NULL DEFAULT now(),
    processing_step text NOT NULL
);
INSERT INTO letters (source_file_path, status, file_hash, created_at, document_name,
                     raw_grok_json, validation_details_json)
SELECT '/inbox/' || (n % 97) || '/letter-' || n || '.pdf',
       (ARRAY['pending', 'extracted', 'validated', 'done'])[1 + n % 4],
       md5('file' || n),
       timestamptz '2024-01-01' + n * interval '30 seconds',
       'Letter ' || n,
       jsonb_build_object('products', jsonb_build_array(n % 50, n % 70), 'pages', 1 + n % 9),
       jsonb_build_object('ok', n % 10 <> 0, 'checks', n % 4)
FROM generate_series(1, 100000) AS n;
INSERT INTO letter_products (letter_id, range_label, product_identifier)
SELECT 1 + n % 100000, 'range-' || (n % 40), 'P-' || lpad((n % 25000)::text, 6, '0')
FROM generate_series(1, 100000) AS n;
INSERT INTO letter_product_matches (letter_id, letter_product_id, ibcatalogue_product_identifier,
                                    match_confidence)
SELECT 1 + n % 100000, 1 + (n * 7) % 100000, 'IB-' || (n % 30000), (n % 1000) / 1000.0
FROM generate_series(1, 100000) AS n;
INSERT INTO processing_debug (letter_id, step_timestamp, processing_step)
SELECT 1 + n % 100000, timestamptz '2024-01-01' + n * interval '10 seconds',
       (ARRAY['ocr', 'extract', 'match', 'validate', 'store'])[1 + n % 5]
FROM generate_series(1, 100000) AS n;
ANALYZE;
";

/// The seventeen indexes of the letters tables, two of them GIN.
const LETTERS_INDEXES: &str = "      - { name: idx_letters_source_file_path, table: letters, columns: [source_file_path] }
      - { name: idx_letters_status, table: letters, columns: [status], where: \"status <> 'done'\" }
      - { name: idx_letters_file_hash, table: letters, columns: [file_hash], unique: true }
      - { name: idx_letters_created_at, table: letters, columns: [{ column: created_at, order: desc }] }
      - { name: idx_letters_document_name, table: letters, columns: [document_name] }
      - { name: idx_letters_raw_grok_json, table: letters, using: gin, columns: [{ column: raw_grok_json, opclass: jsonb_path_ops }] }
      - { name: idx_letters_validation_details, table: letters, using: gin, columns: [validation_details_json] }
      - { name: idx_letter_products_letter_id, table: letter_products, columns: [letter_id] }
      - { name: idx_letter_products_range_label, table: letter_products, columns: [range_label] }
      - { name: idx_letter_products_product_identifier, table: letter_products, columns: [product_identifier] }
      - { name: idx_letter_products_letter_range, table: letter_products, columns: [letter_id, range_label] }
      - { name: idx_letter_product_matches_letter_id, table: letter_product_matches, columns: [letter_id] }
      - { name: idx_letter_product_matches_product_id, table: letter_product_matches, columns: [letter_product_id] }
      - { name: idx_letter_product_matches_ibcatalogue, table: letter_product_matches, columns: [ibcatalogue_product_identifier] }
      - { name: idx_letter_product_matches_confidence, table: letter_product_matches, columns: [{ column: match_confidence, order: desc, nulls: last }] }
      - { name: idx_processing_debug_letter_step, table: processing_debug, columns: [letter_id, step_timestamp] }
      - { name: idx_processing_debug_processing_step, table: processing_debug, columns: [processing_step] }
";

/// The pid of a client's backend.
async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("backend pid")
        .get(0)
}

/// Waits until a backend waits for a lock.
async fn wait_until_blocked(server: &Server, pid: i32) {
    let monitor = server.client("app").await;
    let started = Instant::now();
    loop {
        let waiting: bool = monitor
            .query_one(
                "SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity \
                 WHERE pid = $1",
                &[&pid],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if waiting {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "pid {pid} never waited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs pgspec on a blocking thread, so the test's own sessions keep
/// running meanwhile.
async fn pgspec_async(args: Vec<String>, password: &str) -> common::Run {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pgspec(&args, &[(PASSWORD_ENV, password.as_str())])
    })
    .await
    .expect("pgspec thread")
}

async fn letters(major: u32) {
    let server = Server::start(major).await;
    server.execute("postgres", "CREATE DATABASE app").await;
    server.execute("app", LETTERS).await;
    let work = Workdir::new();
    let env = [(PASSWORD_ENV, server.password.as_str())];
    let spec_path = work.write("spec.yaml", &spec(&server, LETTERS_INDEXES));
    let spec_arg = arg(&spec_path);

    let plan = pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(2);
    assert!(
        plan.stdout
            .contains("Plan: 17 to add, 0 to change, 0 to replace, 0 to destroy."),
        "{}",
        plan.stdout
    );
    let started = Instant::now();
    pgspec(&["apply", "-f", spec_arg, "--auto-approve"], &env).expect(0);
    eprintln!(
        "PostgreSQL {major}: 17 indexes on 4 tables of 100 000 rows built in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let built = indexes(&server).await;
    let ours: Vec<_> = built.iter().filter(|index| stamped(&index.3)).collect();
    assert_eq!(ours.len(), 17, "{:?}", names(&built));
    assert!(ours.iter().all(|index| index.2), "{built:?}");
    assert_eq!(
        ours.iter()
            .filter(|index| index.1.contains("USING gin"))
            .count(),
        2
    );
    let again = pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(0);
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);

    // A concurrent build cancelled while it waits for a writer leaves an
    // invalid index; drift finds it and apply builds it again.
    server
        .execute("app", "DROP INDEX idx_letters_document_name")
        .await;
    let writer = server.client("app").await;
    writer
        .batch_execute(
            "BEGIN; INSERT INTO letters (source_file_path, file_hash) VALUES ('/x.pdf', 'x')",
        )
        .await
        .expect("open writer");
    let builder = server.client("app").await;
    let builder_pid = backend_pid(&builder).await;
    let build = tokio::spawn(async move {
        builder
            .batch_execute(
                "CREATE INDEX CONCURRENTLY idx_letters_document_name ON letters (document_name)",
            )
            .await
    });
    wait_until_blocked(&server, builder_pid).await;
    server
        .execute("app", &format!("SELECT pg_cancel_backend({builder_pid})"))
        .await;
    let cancelled = build.await.expect("build task");
    assert!(cancelled.is_err(), "the build was not cancelled");
    writer.batch_execute("ROLLBACK").await.expect("rollback");
    let invalid = indexes(&server).await;
    assert!(
        invalid
            .iter()
            .any(|index| index.0 == "idx_letters_document_name" && !index.2),
        "{invalid:?}"
    );
    let drift = pgspec(&["drift", "-f", spec_arg], &env).expect(2);
    assert!(
        drift
            .stdout
            .contains("-/+ database.app/index.idx_letters_document_name"),
        "{}",
        drift.stdout
    );
    assert!(drift.stdout.contains("invalid"), "{}", drift.stdout);
    pgspec(&["apply", "-f", spec_arg, "--auto-approve"], &env).expect(0);
    let repaired = indexes(&server).await;
    let document_name = repaired
        .iter()
        .find(|index| index.0 == "idx_letters_document_name")
        .expect("document_name index");
    assert!(document_name.2, "{document_name:?}");
    assert!(stamped(&document_name.3), "{:?}", document_name.3);
    pgspec(&["drift", "-f", spec_arg], &env).expect(0);

    // A long transaction holding a conflicting lock: apply gives up after
    // its lock timeout instead of queueing, and says what it waited for.
    let extra = "      - { name: idx_letter_products_identifier_lower, table: letter_products, \
                 columns: [{ expression: \"lower(product_identifier)\" }] }\n";
    work.write(
        "spec.yaml",
        &spec(&server, &format!("{LETTERS_INDEXES}{extra}")),
    );
    let holder = server.client("app").await;
    let holder_pid = backend_pid(&holder).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE letter_products IN SHARE MODE")
        .await
        .expect("hold lock");
    let started = Instant::now();
    let refused = pgspec_async(
        vec![
            "apply".into(),
            "-f".into(),
            spec_arg.into(),
            "--auto-approve".into(),
            "--lock-timeout".into(),
            "500".into(),
        ],
        &server.password,
    )
    .await
    .expect(1);
    let waited = started.elapsed();
    eprintln!(
        "PostgreSQL {major}: apply gave up after {:.1}s\n{}",
        waited.as_secs_f64(),
        refused.stderr
    );
    assert!(waited < Duration::from_secs(20), "{waited:?}");
    assert!(
        refused.stderr.contains("lock timeout"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains(&format!(
            "waited for a ShareUpdateExclusiveLock on table `letter_products`, held by pid {holder_pid}"
        )),
        "{}",
        refused.stderr
    );
    assert!(!names(&indexes(&server).await).contains(&"idx_letter_products_identifier_lower"));
    holder.batch_execute("ROLLBACK").await.expect("release");

    // A writer that finishes soon: the build waits for it, says so, and
    // completes.
    writer
        .batch_execute(
            "BEGIN; INSERT INTO letter_products (letter_id, range_label) VALUES (1, 'r')",
        )
        .await
        .expect("open writer");
    let apply = pgspec_async(
        vec![
            "apply".into(),
            "-f".into(),
            spec_arg.into(),
            "--auto-approve".into(),
        ],
        &server.password,
    );
    // Commit the writer once the build has waited for it for a second, so
    // that the wait is seen however long pgspec takes to get there.
    let release = async {
        let monitor = server.client("app").await;
        let started = Instant::now();
        loop {
            let waiting: bool = monitor
                .query_one(
                    "SELECT EXISTS (SELECT FROM pg_stat_activity \
                     WHERE application_name = 'pgspec' AND wait_event_type = 'Lock')",
                    &[],
                )
                .await
                .expect("pg_stat_activity")
                .get(0);
            if waiting {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the build never waited"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        writer.batch_execute("COMMIT").await.expect("commit writer");
    };
    let (applied, ()) = tokio::join!(apply, release);
    let applied = applied.expect(0);
    eprintln!(
        "PostgreSQL {major}: build behind a writer\n{}",
        applied.stderr
    );
    assert!(
        applied.stderr.contains("waiting for writers before build"),
        "{}",
        applied.stderr
    );
    let with_extra = indexes(&server).await;
    assert!(
        with_extra
            .iter()
            .any(|index| index.0 == "idx_letter_products_identifier_lower" && index.2),
        "{with_extra:?}"
    );
    pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(0);
}

#[test]
fn letters_converge_repair_an_invalid_index_and_give_up_on_locks_on_pg17() {
    block_on(letters(17));
}

/// A preloaded extension in a spec that does not preload it: the plan adds
/// the library to `shared_preload_libraries`, keeping what is loaded, and
/// marks the restart; after the restart nothing is left to do.
async fn preload(major: u32) {
    let mut server = Server::start(major).await;
    server.execute("postgres", "CREATE DATABASE app").await;
    server
        .execute(
            "postgres",
            "ALTER SYSTEM SET shared_preload_libraries = 'auto_explain'",
        )
        .await;
    server.restart().await;
    let work = Workdir::new();
    let env = [(PASSWORD_ENV, server.password.as_str())];
    let spec_text = |server: &Server| {
        format!(
            "version: 1\nname: preload-test\npostgres:\n{}databases:\n  - name: app\n    extensions: [pg_stat_statements]\n",
            server.connection_yaml(PASSWORD_ENV)
        )
    };
    let spec_path = work.write("spec.yaml", &spec_text(&server));
    let spec_arg = arg(&spec_path);
    let plan = pgspec(&["plan", "-f", spec_arg, "--json"], &env).expect(0);
    let document: serde_json::Value = serde_json::from_str(&plan.stdout).expect("plan json");
    let actions = document["actions"].as_array().expect("actions");
    let setting = actions
        .iter()
        .find(|action| action["address"] == "setting.shared_preload_libraries")
        .unwrap_or_else(|| panic!("{}", plan.stdout));
    assert_eq!(setting["risk"]["restart"], true, "{setting}");
    assert!(
        setting
            .to_string()
            .contains("auto_explain, pg_stat_statements"),
        "{setting}"
    );
    assert!(
        actions
            .iter()
            .any(|action| action["address"] == "database.app/extension.pg_stat_statements"),
        "{}",
        plan.stdout
    );

    pgspec(&["apply", "-f", spec_arg, "--auto-approve"], &env).expect(0);
    let pending = pgspec(&["plan", "-f", spec_arg, "--json"], &env).expect(0);
    assert!(
        pending.stdout.contains("setting.shared_preload_libraries"),
        "{}",
        pending.stdout
    );
    server.restart().await;
    work.write("spec.yaml", &spec_text(&server));
    let env = [(PASSWORD_ENV, server.password.as_str())];
    let loaded: String = server
        .client("app")
        .await
        .query_one("SHOW shared_preload_libraries", &[])
        .await
        .expect("show")
        .get(0);
    assert_eq!(loaded, "auto_explain, pg_stat_statements");
    server
        .execute("app", "SELECT count(*) FROM pg_stat_statements")
        .await;
    pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(0);

    // An extension that requires another: `earthdistance` needs `cube`,
    // which its action creates first; `cube` is then not unmanaged.
    work.write(
        "spec.yaml",
        &spec_text(&server).replace(
            "[pg_stat_statements]",
            "[pg_stat_statements, earthdistance]",
        ),
    );
    let plan = pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(2);
    assert!(
        plan.stdout.contains("+ requires = cube")
            && plan
                .stdout
                .contains("CREATE EXTENSION \"cube\" (skipped when `cube` is installed already)"),
        "{}",
        plan.stdout
    );
    pgspec(&["apply", "-f", spec_arg, "--auto-approve"], &env).expect(0);
    let installed: Vec<String> = server
        .client("app")
        .await
        .query(
            "SELECT extname::text FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1",
            &[],
        )
        .await
        .expect("pg_extension")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(installed, ["cube", "earthdistance", "pg_stat_statements"]);
    let after = pgspec(&["plan", "-f", spec_arg, "--json"], &env).expect(0);
    let document: serde_json::Value = serde_json::from_str(&after.stdout).expect("plan json");
    assert_eq!(document["has_changes"], false, "{}", after.stdout);
    assert!(!after.stdout.contains("extension.cube"), "{}", after.stdout);
}

#[test]
fn extensions_bring_their_preload_and_requirements_on_pg15() {
    block_on(preload(15));
}
