//! Rendering plans: terraform-style text for people, versioned JSON for
//! programs. Secrets cannot reach either: a sensitive change carries no
//! values, and a password step holds only a reference.

use std::borrow::Cow;
use std::fmt::Write;

use serde::Serialize;
use similar::{ChangeTag, TextDiff};

mod docker;

use crate::diag::{printable, printable_lines};
use crate::model::IndexStamp;
use crate::plan::{
    Action, ActionKind, Change, FORMAT_VERSION, Note, Plan, PlanError, Step, Summary, Waiting,
};
use docker::docker_line;

/// How text is styled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TextOptions {
    pub color: bool,
    /// List live objects the spec does not mention.
    pub show_unmanaged: bool,
}

/// ANSI styling that is a no-op without colour.
#[derive(Clone, Copy)]
pub struct Paint {
    pub color: bool,
}

impl Paint {
    fn wrap(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
    pub fn green(self, text: &str) -> String {
        self.wrap("32", text)
    }
    pub fn yellow(self, text: &str) -> String {
        self.wrap("33", text)
    }
    pub fn red(self, text: &str) -> String {
        self.wrap("31", text)
    }
    pub fn bold(self, text: &str) -> String {
        self.wrap("1", text)
    }
    pub fn dim(self, text: &str) -> String {
        self.wrap("2", text)
    }
}

fn symbol(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Create => "+",
        ActionKind::Update | ActionKind::Adopt => "~",
        ActionKind::Replace => "-/+",
        ActionKind::Upgrade => "^",
        ActionKind::Delete => "-",
        ActionKind::Restart => "↻",
    }
}

pub(crate) fn verb(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Create => "will be created",
        ActionKind::Update => "will be updated in place",
        ActionKind::Adopt => "will be adopted",
        ActionKind::Replace => "must be replaced",
        ActionKind::Upgrade => "will be upgraded",
        ActionKind::Delete => "will be destroyed",
        ActionKind::Restart => "will be restarted",
    }
}

/// The name an action renames its object from: an update whose `name`
/// changes (an index found under another name).
pub(crate) fn renamed_from(action: &Action) -> Option<&str> {
    if action.kind != ActionKind::Update {
        return None;
    }
    action
        .changes
        .iter()
        .find(|change| change.field == "name" && !change.sensitive && change.new.is_some())
        .and_then(|change| change.old.as_deref())
}

fn paint_kind(paint: Paint, kind: ActionKind, text: &str) -> String {
    match kind {
        ActionKind::Create => paint.green(text),
        ActionKind::Update | ActionKind::Adopt | ActionKind::Restart => paint.yellow(text),
        ActionKind::Replace | ActionKind::Upgrade | ActionKind::Delete => paint.red(text),
    }
}

/// The plan as people read it.
pub fn text(plan: &Plan, options: TextOptions) -> String {
    let mut bytes = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = write_text(plan, options, &mut bytes);
    String::from_utf8(bytes)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

/// How much rendered text is held before it is written out.
const FLUSH_BYTES: usize = 64 * 1024;

/// Writes [`text`] to `sink` a piece at a time: the text of a plan of tens
/// of thousands of actions is never one string in memory.
pub fn write_text<W: std::io::Write>(
    plan: &Plan,
    options: TextOptions,
    sink: &mut W,
) -> std::io::Result<()> {
    let paint = Paint {
        color: options.color,
    };
    let mut out = String::new();
    if !plan.errors.is_empty() {
        render_errors(&mut out, paint, &plan.errors);
    }
    if plan.actions.is_empty() {
        if plan.errors.is_empty() && plan.waiting.is_empty() {
            let _ = writeln!(
                out,
                "{} The live deployment `{}` matches the spec.",
                paint.green(&paint.bold("No changes.")),
                printable(&plan.deployment)
            );
        }
    } else {
        let _ = writeln!(
            out,
            "pgspec will perform the following actions on deployment `{}`:\n",
            printable(&plan.deployment)
        );
        for action in &plan.actions {
            render_action(&mut out, paint, action);
            if out.len() >= FLUSH_BYTES {
                sink.write_all(out.as_bytes())?;
                out.clear();
            }
        }
        let _ = writeln!(out, "{}", summary_line(plan.summary(), paint));
        let mut restarts: Vec<&str> = Vec::new();
        for action in plan.actions.iter().filter(|action| action.risk.restart) {
            if !restarts.contains(&action.address.as_str()) {
                restarts.push(&action.address);
            }
        }
        let restarts: Vec<Cow<'_, str>> = restarts.into_iter().map(printable).collect();
        if !restarts.is_empty() {
            let _ = writeln!(
                out,
                "{} {} (the server restarts once; clients reconnect)",
                paint.yellow("Restart:"),
                restarts.join(", ")
            );
        }
    }
    render_waiting(&mut out, paint, &plan.waiting);
    render_notes(&mut out, &plan.notes);
    if !plan.unmanaged.is_empty() {
        if options.show_unmanaged {
            let _ = writeln!(out, "\nNot in the spec (left alone):");
            for address in &plan.unmanaged {
                let _ = writeln!(out, "  ? {}", printable(address));
            }
        } else {
            let _ = writeln!(
                out,
                "\n{} live object(s) are not in the spec and are left alone (--show-unmanaged lists them).",
                plan.unmanaged.len()
            );
        }
    }
    sink.write_all(out.as_bytes())
}

fn render_errors(out: &mut String, paint: Paint, errors: &[PlanError]) {
    for error in errors {
        let _ = writeln!(
            out,
            "{}: {}: {}",
            paint.red(&paint.bold("error")),
            printable(&error.address),
            printable(&error.message)
        );
    }
    let _ = writeln!(
        out,
        "The plan cannot be applied until the error(s) above are fixed.\n"
    );
}

fn render_notes(out: &mut String, notes: &[Note]) {
    if notes.is_empty() {
        return;
    }
    let _ = writeln!(out);
    for note in notes {
        let _ = writeln!(
            out,
            "note: {}: {}",
            printable(&note.address),
            printable(&note.message)
        );
    }
}

/// `Plan: 1 to add, 0 to change, 0 to replace, 0 to destroy.`
pub fn summary_line(summary: Summary, paint: Paint) -> String {
    let mut line = format!(
        "{} {} to add, {} to change, {} to replace, {} to destroy",
        paint.bold("Plan:"),
        summary.add,
        summary.change,
        summary.replace,
        summary.destroy
    );
    if summary.restart > 0 {
        let _ = write!(line, ", {} to restart", summary.restart);
    }
    line.push('.');
    line
}

/// Every piece of data an action shows (addresses, reasons, values,
/// statements) goes through `printable`: names come from the spec and from
/// the live side, where anyone who can create a role can put an escape
/// sequence in its name.
fn render_action(out: &mut String, paint: Paint, action: &Action) {
    let address = printable(&action.address);
    let headline = match renamed_from(action) {
        Some(old) => format!("{address} will be renamed from `{}`", printable(old)),
        None => format!("{address} {}", verb(action.kind)),
    };
    let _ = writeln!(out, "  {} {}", paint.dim("#"), paint.dim(&headline));
    let _ = writeln!(
        out,
        "  {} {}",
        paint_kind(paint, action.kind, symbol(action.kind)),
        paint.bold(&address)
    );
    let _ = writeln!(out, "      reason: {}", printable(&action.reason));
    let mut risks = Vec::new();
    risks.extend(
        action
            .risk
            .locks
            .iter()
            .map(|lock| format!("locks {}", printable(lock))),
    );
    if action.risk.restart {
        risks.push("restarts the server".to_owned());
    }
    if action.risk.reconnects {
        risks.push("clients reconnect".to_owned());
    }
    if !risks.is_empty() {
        let _ = writeln!(out, "      risk: {}", paint.yellow(&risks.join(", ")));
    }
    for change in &action.changes {
        render_change(out, paint, change);
    }
    if !action.steps.is_empty() {
        let _ = writeln!(out, "      steps:");
        for step in &action.steps {
            for line in step_lines(step) {
                let _ = writeln!(out, "        {}", paint.dim(&printable(&line)));
            }
        }
    }
    let _ = writeln!(out);
}

fn render_change(out: &mut String, paint: Paint, change: &Change) {
    let field = printable(&change.field);
    if change.sensitive {
        let _ = writeln!(out, "      {} {} = (sensitive)", paint.yellow("~"), field);
        return;
    }
    let multi_line = change.old.as_deref().is_some_and(|old| old.contains('\n'))
        || change.new.as_deref().is_some_and(|new| new.contains('\n'));
    if multi_line {
        let old = printable_lines(change.old.as_deref().unwrap_or(""));
        let new = printable_lines(change.new.as_deref().unwrap_or(""));
        let _ = writeln!(out, "      {} {field}:", paint.yellow("~"));
        let diff = TextDiff::from_lines(old.as_ref(), new.as_ref());
        for line in diff.iter_all_changes() {
            let text = line.value().trim_end_matches('\n');
            let rendered = match line.tag() {
                ChangeTag::Delete => paint.red(&format!("- {text}")),
                ChangeTag::Insert => paint.green(&format!("+ {text}")),
                ChangeTag::Equal => format!("  {text}"),
            };
            let _ = writeln!(out, "          {rendered}");
        }
        return;
    }
    let old = change.old.as_deref().map(printable);
    let new = change.new.as_deref().map(printable);
    let line = match (old, new) {
        (None, Some(new)) => format!("{} {field} = {new}", paint.green("+")),
        (Some(old), None) => format!("{} {field} = {old}", paint.red("-")),
        (Some(old), Some(new)) => {
            format!("{} {field} = {old} -> {new}", paint.yellow("~"))
        }
        (None, None) => format!("{} {field}", paint.yellow("~")),
    };
    let _ = writeln!(out, "      {line}");
}

/// What a step does, one line per statement or call.
pub fn step_lines(step: &Step) -> Vec<String> {
    match step {
        Step::Sql {
            database,
            statements,
            transaction,
        } => {
            let place = match database {
                Some(database) => format!("sql in `{database}`"),
                None => "sql".to_owned(),
            };
            let place = if *transaction && statements.len() > 1 {
                format!("{place} (one transaction)")
            } else {
                place
            };
            statements
                .iter()
                .map(|statement| format!("{place}: {statement}"))
                .collect()
        }
        Step::SetPassword { role, .. } => vec![format!(
            "sql: ALTER ROLE {} PASSWORD (sensitive: SCRAM-SHA-256 verifier)",
            crate::sql::quote_ident(role)
        )],
        Step::StampIndex {
            deployment,
            database,
            schema,
            name,
            spec,
        } => vec![format!(
            "sql in `{database}`: COMMENT ON INDEX {} IS '{}<hash of its pg_get_indexdef>'",
            crate::sql::qualified(schema, name),
            IndexStamp::comment_prefix(deployment, spec)
        )],
        Step::BuildIndex {
            database,
            table,
            max_bytes,
            statements,
            concurrently,
        } => {
            let place = format!("sql in `{database}` (one transaction)");
            let mut lines = vec![format!(
                "{place}: LOCK TABLE {table} IN SHARE MODE, then only while \
                 pg_relation_size({table}) <= {max_bytes} bytes:"
            )];
            lines.extend(
                statements
                    .iter()
                    .map(|statement| format!("{place}: {statement}")),
            );
            lines.extend(concurrently.iter().map(|statement| {
                format!(
                    "sql in `{database}` (instead, if the table grew since the plan): {statement}"
                )
            }));
            lines
        }
        Step::CreateExtension {
            database,
            name,
            statement,
            mark,
        } => {
            let place = format!("sql in `{database}`");
            let mut lines = vec![format!(
                "{place}: {statement} (skipped when `{name}` is installed already)"
            )];
            if let Some(mark) = mark {
                lines.push(format!(
                    "{place}: COMMENT ON EXTENSION {} IS {} (only when created here)",
                    crate::sql::quote_ident(name),
                    crate::sql::quote_literal(mark)
                ));
            }
            lines
        }
        Step::WriteAccessRules { container, rules } => vec![
            format!(
                "docker: write the server's `hba_file` in container `{container}` ({} {})",
                rules.len(),
                if rules.len() == 1 { "rule" } else { "rules" }
            ),
            "sql: SELECT … FROM pg_hba_file_rules WHERE error IS NOT NULL (a rejected file is \
             put back as it was)"
                .to_owned(),
            "sql: SELECT pg_reload_conf()".to_owned(),
        ],
        Step::Docker(call) => vec![format!("docker: {}", docker_line(call))],
    }
}

/// Indexes waiting for their tables, in a group of their own: the
/// deployment is not yet what the spec says, but nothing is wrong.
fn render_waiting(out: &mut String, paint: Paint, waiting: &[Waiting]) {
    if waiting.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n{} {} index(es) wait for their tables, which the application's migrations \
         create; the apply after the migrations builds them:",
        paint.yellow("Waiting:"),
        waiting.len()
    );
    for item in waiting {
        let (address, table) = (printable(&item.address), printable(&item.table));
        let _ = match &item.closest {
            None => writeln!(out, "  … {address} (table `{table}`)"),
            Some(closest) => writeln!(
                out,
                "  … {address} (table `{table}`; not there yet, and `{}` exists: a misspelling?)",
                printable(closest)
            ),
        };
    }
}

/// The JSON document `plan --json` and `drift --json` print.
#[derive(Debug, Serialize)]
pub struct JsonPlan<'a> {
    /// Version of this format; incremented on any incompatible change.
    pub format_version: u32,
    pub deployment: &'a str,
    /// Whether live differs from the spec: actions to run, or indexes
    /// waiting for their tables.
    pub has_changes: bool,
    pub summary: Summary,
    pub actions: &'a [Action],
    /// Indexes whose tables the application's migrations have not created
    /// yet (not errors; apply leaves them for the next apply).
    pub waiting: &'a [Waiting],
    pub unmanaged: &'a [String],
    pub notes: &'a [Note],
    pub errors: &'a [PlanError],
}

/// The plan as versioned JSON (pretty-printed, trailing newline).
pub fn json(plan: &Plan) -> String {
    let document = JsonPlan {
        format_version: FORMAT_VERSION,
        deployment: &plan.deployment,
        has_changes: plan.is_pending(),
        summary: plan.summary(),
        actions: &plan.actions,
        waiting: &plan.waiting,
        unmanaged: &plan.unmanaged,
        notes: &plan.notes,
        errors: &plan.errors,
    };
    let mut text = serde_json::to_string_pretty(&document)
        .unwrap_or_else(|error| format!("{{\"error\": \"cannot render plan: {error}\"}}"));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Risk;

    /// An action that restarts the server.
    fn action(address: &str, kind: ActionKind) -> Action {
        Action {
            risk: Risk {
                locks: Vec::new(),
                restart: true,
                reconnects: true,
            },
            ..Action::bare(address, kind)
        }
    }

    #[test]
    fn the_restart_line_names_each_address_once() {
        let plan = Plan {
            actions: vec![
                action("container.app-postgres", ActionKind::Replace),
                action("setting.shared_buffers", ActionKind::Update),
                action("container.app-postgres", ActionKind::Restart),
            ],
            ..Plan::default()
        };
        let rendered = text(
            &plan,
            TextOptions {
                color: false,
                show_unmanaged: false,
            },
        );
        assert!(
            rendered.contains(
                "Restart: container.app-postgres, setting.shared_buffers (the server restarts once"
            ),
            "{rendered}"
        );
    }

    /// Issue 15: a name made by hand on the live side (`CREATE ROLE
    /// "\x1b[31mred"`) reaches the plan text; its escape sequence must be
    /// shown, never sent to the terminal.
    #[test]
    fn escape_sequences_in_names_are_shown_escaped() {
        let name = "\u{1b}[31mred\nforged line";
        let address = format!("role.{name}");
        let plan = Plan {
            deployment: "app".to_owned(),
            actions: vec![Action {
                reason: format!("role `{name}` is not in the spec"),
                changes: vec![
                    Change::new("name", Some(name.to_owned()), None),
                    Change::new("comment", Some(format!("a\n{name}")), Some("b".to_owned())),
                ],
                steps: vec![Step::Sql {
                    database: None,
                    statements: vec![format!("DROP ROLE {}", crate::sql::quote_ident(name))],
                    transaction: false,
                }],
                ..Action::bare(&address, ActionKind::Delete)
            }],
            unmanaged: vec![address.clone()],
            notes: vec![Note {
                address: address.clone(),
                message: format!("`{name}`"),
            }],
            errors: vec![PlanError {
                address: address.clone(),
                message: format!("`{name}`"),
            }],
            waiting: vec![Waiting {
                address: address.clone(),
                table: format!("public.{name}"),
                closest: Some(name.to_owned()),
            }],
        };
        let rendered = text(
            &plan,
            TextOptions {
                color: false,
                show_unmanaged: true,
            },
        );
        assert!(!rendered.contains('\u{1b}'), "{rendered:?}");
        assert!(!rendered.contains("\nforged line"), "{rendered:?}");
        assert!(
            rendered.contains("role.\\u{1b}[31mred\\nforged line"),
            "{rendered}"
        );
        assert!(
            rendered.contains("DROP ROLE \"\\u{1b}[31mred\\nforged line\""),
            "{rendered}"
        );
        // Colour codes are pgspec's own and still work around the data.
        let coloured = text(
            &plan,
            TextOptions {
                color: true,
                show_unmanaged: true,
            },
        );
        assert!(!coloured.contains("\u{1b}[31mred"), "{coloured:?}");
    }
}
