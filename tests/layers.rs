//! The house rules ARCHITECTURE.md states, checked mechanically: each
//! top-level module of `src` imports only from the layers below it (read
//! from every `crate::…` path in its files, `use` lines and inline paths
//! alike), the layers form no circle, and no source file grows past what
//! one can hold in one's head.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and the modules it may use. Keep in step with
/// the layer list in ARCHITECTURE.md.
const ALLOWED: &[(&str, &[&str])] = &[
    // Foundations: no pgspec imports at all.
    ("diag", &[]),
    ("sql", &[]),
    ("secret", &[]),
    ("units", &[]),
    ("output", &[]),
    ("tls", &[]),
    // The deployment as plain data.
    ("model", &["secret", "sql", "units"]),
    // The Docker Engine, for everyone who talks to it.
    ("engine", &["model", "output"]),
    // The pure core and the front end: they see only the model.
    ("plan", &["model", "secret", "sql", "units", "diag"]),
    ("spec", &["model", "secret", "sql", "units", "diag"]),
    // Reading the world.
    (
        "live",
        &["engine", "model", "secret", "sql", "tls", "units"],
    ),
    ("lock", &["engine", "live", "model"]),
    // Changing it.
    (
        "backup",
        &[
            "engine", "model", "output", "secret", "sql", "tls", "units", "diag",
        ],
    ),
    (
        "apply",
        &[
            "backup", "diag", "engine", "live", "lock", "model", "output", "plan", "secret", "sql",
            "units",
        ],
    ),
    ("import", &["diag", "live", "model", "spec", "sql", "units"]),
    // Commands: everything.
    (
        "cli",
        &[
            "apply", "backup", "diag", "engine", "import", "live", "lock", "model", "output",
            "plan", "secret", "spec", "sql", "tls", "units",
        ],
    ),
];

/// Source files longer than this are split along their seams.
const MAX_LINES: usize = 800;

fn source_files(directory: &Path, files: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(directory)
        .expect("read src")
        .map(|entry| entry.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            source_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file belongs to; `None` for the crate roots.
fn module_of(path: &Path) -> Option<String> {
    let relative = path.strip_prefix(src()).expect("under src");
    let first = relative.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" => None,
        name => Some(name.trim_end_matches(".rs").to_owned()),
    }
}

/// The top-level modules a file's code names through `crate::`, with the
/// line of each first use. Comments are skipped.
fn crate_paths(text: &str) -> BTreeMap<String, usize> {
    let mut found = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(position) = rest.find("crate::") {
            let after = &rest[position + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|character| character.is_ascii_alphanumeric() || *character == '_')
                .collect();
            if !name.is_empty() {
                found.entry(name).or_insert(number + 1);
            }
            rest = after;
        }
    }
    found
}

#[test]
fn modules_import_only_from_the_layers_below_them() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(module, uses)| (*module, uses.iter().copied().collect()))
        .collect();
    let mut files = Vec::new();
    source_files(&src(), &mut files);
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut violations = Vec::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        let Some(may_use) = allowed.get(module.as_str()) else {
            violations.push(format!(
                "{}: module `{module}` has no place in the layer table of tests/layers.rs",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read source");
        for (used, line) in crate_paths(&text) {
            if used != module && !may_use.contains(used.as_str()) {
                violations.push(format!(
                    "{}:{line}: `{module}` uses `crate::{used}`, which is not below it",
                    file.display()
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_layers_form_no_circle() {
    // Peel off modules whose uses are all peeled already; a circle is
    // what is left.
    let mut left: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(module, uses)| (*module, uses.iter().copied().collect()))
        .collect();
    for uses in left.values() {
        for used in uses {
            assert!(
                ALLOWED.iter().any(|(module, _)| module == used),
                "`{used}` is used but has no layer"
            );
        }
    }
    loop {
        let ready: Vec<&str> = left
            .iter()
            .filter(|(_, uses)| uses.iter().all(|used| !left.contains_key(used)))
            .map(|(module, _)| *module)
            .collect();
        if ready.is_empty() {
            break;
        }
        for module in ready {
            left.remove(module);
        }
    }
    assert!(left.is_empty(), "these layers use each other: {left:?}");
}

#[test]
fn every_top_level_module_has_a_layer() {
    let mut files = Vec::new();
    source_files(&src(), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|file| module_of(file)).collect();
    let listed: BTreeSet<String> = ALLOWED
        .iter()
        .map(|(module, _)| (*module).to_owned())
        .collect();
    assert_eq!(modules, listed);
}

#[test]
fn source_files_fit_in_ones_head() {
    let mut files = Vec::new();
    source_files(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|file| {
            let lines = std::fs::read_to_string(file).expect("read").lines().count();
            (lines > MAX_LINES).then(|| format!("{}: {lines} lines", file.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these along their seams (at most {MAX_LINES} lines):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_checker_sees_inline_paths_and_skips_comments() {
    let found = crate_paths(
        "use crate::model::Deployment;\n// crate::apply is only named here\nlet x = crate::engine::connect(); let y = crate::sql::quote_ident(a);\n",
    );
    let names: Vec<(&str, usize)> = found
        .iter()
        .map(|(name, line)| (name.as_str(), *line))
        .collect();
    assert_eq!(names, [("engine", 3), ("model", 1), ("sql", 3)]);
}
