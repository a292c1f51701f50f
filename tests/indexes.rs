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
            assert_eq!(comment.as_deref(), Some("managed by pgspec"), "{name}");
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
    let again = pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(0);
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
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
    assert_eq!(text_hash.3.as_deref(), Some("managed by pgspec"));
    assert_eq!(replaced.len(), built.len(), "{:?}", names(&replaced));
    pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(0);
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
