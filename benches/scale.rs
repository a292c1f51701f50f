//! How fast plan and apply are, how that grows with the deployment's size,
//! and how close plan stays to the floor: the time the server itself needs
//! to answer pgspec's catalog queries.
//!
//! Run it with `cargo bench --bench scale` (sizes with
//! `-- --sizes 100,1000,10000`, runs per figure with `--runs 5`). It starts
//! its own PostgreSQL 17 container from the locally built test image
//! (scripts/test-env.sh builds it), generates for each size N a deployment of
//! N roles with passwords and connection limits, N tables with two indexes
//! each (a btree on two columns and a partial one), N table grants, default
//! privileges, five extensions and ten settings, and measures every figure as
//! the median of several runs of the real `pgspec` binary (cold process,
//! whole command). The floor is the server-side execution time of exactly
//! the statements one `pgspec plan` sent, read from pg_stat_statements.
//! It prints a table and writes the same figures as JSON
//! (target/bench/scale.json, or `--json PATH`).
//!
//! Run without `--bench` (as `cargo test --all-targets` would) it does
//! nothing.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "scale/downtime.rs"]
mod downtime;
#[path = "scale/floor.rs"]
mod floor;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::CreateContainerOptions;
use common::{Cleanup, connect, docker, postgres_image, unique_name};
use serde::Serialize;

const PG_PASSWORD_ENV: &str = "PGSPEC_BENCH_PG_PASSWORD";
const ROLE_PASSWORD_ENV: &str = "PGSPEC_BENCH_ROLE_PASSWORD";

/// One measured command.
#[derive(Debug, Clone, Serialize)]
struct Figure {
    /// Median wall time in milliseconds.
    median_ms: f64,
    /// Every run, in milliseconds.
    runs_ms: Vec<f64>,
    /// Peak resident memory of the pgspec process, in KiB (largest run).
    peak_rss_kib: i64,
}

/// Figures for one size.
#[derive(Debug, Clone, Serialize)]
struct SizeReport {
    n: usize,
    objects: usize,
    validate: Figure,
    apply_from_empty: Figure,
    plan_in_sync: Figure,
    plan_one_percent_drift: Figure,
    apply_in_sync: Figure,
    /// Server-side execution time of the statements one plan sends.
    catalog_ms: f64,
    /// Single-thread PBKDF2 time of checking every declared password.
    pbkdf2_ms: f64,
    /// The plan floor: catalog time plus PBKDF2 time over the cores.
    plan_floor_ms: f64,
    /// How many statements one plan sends (must not grow with N).
    plan_statements: i64,
    plan_over_floor: f64,
    /// The statements the last apply from empty ran, replayed as one psql
    /// script on a fresh server of the same image.
    apply_floor_ms: f64,
    apply_statements: usize,
    apply_over_floor: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: String,
    postgres: String,
    runs: usize,
    sizes: Vec<SizeReport>,
    /// `validate` alone on larger specs: (objects, figure).
    validate_only: Vec<(usize, Figure)>,
    /// Longest gap a polling client sees in a restart and a replace.
    downtime: Option<downtime::Downtime>,
}

struct Options {
    sizes: Vec<usize>,
    /// Sizes at which only `validate` runs (no server needed).
    validate_sizes: Vec<usize>,
    runs: usize,
    /// How often each downtime is measured; 0 skips them.
    downtime_runs: usize,
    json: PathBuf,
}

fn options() -> Option<Options> {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|arg| arg == "--bench") {
        return None;
    }
    let value = |name: &str| {
        args.iter()
            .position(|arg| arg == name)
            .and_then(|index| args.get(index + 1))
            .cloned()
    };
    Some(Options {
        sizes: value("--sizes")
            .unwrap_or_else(|| "100,1000,10000".to_owned())
            .split(',')
            .map(|size| size.trim().parse().expect("--sizes takes numbers"))
            .collect(),
        validate_sizes: value("--validate-sizes")
            .unwrap_or_else(|| "25000".to_owned())
            .split(',')
            .filter(|size| !size.trim().is_empty())
            .map(|size| size.trim().parse().expect("--validate-sizes takes numbers"))
            .collect(),
        runs: value("--runs").map_or(5, |runs| runs.parse().expect("--runs takes a number")),
        downtime_runs: value("--downtime-runs").map_or(3, |runs| {
            runs.parse().expect("--downtime-runs takes a number")
        }),
        json: value("--json").map_or_else(
            || {
                PathBuf::from(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/target/bench/scale.json"
                ))
            },
            PathBuf::from,
        ),
    })
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some(MEASURE) {
        measure_child();
        return;
    }
    let Some(options) = options() else {
        println!("scale: benchmark skipped (run it with `cargo bench --bench scale`)");
        return;
    };
    common::block_on(run(options));
}

async fn run(options: Options) {
    let server = BenchServer::start().await;
    let replay = BenchServer::start().await;
    let mut report = Report {
        machine: machine(),
        postgres: server.version().await,
        runs: options.runs,
        sizes: Vec::new(),
        validate_only: Vec::new(),
        downtime: None,
    };
    for &n in &options.validate_sizes {
        let work = tempfile::tempdir().expect("temp dir");
        let path = work.path().join(format!("validate-{n}.yaml"));
        std::fs::write(&path, spec(&server, n)).expect("write spec");
        let figure = figure(options.runs, || run_pgspec(&server, &["validate"], &path));
        eprintln!(
            "scale: validate alone, {} objects: {:.0} ms",
            n * 4 + 16,
            figure.median_ms
        );
        report.validate_only.push((n * 4 + 16, figure));
    }
    for &n in &options.sizes {
        eprintln!("scale: N = {n}");
        report
            .sizes
            .push(measure(&server, &replay, n, options.runs).await);
        print_table(&report);
    }
    if options.downtime_runs > 0 {
        eprintln!("scale: downtime of a restart and a replace");
        report.downtime = Some(downtime::measure(options.downtime_runs).await);
    }
    if let Some(parent) = options.json.parent() {
        std::fs::create_dir_all(parent).expect("create the JSON directory");
    }
    std::fs::write(
        &options.json,
        serde_json::to_string_pretty(&report).expect("report serializes"),
    )
    .expect("write the JSON report");
    println!("{}", table(&report));
    println!("figures written to {}", options.json.display());
}

/// A PostgreSQL 17 server with pg_stat_statements, owned by the benchmark.
struct BenchServer {
    name: String,
    port: u16,
    password: String,
    _cleanup: Cleanup,
}

impl BenchServer {
    async fn start() -> BenchServer {
        let docker = docker().await;
        let name = unique_name("bench");
        let mut cleanup = Cleanup::default();
        cleanup.containers.push(name.clone());
        let password = format!("pw-{}", unique_name("bench"));
        let port = common::free_port();
        docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..CreateContainerOptions::default()
                }),
                ContainerCreateBody {
                    image: Some(postgres_image(17)),
                    env: Some(vec![format!("POSTGRES_PASSWORD={password}")]),
                    cmd: Some(
                        [
                            "postgres",
                            "-c",
                            "shared_preload_libraries=pg_stat_statements",
                            "-c",
                            "pg_stat_statements.track=top",
                            "-c",
                            "max_connections=300",
                            "-c",
                            "log_statement=all",
                            "-c",
                            &format!("log_line_prefix={}", floor::LOG_LINE_PREFIX),
                        ]
                        .map(|arg| arg.to_owned())
                        .to_vec(),
                    ),
                    exposed_ports: Some(vec!["5432/tcp".to_owned()]),
                    host_config: Some(HostConfig {
                        port_bindings: Some(
                            [(
                                "5432/tcp".to_owned(),
                                Some(vec![PortBinding {
                                    host_ip: Some("127.0.0.1".to_owned()),
                                    host_port: Some(port.to_string()),
                                }]),
                            )]
                            .into(),
                        ),
                        shm_size: Some(256 << 20),
                        ..HostConfig::default()
                    }),
                    ..ContainerCreateBody::default()
                },
            )
            .await
            .expect("create the benchmark server");
        docker
            .start_container(&name, None)
            .await
            .expect("start the benchmark server");
        let server = BenchServer {
            name,
            port,
            password,
            _cleanup: cleanup,
        };
        let started = Instant::now();
        while connect(server.port, &server.password, "postgres")
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "server did not start"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        server
            .sql(
                "postgres",
                "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
            )
            .await;
        server
    }

    async fn sql(&self, database: &str, sql: &str) {
        connect(self.port, &self.password, database)
            .await
            .expect("connect")
            .batch_execute(sql)
            .await
            .unwrap_or_else(|error| panic!("{error:?}"));
    }

    async fn version(&self) -> String {
        connect(self.port, &self.password, "postgres")
            .await
            .expect("connect")
            .query_one("SELECT version()", &[])
            .await
            .expect("version")
            .get(0)
    }

    /// Server-side time and count of the statements run since the last
    /// reset, excluding the benchmark's own bookkeeping.
    async fn statements_since_reset(&self) -> (f64, i64) {
        let row = connect(self.port, &self.password, "postgres")
            .await
            .expect("connect")
            .query_one(
                "SELECT coalesce(sum(total_exec_time), 0)::float8, coalesce(sum(calls), 0)::int8 \
                 FROM pg_stat_statements \
                 WHERE query NOT ILIKE '%pg_stat_statements%'",
                &[],
            )
            .await
            .expect("read pg_stat_statements");
        (row.get(0), row.get(1))
    }

    async fn reset_statements(&self) {
        self.sql("postgres", "SELECT pg_stat_statements_reset()")
            .await;
    }
}

/// The spec of a deployment of size `n`.
fn spec(server: &BenchServer, n: usize) -> String {
    let mut text = format!(
        "version: 1\nname: bench-{n}\npostgres:\n  connection:\n    host: 127.0.0.1\n    port: {}\n    \
         user: postgres\n    password: {{ env: {PG_PASSWORD_ENV} }}\n  settings:\n    \
         work_mem: 8MB\n    maintenance_work_mem: 128MB\n    log_min_duration_statement: 1000\n    \
         random_page_cost: 1.1\n    effective_cache_size: 1GB\n    checkpoint_completion_target: 0.9\n    \
         idle_in_transaction_session_timeout: 10min\n    effective_io_concurrency: 100\n    \
         default_statistics_target: 200\n    log_lock_waits: on\nroles:\n",
        server.port
    );
    for role in 0..n {
        let _ = writeln!(
            text,
            "  - {{ name: bench_{n}_r{role}, login: true, connection_limit: 5, password: {{ env: {ROLE_PASSWORD_ENV} }} }}"
        );
    }
    let _ = write!(
        text,
        "databases:\n  - name: bench_{n}\n    extensions: [pg_trgm, hstore, citext, \"uuid-ossp\", cube]\n    grants:\n"
    );
    for table in 0..n {
        let _ = writeln!(
            text,
            "      - {{ role: bench_{n}_r{table}, schema: public, tables: [t{table}], privileges: [SELECT] }}"
        );
    }
    let _ = writeln!(
        text,
        "      - {{ role: bench_{n}_r0, schema: public, default_for: tables, privileges: [SELECT] }}"
    );
    text.push_str("    indexes:\n");
    for table in 0..n {
        let _ = writeln!(
            text,
            "      - {{ name: t{table}_a_b, table: t{table}, columns: [a, b] }}\n      - {{ name: t{table}_open, table: t{table}, columns: [c], where: \"c > 0\" }}"
        );
    }
    text
}

async fn measure(server: &BenchServer, replay: &BenchServer, n: usize, runs: usize) -> SizeReport {
    let work = tempfile::tempdir().expect("temp dir");
    let spec_path = work.path().join(format!("bench-{n}.yaml"));
    std::fs::write(&spec_path, spec(server, n)).expect("write spec");
    let pgspec = |args: &[&str]| run_pgspec(server, args, &spec_path);
    let validate = figure(runs, || pgspec(&["validate"]));
    let mut empty_runs = Vec::new();
    let mut applied = Vec::new();
    for run in 0..runs {
        if run > 0 {
            for statement in drop_deployment(n) {
                server.sql("postgres", &statement).await;
            }
        }
        server
            .sql("postgres", &format!("CREATE DATABASE bench_{n}"))
            .await;
        server.sql(&format!("bench_{n}"), &tables(n)).await;
        let from = floor::log_lines(server).await;
        empty_runs.push(pgspec(&["apply", "--auto-approve"]));
        applied = floor::statements_since(server, from).await;
    }
    let apply_from_empty = figure_of(empty_runs);
    replay
        .sql("postgres", &format!("CREATE DATABASE bench_{n}"))
        .await;
    replay.sql(&format!("bench_{n}"), &tables(n)).await;
    let apply_floor = floor::replay(replay, &floor::script(&applied)).await;
    for statement in drop_deployment(n) {
        replay.sql("postgres", &statement).await;
    }
    let plan_in_sync = figure(runs, || pgspec(&["plan", "--detailed-exitcode"]));
    let apply_in_sync = figure(runs, || pgspec(&["apply", "--auto-approve"]));

    server.reset_statements().await;
    pgspec(&["plan", "--detailed-exitcode"]);
    let (catalog_ms, plan_statements) = server.statements_since_reset().await;
    let pbkdf2_ms = floor::pbkdf2(n).as_secs_f64() * 1000.0;
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let plan_floor_ms = catalog_ms + pbkdf2_ms / cores;
    let apply_floor_ms = apply_floor.as_secs_f64() * 1000.0;

    // 1% drift: connection limits changed by hand on one role in a hundred.
    let drifted = (n / 100).max(1);
    let mut drift = String::new();
    for role in 0..drifted {
        let _ = writeln!(drift, "ALTER ROLE bench_{n}_r{role} CONNECTION LIMIT 7;");
    }
    server.sql("postgres", &drift).await;
    let plan_one_percent_drift = figure(runs, || pgspec(&["plan"]));

    SizeReport {
        n,
        objects: n * 4 + 16,
        plan_over_floor: plan_in_sync.median_ms / plan_floor_ms.max(0.001),
        apply_over_floor: apply_from_empty.median_ms / apply_floor_ms.max(0.001),
        apply_floor_ms,
        apply_statements: applied.len(),
        validate,
        apply_from_empty,
        plan_in_sync,
        plan_one_percent_drift,
        apply_in_sync,
        catalog_ms,
        pbkdf2_ms,
        plan_floor_ms,
        plan_statements,
    }
}

/// The tables of a deployment of size N, as the application's migrations
/// would make them: one batch.
fn tables(n: usize) -> String {
    let mut tables = String::new();
    for table in 0..n {
        let _ = writeln!(
            tables,
            "CREATE TABLE t{table} (id int, a int, b int, c int);"
        );
    }
    tables
}

/// Takes the server back to before the first apply: the database (with its
/// grants, indexes and default privileges), the roles, the settings. One
/// statement each: none of them runs inside a transaction block.
fn drop_deployment(n: usize) -> Vec<String> {
    let roles: Vec<String> = (0..n).map(|role| format!("bench_{n}_r{role}")).collect();
    vec![
        format!("DROP DATABASE bench_{n} WITH (FORCE)"),
        format!("DROP ROLE {}", roles.join(", ")),
        "ALTER SYSTEM RESET ALL".to_owned(),
        "SELECT pg_reload_conf()".to_owned(),
    ]
}

/// Runs `pgspec COMMAND -f SPEC` and returns its wall time and peak RSS.
///
/// Linux carries a process's peak RSS across `execve`, and a child starts
/// from its parent's: a pgspec spawned straight from this benchmark would
/// report the benchmark's own peak. So a fresh copy of this binary is
/// started first (`MEASURE`); it spawns pgspec while it is still small,
/// waits for it, and reports pgspec's wall time and peak RSS.
fn run_pgspec(server: &BenchServer, args: &[&str], spec: &Path) -> (Duration, i64) {
    let me = std::env::current_exe().expect("the benchmark's own path");
    let output = Command::new(me)
        .arg(MEASURE)
        .arg(env!("CARGO_BIN_EXE_pgspec"))
        .args(args)
        .arg("-f")
        .arg(spec)
        .arg("-q")
        .env(PG_PASSWORD_ENV, &server.password)
        .env(ROLE_PASSWORD_ENV, "bench-role-secret")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::null())
        .output()
        .expect("run the measuring copy");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut figures = text.split_whitespace();
    let mut next = || -> i64 {
        figures
            .next()
            .and_then(|figure| figure.parse().ok())
            .unwrap_or_else(|| panic!("measuring pgspec {args:?} failed: {text}"))
    };
    let (code, nanos, peak_kib) = (next(), next(), next());
    assert!(code == 0 || code == 2, "pgspec {args:?} failed with {code}");
    (Duration::from_nanos(nanos as u64), peak_kib)
}

/// The argument that makes this binary measure one command instead of
/// benchmarking.
const MEASURE: &str = "--measure-one-command";

/// Runs the command in the arguments after `MEASURE`, with its output
/// discarded, and prints its exit code, wall time in nanoseconds and peak
/// RSS in KiB.
fn measure_child() {
    let mut args = std::env::args().skip(2);
    let program = args.next().expect("a program to measure");
    let started = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start pgspec");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, waited for exactly once, here.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    assert_eq!(waited, pid, "wait4");
    std::mem::forget(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    println!("{code} {} {}", elapsed.as_nanos(), usage.ru_maxrss);
}

fn figure(runs: usize, mut run: impl FnMut() -> (Duration, i64)) -> Figure {
    figure_of((0..runs).map(|_| run()).collect())
}

/// The median time and the largest peak RSS of some runs.
fn figure_of(runs: Vec<(Duration, i64)>) -> Figure {
    let times: Vec<f64> = runs
        .iter()
        .map(|(elapsed, _)| elapsed.as_secs_f64() * 1000.0)
        .collect();
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    Figure {
        median_ms: sorted[sorted.len() / 2],
        runs_ms: times,
        peak_rss_kib: runs.iter().map(|(_, rss)| *rss).max().unwrap_or_default(),
    }
}

fn table(report: &Report) -> String {
    let mut text = format!(
        "machine: {}\nserver: {}\nmedian of {} runs, milliseconds\n\n",
        report.machine, report.postgres, report.runs
    );
    text.push_str(
        "| N | objects | validate | apply (empty) | apply floor | apply / floor | plan (in sync) \
         | plan (1% drift) | apply (in sync) | catalog | PBKDF2 / cores | plan floor | plan / floor \
         | statements | peak RSS plan | peak RSS apply (empty) |\n",
    );
    text.push_str(
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mib = |figure: &Figure| figure.peak_rss_kib as f64 / 1024.0;
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    for size in &report.sizes {
        let _ = writeln!(
            text,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.1}x | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1}x | {} | {:.1} MiB | {:.1} MiB |",
            size.n,
            size.objects,
            size.validate.median_ms,
            size.apply_from_empty.median_ms,
            size.apply_floor_ms,
            size.apply_over_floor,
            size.plan_in_sync.median_ms,
            size.plan_one_percent_drift.median_ms,
            size.apply_in_sync.median_ms,
            size.catalog_ms,
            size.pbkdf2_ms / cores,
            size.plan_floor_ms,
            size.plan_over_floor,
            size.plan_statements,
            mib(&size.plan_in_sync).max(mib(&size.plan_one_percent_drift)),
            mib(&size.apply_from_empty),
        );
    }
    if let Some(downtime) = &report.downtime {
        let _ = writeln!(
            text,
            "\nlongest gap a client polling `select 1` sees: docker restart {:.0} ms, \
             pgspec restart {:.0} ms ({:.1}x), pgspec replace {:.0} ms ({:.1}x)",
            downtime.docker_restart_ms,
            downtime.pgspec_restart_ms,
            downtime.pgspec_restart_ms / downtime.docker_restart_ms.max(0.001),
            downtime.pgspec_replace_ms,
            downtime.pgspec_replace_ms / downtime.docker_restart_ms.max(0.001),
        );
    }
    for (objects, figure) in &report.validate_only {
        let _ = writeln!(
            text,
            "\nvalidate alone, {objects} objects: {:.0} ms (peak RSS {:.1} MiB)",
            figure.median_ms,
            figure.peak_rss_kib as f64 / 1024.0
        );
    }
    text
}

fn print_table(report: &Report) {
    eprintln!("{}", table(report));
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("MemTotal"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or_else(String::new, |kib| format!(", {} GiB", kib / 1024 / 1024));
    format!("{cpu}, {cores} cores{memory}")
}
