//! Issue 16: the command line's contract, through the real binary and
//! without Docker: exit codes a CI gate can trust, one error prefix, and
//! colour only where a terminal shows it.

use std::process::{Command, Output};

fn pgspec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgspec"))
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .output()
        .expect("run pgspec")
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn usage_errors_exit_1_not_the_drift_code() {
    for args in [
        &["drift", "--fiel", "x.yaml"][..],
        &["plan"][..],
        &["no-such-command"][..],
        &["apply", "--auto-approve", "--no-such-flag"][..],
        &["status", "-f", "x.yaml", "--watch", "0"][..],
    ] {
        let output = pgspec(args);
        assert_eq!(code(&output), 1, "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains("error:"), "{args:?}");
    }
}

#[test]
fn help_and_version_exit_0() {
    for args in [&["--help"][..], &["--version"][..], &["plan", "--help"][..]] {
        let output = pgspec(args);
        assert_eq!(code(&output), 0, "{args:?}: {}", stderr(&output));
        assert!(!output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn a_spec_error_has_one_error_prefix_and_no_colour_on_a_redirected_stderr() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("spec.yaml");
    std::fs::write(&path, "version: 1\nname: x\nroles:\n  - nam: a\n").expect("write spec");
    let output = pgspec(&["validate", "-f", path.to_str().expect("utf-8 path")]);
    assert_eq!(code(&output), 1);
    let text = stderr(&output);
    assert!(!text.contains("error: error:"), "{text}");
    assert!(text.starts_with("error: unknown field `nam`"), "{text}");
    // stderr is a pipe here: no escape codes, NO_COLOR or not.
    assert!(!text.contains('\u{1b}'), "{text:?}");
    // `--color always` still colours it.
    let forced = pgspec(&[
        "--color",
        "always",
        "validate",
        "-f",
        path.to_str().expect("utf-8 path"),
    ]);
    assert!(stderr(&forced).contains('\u{1b}'));
}

const SPEC: &str = "version: 1\nname: shown\npostgres:\n  connection: { host: db.internal, user: admin }\nroles:\n  - name: app\n    login: true\n";

fn run_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgspec"));
    command
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("run pgspec");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait for pgspec")
}

#[test]
fn the_spec_can_come_from_standard_input() {
    let output = run_with(&["validate", "-f", "-"], &[], Some(SPEC));
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let broken = run_with(&["validate", "-f", "-"], &[], Some("version: 1\nnam: x\n"));
    assert_eq!(code(&broken), 1);
    assert!(
        stderr(&broken).contains("<stdin>:2:1"),
        "{}",
        stderr(&broken)
    );
}

/// Issue 25: a server nobody answers on is a red line of `status`, which
/// exits 2 (the cron gate fires), in text and in JSON.
#[test]
fn status_of_an_unreachable_server_is_red() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let spec = format!(
        "version: 1\nname: gone\npostgres:\n  connection: {{ host: 127.0.0.1, port: {port}, user: x }}\n"
    );
    let text = run_with(&["status", "-f", "-"], &[], Some(&spec));
    assert_eq!(code(&text), 2, "{}", stderr(&text));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("red    server reachable"), "{stdout}");
    assert!(!stdout.contains('\x1b'), "{stdout}");
    let json = run_with(&["status", "-f", "-", "--json"], &[], Some(&spec));
    assert_eq!(code(&json), 2, "{}", stderr(&json));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(report["format_version"], 1);
    assert_eq!(report["level"], "red");
}

#[test]
fn validate_in_github_actions_annotates_the_lines() {
    let output = run_with(
        &["validate", "-f", "-"],
        &[("GITHUB_ACTIONS", "true")],
        Some("version: 1\nname: x\nroles:\n  - nam: a\n"),
    );
    assert_eq!(code(&output), 1);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("::error file=<stdin>,line=4,col=5::unknown field `nam`"),
        "{stdout}"
    );
}

/// A saved plan made from the spec against an empty server.
fn saved_plan(dir: &std::path::Path) -> std::path::PathBuf {
    let spec = pgspec::spec::load_str(std::path::Path::new("spec.yaml"), SPEC)
        .and_then(|loaded| loaded.validate())
        .unwrap_or_else(|diagnostics| panic!("{}", diagnostics.render(false)))
        .spec;
    let live = pgspec::model::Deployment {
        name: "shown".to_owned(),
        server: Some(pgspec::model::ServerInfo::default()),
        ..pgspec::model::Deployment::default()
    };
    let plan = pgspec::plan::diff(&spec.deployment, &live, &spec.options);
    assert!(plan.has_changes());
    let path = dir.join("shown.plan");
    std::fs::write(
        &path,
        pgspec::plan::saved::SavedPlan::new(spec, &live, plan).to_json(),
    )
    .expect("write plan");
    path
}

#[test]
fn show_prints_a_saved_plan_in_every_format_and_to_the_step_summary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = saved_plan(dir.path());
    let path = path.to_str().expect("utf-8 path");

    let text = run_with(&["show", path], &[], None);
    assert_eq!(code(&text), 0, "{}", stderr(&text));
    assert!(String::from_utf8_lossy(&text.stdout).contains("+ role.app"));

    let json = run_with(&["show", path, "--json"], &[], None);
    let document: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(document["deployment"], "shown");
    let same = run_with(&["show", path, "--format", "json"], &[], None);
    assert_eq!(json.stdout, same.stdout);

    let summary = dir.path().join("summary.md");
    let markdown = run_with(
        &["show", path, "--format", "markdown", "--github"],
        &[("GITHUB_STEP_SUMMARY", summary.to_str().expect("utf-8 path"))],
        None,
    );
    assert_eq!(code(&markdown), 0, "{}", stderr(&markdown));
    let comment = String::from_utf8_lossy(&markdown.stdout);
    assert!(
        comment.starts_with("### pgspec plan for `shown`"),
        "{comment}"
    );
    assert!(
        comment.contains("<details><summary><code>role.app</code>"),
        "{comment}"
    );
    let written = std::fs::read_to_string(&summary).expect("step summary");
    assert!(written.contains("### pgspec plan for `shown`"), "{written}");
}

#[test]
fn completions_and_the_manual_page_come_from_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let output = pgspec(&["completions", shell]);
        assert_eq!(code(&output), 0, "{shell}: {}", stderr(&output));
        let script = String::from_utf8_lossy(&output.stdout);
        for command in ["validate", "plan", "apply", "drift", "show"] {
            assert!(script.contains(command), "{shell} lacks `{command}`");
        }
    }
    // The bash script is valid bash.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pgspec.bash");
    std::fs::write(&path, pgspec(&["completions", "bash"]).stdout).expect("write script");
    let checked = Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("run bash -n");
    assert!(checked.status.success(), "{}", stderr(&checked));

    let man = pgspec(&["man"]);
    assert_eq!(code(&man), 0);
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(page.contains(".TH pgspec 1"), "{page}");
    assert!(page.contains("drift"), "{page}");
}
