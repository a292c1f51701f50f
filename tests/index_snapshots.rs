//! Index plans as users read them: each case is a desired spec (YAML), a
//! live state (JSON, as `live::observe` records it, with the server's
//! canonical form of each desired index in `index_checks`) and a reviewed
//! snapshot of the rendered text and JSON.

mod plan_check;

/// Diffs a spec against a recorded live state and snapshots both renderings.
fn check(name: &str, desired_yaml: &str, live_json: &str) {
    let (text, json) = plan_check::renderings(desired_yaml, live_json);
    insta::assert_snapshot!(format!("{name}_text"), text);
    insta::assert_snapshot!(format!("{name}_json"), json);
}

const SPEC: &str = r#"
version: 1
name: ledger
postgres:
  connection: { host: db.internal }
databases:
  - name: app
    indexes:
      - { name: idx_crawl_ledger_source_state, table: crawl_ledger, columns: [source, state] }
      - { name: idx_crawl_ledger_metadata, table: crawl_ledger, using: gin, columns: [metadata] }
      - name: idx_crawl_ledger_pending
        table: crawl_ledger
        columns: [{ expression: "LOWER( url )" }]
        where: "state = 'discovered'"
"#;

/// What the server makes of the three desired indexes of `SPEC`.
const CHECKS: &str = r#""index_checks": {
    "idx_crawl_ledger_source_state": { "state": "canonical",
        "definition": "CREATE INDEX idx_crawl_ledger_source_state ON public.crawl_ledger USING btree (source, state)" },
    "idx_crawl_ledger_metadata": { "state": "canonical",
        "definition": "CREATE INDEX idx_crawl_ledger_metadata ON public.crawl_ledger USING gin (metadata)" },
    "idx_crawl_ledger_pending": { "state": "canonical",
        "definition": "CREATE INDEX idx_crawl_ledger_pending ON public.crawl_ledger USING btree (lower(url)) WHERE (state = 'discovered'::text)" } }"#;

const PKEY: &str = r#""crawl_ledger_pkey": { "name": "crawl_ledger_pkey", "schema": "public",
    "table": "crawl_ledger", "constraint": "crawl_ledger_pkey", "size_bytes": 4202496,
    "definition": "CREATE UNIQUE INDEX crawl_ledger_pkey ON public.crawl_ledger USING btree (url)" }"#;

fn live(indexes: &str) -> String {
    format!(
        r#"{{ "name": "ledger", "server": {{ "version_num": 170002 }},
             "databases": {{ "app": {{ "name": "app", "owner": "postgres", {CHECKS},
                 "indexes": {{ {PKEY}{indexes} }} }} }} }}"#
    )
}

#[test]
fn missing_indexes_are_built_concurrently() {
    check("index_create", SPEC, &live(""));
}

#[test]
fn a_changed_index_is_replaced_and_a_respelled_one_is_not() {
    check(
        "index_replace",
        SPEC,
        &live(
            r#",
            "idx_crawl_ledger_source_state": { "name": "idx_crawl_ledger_source_state",
                "schema": "public", "table": "crawl_ledger", "managed": true, "size_bytes": 2260992,
                "definition": "CREATE INDEX idx_crawl_ledger_source_state ON public.crawl_ledger USING btree (source)" },
            "idx_crawl_ledger_metadata": { "name": "idx_crawl_ledger_metadata",
                "schema": "public", "table": "crawl_ledger", "managed": true, "size_bytes": 1073152,
                "definition": "CREATE INDEX idx_crawl_ledger_metadata ON public.crawl_ledger USING gin (metadata)" },
            "idx_crawl_ledger_pending": { "name": "idx_crawl_ledger_pending",
                "schema": "public", "table": "crawl_ledger", "managed": true, "size_bytes": 819200,
                "definition": "CREATE INDEX idx_crawl_ledger_pending ON public.crawl_ledger USING btree (lower(url)) WHERE (state = 'discovered'::text)" }"#,
        ),
    );
}

#[test]
fn an_invalid_index_is_rebuilt() {
    check(
        "index_invalid",
        SPEC,
        &live(
            r#",
            "idx_crawl_ledger_source_state": { "name": "idx_crawl_ledger_source_state",
                "schema": "public", "table": "crawl_ledger", "invalid": true, "size_bytes": 0,
                "definition": "CREATE INDEX idx_crawl_ledger_source_state ON public.crawl_ledger USING btree (source, state)" },
            "idx_crawl_ledger_metadata": { "name": "idx_crawl_ledger_metadata",
                "schema": "public", "table": "crawl_ledger", "managed": true, "size_bytes": 1073152,
                "definition": "CREATE INDEX idx_crawl_ledger_metadata ON public.crawl_ledger USING gin (metadata)" },
            "idx_crawl_ledger_pending": { "name": "idx_crawl_ledger_pending",
                "schema": "public", "table": "crawl_ledger", "managed": true, "size_bytes": 819200,
                "definition": "CREATE INDEX idx_crawl_ledger_pending ON public.crawl_ledger USING btree (lower(url)) WHERE (state = 'discovered'::text)" }"#,
        ),
    );
}

#[test]
fn unmanaged_indexes_are_reported_and_only_pgspecs_are_pruned() {
    let spec = SPEC.replace("name: ledger\n", "name: ledger\nprune: true\n");
    check(
        "index_unmanaged",
        &spec,
        &live(
            r#",
            "idx_crawl_ledger_source_state": { "name": "idx_crawl_ledger_source_state",
                "schema": "public", "table": "crawl_ledger", "managed": true, "size_bytes": 2260992,
                "definition": "CREATE INDEX idx_crawl_ledger_source_state ON public.crawl_ledger USING btree (source, state)" },
            "idx_crawl_ledger_metadata": { "name": "idx_crawl_ledger_metadata",
                "schema": "public", "table": "crawl_ledger", "size_bytes": 1073152,
                "definition": "CREATE INDEX idx_crawl_ledger_metadata ON public.crawl_ledger USING gin (metadata)" },
            "idx_crawl_ledger_pending": { "name": "idx_crawl_ledger_pending",
                "schema": "public", "table": "crawl_ledger", "managed": true, "size_bytes": 819200,
                "definition": "CREATE INDEX idx_crawl_ledger_pending ON public.crawl_ledger USING btree (lower(url)) WHERE (state = 'discovered'::text)" },
            "idx_crawl_ledger_state": { "name": "idx_crawl_ledger_state",
                "schema": "public", "table": "crawl_ledger", "managed": true, "size_bytes": 704512,
                "definition": "CREATE INDEX idx_crawl_ledger_state ON public.crawl_ledger USING btree (state)" },
            "idx_by_hand": { "name": "idx_by_hand",
                "schema": "public", "table": "crawl_ledger", "size_bytes": 704512,
                "definition": "CREATE INDEX idx_by_hand ON public.crawl_ledger USING btree (updated_at)" },
            "audit.events_at": { "name": "events_at",
                "schema": "audit", "table": "events", "size_bytes": 8192,
                "definition": "CREATE INDEX events_at ON audit.events USING btree (at)" }"#,
        ),
    );
}

#[test]
fn a_missing_table_a_rejected_definition_or_a_partitioned_table_is_a_plan_error() {
    check(
        "index_errors",
        r#"
version: 1
name: ledger
postgres:
  connection: { host: db.internal }
databases:
  - name: app
    indexes:
      - { name: idx_events_at, table: audit.events, columns: [at] }
      - { name: idx_items_tags, table: items, using: gin, columns: [tags] }
      - { name: idx_items_state, table: items, columns: [state] }
      - { name: idx_measurements_at, table: measurements, columns: [at] }
"#,
        r#"{ "name": "ledger", "server": { "version_num": 170002 },
             "databases": { "app": { "name": "app", "owner": "postgres",
                 "index_checks": {
                     "idx_events_at": { "state": "table_missing" },
                     "idx_items_tags": { "state": "rejected", "code": "42704",
                         "message": "data type text has no default operator class for access method \"gin\"" },
                     "idx_items_state": { "state": "canonical",
                         "definition": "CREATE INDEX idx_items_state ON public.items USING btree (state)" },
                     "idx_measurements_at": { "state": "canonical", "partitioned": true,
                         "definition": "CREATE INDEX idx_measurements_at ON public.measurements USING btree (at)" } } } } }"#,
    );
}

#[test]
fn leftovers_of_an_interrupted_replace_are_used_or_removed() {
    // `source_state` lost its old index but the new one waits under the
    // scratch name; `metadata` is in sync beside a stray scratch index;
    // `pending` backs a constraint and differs, which pgspec refuses.
    check(
        "index_leftovers",
        SPEC,
        &live(
            r#",
            "idx_crawl_ledger_source_state_pgspec_new": { "name": "idx_crawl_ledger_source_state_pgspec_new",
                "schema": "public", "table": "crawl_ledger", "managed": true,
                "definition": "CREATE INDEX idx_crawl_ledger_source_state_pgspec_new ON public.crawl_ledger USING btree (source, state)" },
            "idx_crawl_ledger_metadata": { "name": "idx_crawl_ledger_metadata",
                "schema": "public", "table": "crawl_ledger", "managed": true,
                "definition": "CREATE INDEX idx_crawl_ledger_metadata ON public.crawl_ledger USING gin (metadata)" },
            "idx_crawl_ledger_metadata_pgspec_new": { "name": "idx_crawl_ledger_metadata_pgspec_new",
                "schema": "public", "table": "crawl_ledger", "invalid": true,
                "definition": "CREATE INDEX idx_crawl_ledger_metadata_pgspec_new ON public.crawl_ledger USING gin (metadata jsonb_path_ops)" },
            "idx_crawl_ledger_pending": { "name": "idx_crawl_ledger_pending",
                "schema": "public", "table": "crawl_ledger", "constraint": "crawl_ledger_pending_key",
                "definition": "CREATE UNIQUE INDEX idx_crawl_ledger_pending ON public.crawl_ledger USING btree (url)" }"#,
        ),
    );
}

#[test]
fn a_replace_uses_a_new_index_an_interrupted_replace_built() {
    check(
        "index_replace_resumed",
        SPEC,
        &live(
            r#",
            "idx_crawl_ledger_source_state": { "name": "idx_crawl_ledger_source_state",
                "schema": "public", "table": "crawl_ledger", "managed": true,
                "definition": "CREATE INDEX idx_crawl_ledger_source_state ON public.crawl_ledger USING btree (source)" },
            "idx_crawl_ledger_source_state_pgspec_new": { "name": "idx_crawl_ledger_source_state_pgspec_new",
                "schema": "public", "table": "crawl_ledger", "managed": true,
                "definition": "CREATE INDEX idx_crawl_ledger_source_state_pgspec_new ON public.crawl_ledger USING btree (source, state)" },
            "idx_crawl_ledger_metadata": { "name": "idx_crawl_ledger_metadata",
                "schema": "public", "table": "crawl_ledger", "managed": true,
                "definition": "CREATE INDEX idx_crawl_ledger_metadata ON public.crawl_ledger USING gin (metadata)" },
            "idx_crawl_ledger_pending": { "name": "idx_crawl_ledger_pending",
                "schema": "public", "table": "crawl_ledger", "managed": true,
                "definition": "CREATE INDEX idx_crawl_ledger_pending ON public.crawl_ledger USING btree (lower(url)) WHERE (state = 'discovered'::text)" }"#,
        ),
    );
}

/// Issue 24: a database a runbook built holds the spec's indexes under the
/// runbook's names. Each is renamed, not built again: `source_state` (with
/// a second copy, reported as a duplicate) and the partial expression index
/// `pending`, whose predicate matches; another partial index whose
/// predicate differs is not the same index.
#[test]
fn indexes_under_other_names_are_renamed_and_duplicates_reported() {
    check(
        "index_rename",
        SPEC,
        &live(
            r#",
            "idx_crawl_ledger_src_state": { "name": "idx_crawl_ledger_src_state",
                "schema": "public", "table": "crawl_ledger", "size_bytes": 2260992,
                "definition": "CREATE INDEX idx_crawl_ledger_src_state ON public.crawl_ledger USING btree (source, state)" },
            "idx_src_state_copy": { "name": "idx_src_state_copy",
                "schema": "public", "table": "crawl_ledger", "size_bytes": 2260992,
                "definition": "CREATE INDEX idx_src_state_copy ON public.crawl_ledger USING btree (source, state)" },
            "idx_crawl_ledger_metadata": { "name": "idx_crawl_ledger_metadata",
                "schema": "public", "table": "crawl_ledger", "managed": true, "size_bytes": 1073152,
                "definition": "CREATE INDEX idx_crawl_ledger_metadata ON public.crawl_ledger USING gin (metadata)" },
            "idx_pending_fetched": { "name": "idx_pending_fetched",
                "schema": "public", "table": "crawl_ledger", "size_bytes": 819200,
                "definition": "CREATE INDEX idx_pending_fetched ON public.crawl_ledger USING btree (lower(url)) WHERE (state = 'fetched'::text)" },
            "idx_pending_urls": { "name": "idx_pending_urls",
                "schema": "public", "table": "crawl_ledger", "size_bytes": 819200,
                "definition": "CREATE INDEX idx_pending_urls ON public.crawl_ledger USING btree (lower(url)) WHERE (state = 'discovered'::text)" }"#,
        ),
    );
}

#[test]
fn an_index_on_a_small_table_is_built_plainly_and_a_large_one_concurrently() {
    check(
        "index_create_small_table",
        r#"
version: 1
name: ledger
postgres:
  connection: { host: db.internal }
databases:
  - name: app
    indexes:
      - { name: idx_feature_flags_name, table: feature_flags, columns: [name] }
      - { name: idx_crawl_ledger_state, table: crawl_ledger, columns: [state] }
"#,
        r#"{ "name": "ledger", "server": { "version_num": 170002 },
             "databases": { "app": { "name": "app", "owner": "postgres",
                 "index_checks": {
                     "idx_feature_flags_name": { "state": "canonical", "table_bytes": 16384,
                         "definition": "CREATE INDEX idx_feature_flags_name ON public.feature_flags USING btree (name)" },
                     "idx_crawl_ledger_state": { "state": "canonical", "table_bytes": 41943040,
                         "definition": "CREATE INDEX idx_crawl_ledger_state ON public.crawl_ledger USING btree (state)" } },
                 "indexes": {} } } }"#,
    );
}
