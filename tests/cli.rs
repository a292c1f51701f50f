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
