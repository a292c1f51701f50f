//! Issue 24: a database a runbook built holds the spec's indexes under the
//! runbook's names (letters' runbook says `idx_letters_source_path` where
//! its spec says `idx_letters_source_file_path`). Against real PostgreSQL
//! 15 and 17, such a database converges to the spec by renames alone: no
//! index is built, every index keeps its `pg_class.oid`, and a second plan
//! is empty. Duplicates are reported and kept. Every check reads the
//! catalogs with plain SQL, independently of pgspec's observer.

mod common;

use std::collections::BTreeMap;

use common::{Server, Workdir, arg, pgspec};

const PASSWORD_ENV: &str = "PGSPEC_IT_INDEX_RENAMES_PASSWORD";

/// The letters table, its rows, and its indexes as a runbook creates them
/// with plain SQL, under the runbook's names.
const RUNBOOK: &str = "
CREATE TABLE letters (
    id serial PRIMARY KEY,
    source_file_path text NOT NULL,
    status varchar(50) NOT NULL DEFAULT 'pending',
    file_hash text,
    raw_grok_json jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO letters (source_file_path, status, file_hash, raw_grok_json, created_at)
SELECT '/letters/' || n || '.pdf',
       (ARRAY['pending', 'processed', 'failed'])[1 + n % 3],
       md5(n::text),
       jsonb_build_object('page', n % 7),
       timestamptz '2024-01-01' + n * interval '1 minute'
FROM generate_series(1, 20000) AS n;
CREATE INDEX IF NOT EXISTS idx_letters_source_path ON letters(source_file_path);
CREATE INDEX IF NOT EXISTS idx_letters_status ON letters(status);
CREATE INDEX IF NOT EXISTS idx_letters_state ON letters(status);
CREATE INDEX IF NOT EXISTS idx_letters_hash ON letters(file_hash);
CREATE INDEX IF NOT EXISTS idx_letters_hash_copy ON letters(file_hash);
CREATE INDEX IF NOT EXISTS idx_letters_raw_grok_gin ON letters USING GIN (raw_grok_json);
CREATE INDEX IF NOT EXISTS idx_letters_lower_hash ON letters (LOWER(file_hash));
CREATE INDEX IF NOT EXISTS idx_letters_pending ON letters (created_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS idx_letters_failed ON letters (created_at) WHERE status = 'failed';
";

/// The spec's indexes: the runbook's under the spec's names, spelled
/// differently where the server reads them the same.
const INDEXES: &str = "
      - { name: idx_letters_source_file_path, table: letters, columns: [source_file_path] }
      - { name: idx_letters_status, table: letters, columns: [status] }
      - { name: idx_letters_file_hash, table: letters, columns: [file_hash] }
      - { name: idx_letters_raw_grok_json, table: letters, using: gin, columns: [raw_grok_json] }
      - { name: idx_letters_file_hash_lower, table: letters, columns: [{ expression: \"lower( file_hash )\" }] }
      - name: idx_letters_pending_created_at
        table: letters
        columns: [created_at]
        where: \"(status)::text = 'pending'\"
";

/// The renames the plan makes: runbook name → spec name.
const RENAMES: [(&str, &str); 5] = [
    ("idx_letters_hash", "idx_letters_file_hash"),
    ("idx_letters_lower_hash", "idx_letters_file_hash_lower"),
    ("idx_letters_pending", "idx_letters_pending_created_at"),
    ("idx_letters_raw_grok_gin", "idx_letters_raw_grok_json"),
    ("idx_letters_source_path", "idx_letters_source_file_path"),
];

/// Each index of `letters`: its `pg_class.oid`, name and comment.
async fn indexes(server: &Server) -> BTreeMap<u32, (String, Option<String>)> {
    server
        .client("app")
        .await
        .query(
            "SELECT c.oid, c.relname::text, obj_description(c.oid, 'pg_class') \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = 'public.letters'::regclass",
            &[],
        )
        .await
        .expect("read indexes")
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect()
}

async fn runbook_names(major: u32) {
    let server = Server::start(major).await;
    server.execute("postgres", "CREATE DATABASE app").await;
    server.execute("app", RUNBOOK).await;
    let work = Workdir::new();
    let env = [(PASSWORD_ENV, server.password.as_str())];
    let spec_path = work.write(
        "spec.yaml",
        &format!(
            "version: 1\nname: renames-test\npostgres:\n{}databases:\n  - name: app\n    indexes:{INDEXES}",
            server.connection_yaml(PASSWORD_ENV)
        ),
    );
    let spec_arg = arg(&spec_path);
    let before = indexes(&server).await;

    let plan = pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(2);
    assert!(
        plan.stdout
            .contains("Plan: 0 to add, 5 to change, 0 to replace, 0 to destroy."),
        "{}",
        plan.stdout
    );
    assert!(
        !plan.stdout.contains("CREATE INDEX CONCURRENTLY"),
        "{}",
        plan.stdout
    );
    for (old, new) in RENAMES {
        assert!(
            plan.stdout.contains(&format!(
                "# database.app/index.{new} will be renamed from `{old}`"
            )),
            "{old} -> {new}\n{}",
            plan.stdout
        );
    }
    // Both duplicates are reported: the second copy of the hash index the
    // spec adopts, and the copy of the status index it already names.
    for (duplicate, of) in [
        ("idx_letters_hash_copy", "idx_letters_file_hash"),
        ("idx_letters_state", "idx_letters_status"),
    ] {
        assert!(
            plan.stdout.contains(&format!(
                "note: database.app/index.{duplicate}: same definition as `{of}`"
            )),
            "{duplicate}\n{}",
            plan.stdout
        );
    }

    pgspec(&["apply", "-f", spec_arg, "--auto-approve"], &env).expect(0);
    let after = indexes(&server).await;
    // No index was built or dropped: the same relations, renamed.
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "{before:?}\n{after:?}"
    );
    let renames: BTreeMap<&str, &str> = RENAMES.into_iter().collect();
    for (oid, (old, _)) in &before {
        let (name, comment) = &after[oid];
        let expected = renames.get(old.as_str()).copied().unwrap_or(old);
        assert_eq!(name, expected, "index {oid}");
        let stamped = comment.as_deref().is_some_and(|comment| {
            comment.starts_with("managed by pgspec; deployment=renames-test; spec=")
        });
        assert_eq!(
            stamped,
            renames.contains_key(old.as_str()),
            "{name}: {comment:?}"
        );
    }

    let again = pgspec(&["plan", "-f", spec_arg, "--detailed-exitcode"], &env).expect(0);
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    assert!(
        again
            .stdout
            .contains("note: database.app/index.idx_letters_hash_copy: same definition as"),
        "{}",
        again.stdout
    );
    // The duplicates are left alone even when the spec prunes: pgspec did
    // not build them.
    let pruning = std::fs::read_to_string(&spec_path)
        .expect("read spec")
        .replace("name: renames-test\n", "name: renames-test\nprune: true\n");
    let pruning_path = work.write("pruning.yaml", &pruning);
    let pruned = pgspec(
        &["plan", "-f", arg(&pruning_path), "--detailed-exitcode"],
        &env,
    )
    .expect(0);
    assert!(pruned.stdout.contains("No changes."), "{}", pruned.stdout);
    assert_eq!(indexes(&server).await, after);
}

for_each_major!(runbook_names_converge_by_renames, super::runbook_names);
