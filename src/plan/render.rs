//! Rendering plans: terraform-style text for people, versioned JSON for
//! programs. Secrets cannot reach either: a sensitive change carries no
//! values, and a password step holds only a reference.

use std::fmt::Write;

use serde::Serialize;
use similar::{ChangeTag, TextDiff};

use crate::model::IndexStamp;
use crate::plan::{
    Action, ActionKind, Change, DockerStep, FORMAT_VERSION, Note, Plan, PlanError, Step, Summary,
};

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
        ActionKind::Update => "~",
        ActionKind::Replace => "-/+",
        ActionKind::Delete => "-",
        ActionKind::Restart => "↻",
    }
}

fn verb(kind: ActionKind) -> &'static str {
    match kind {
        ActionKind::Create => "will be created",
        ActionKind::Update => "will be updated in place",
        ActionKind::Replace => "must be replaced",
        ActionKind::Delete => "will be destroyed",
        ActionKind::Restart => "will be restarted",
    }
}

fn paint_kind(paint: Paint, kind: ActionKind, text: &str) -> String {
    match kind {
        ActionKind::Create => paint.green(text),
        ActionKind::Update | ActionKind::Restart => paint.yellow(text),
        ActionKind::Replace | ActionKind::Delete => paint.red(text),
    }
}

/// The plan as people read it.
pub fn text(plan: &Plan, options: TextOptions) -> String {
    let paint = Paint {
        color: options.color,
    };
    let mut out = String::new();
    if !plan.errors.is_empty() {
        render_errors(&mut out, paint, &plan.errors);
    }
    if plan.actions.is_empty() {
        if plan.errors.is_empty() {
            let _ = writeln!(
                out,
                "{} The live deployment `{}` matches the spec.",
                paint.green(&paint.bold("No changes.")),
                plan.deployment
            );
        }
    } else {
        let _ = writeln!(
            out,
            "pgspec will perform the following actions on deployment `{}`:\n",
            plan.deployment
        );
        for action in &plan.actions {
            render_action(&mut out, paint, action);
        }
        let _ = writeln!(out, "{}", summary_line(plan.summary(), paint));
        let mut restarts: Vec<&str> = Vec::new();
        for action in plan.actions.iter().filter(|action| action.risk.restart) {
            if !restarts.contains(&action.address.as_str()) {
                restarts.push(&action.address);
            }
        }
        if !restarts.is_empty() {
            let _ = writeln!(
                out,
                "{} {} (the server restarts once; clients reconnect)",
                paint.yellow("Restart:"),
                restarts.join(", ")
            );
        }
    }
    render_notes(&mut out, &plan.notes);
    if !plan.unmanaged.is_empty() {
        if options.show_unmanaged {
            let _ = writeln!(out, "\nNot in the spec (left alone):");
            for address in &plan.unmanaged {
                let _ = writeln!(out, "  ? {address}");
            }
        } else {
            let _ = writeln!(
                out,
                "\n{} live object(s) are not in the spec and are left alone (--show-unmanaged lists them).",
                plan.unmanaged.len()
            );
        }
    }
    out
}

fn render_errors(out: &mut String, paint: Paint, errors: &[PlanError]) {
    for error in errors {
        let _ = writeln!(
            out,
            "{}: {}: {}",
            paint.red(&paint.bold("error")),
            error.address,
            error.message
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
        let _ = writeln!(out, "note: {}: {}", note.address, note.message);
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

fn render_action(out: &mut String, paint: Paint, action: &Action) {
    let _ = writeln!(
        out,
        "  {} {}",
        paint.dim("#"),
        paint.dim(&format!("{} {}", action.address, verb(action.kind)))
    );
    let _ = writeln!(
        out,
        "  {} {}",
        paint_kind(paint, action.kind, symbol(action.kind)),
        paint.bold(&action.address)
    );
    let _ = writeln!(out, "      reason: {}", action.reason);
    let mut risks = Vec::new();
    risks.extend(action.risk.locks.iter().map(|lock| format!("locks {lock}")));
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
                let _ = writeln!(out, "        {}", paint.dim(&line));
            }
        }
    }
    let _ = writeln!(out);
}

fn render_change(out: &mut String, paint: Paint, change: &Change) {
    if change.sensitive {
        let _ = writeln!(
            out,
            "      {} {} = (sensitive)",
            paint.yellow("~"),
            change.field
        );
        return;
    }
    let multi_line = change.old.as_deref().is_some_and(|old| old.contains('\n'))
        || change.new.as_deref().is_some_and(|new| new.contains('\n'));
    if multi_line {
        let old = change.old.as_deref().unwrap_or("");
        let new = change.new.as_deref().unwrap_or("");
        let _ = writeln!(out, "      {} {}:", paint.yellow("~"), change.field);
        let diff = TextDiff::from_lines(old, new);
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
    let line = match (&change.old, &change.new) {
        (None, Some(new)) => format!("{} {} = {new}", paint.green("+"), change.field),
        (Some(old), None) => format!("{} {} = {old}", paint.red("-"), change.field),
        (Some(old), Some(new)) => {
            format!("{} {} = {old} -> {new}", paint.yellow("~"), change.field)
        }
        (None, None) => format!("{} {}", paint.yellow("~"), change.field),
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
            database,
            schema,
            name,
            spec,
        } => vec![format!(
            "sql in `{database}`: COMMENT ON INDEX {} IS '{}<hash of its pg_get_indexdef>'",
            crate::sql::qualified(schema, name),
            IndexStamp::comment_prefix(spec)
        )],
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
        Step::Docker(call) => vec![format!("docker: {}", docker_line(call))],
    }
}

fn docker_line(call: &DockerStep) -> String {
    match call {
        DockerStep::CreateVolume { name } => format!("create volume `{name}`"),
        DockerStep::CreateNetwork { name } => format!("create network `{name}`"),
        DockerStep::ConnectNetwork { network, container } => {
            format!("connect container `{container}` to network `{network}`")
        }
        DockerStep::CreateContainer { container } => format!(
            "create container `{}` from `{}` ({}:{} -> 5432, volume `{}` at {})",
            container.name,
            container.image,
            container.bind_address,
            container.port,
            container.volume,
            container.data_mount
        ),
        DockerStep::StartContainer { name } => format!("start container `{name}`"),
        DockerStep::RemoveContainer { name } => {
            format!("stop container `{name}` (fast shutdown) and remove it; its volume stays")
        }
        DockerStep::UpdateResources {
            name,
            nano_cpus,
            memory_bytes,
            restart_policy,
        } => {
            let mut parts = Vec::new();
            if let Some(policy) = restart_policy {
                parts.push(format!("restart policy {policy}"));
            }
            if let Some(nano_cpus) = nano_cpus {
                parts.push(format!("cpus {}", *nano_cpus as f64 / 1e9));
            }
            if let Some(memory) = memory_bytes {
                parts.push(format!("memory {}", super::diff::format_bytes(*memory)));
            }
            format!("update container `{name}`: {}", parts.join(", "))
        }
        DockerStep::RestartContainer { name } => format!("restart container `{name}`"),
        DockerStep::WaitReady { name } => {
            format!("wait until the server in `{name}` accepts connections")
        }
        DockerStep::CreateBackupContainer { backup } => crate::backup::describe_create(backup),
        DockerStep::CreatePooler {
            name,
            pooler,
            network,
        } => format!(
            "create container `{name}` from `{}` ({}:{} -> {}, network `{network}`)",
            pooler.image,
            pooler.bind_address,
            pooler.port,
            super::diff::pooler::LISTEN_PORT
        ),
        DockerStep::WritePoolerConfig { name, config } => format!(
            "write pgbouncer.ini and the auth file into `{name}` (SCRAM verifiers of {} read from the server)",
            config
                .users
                .iter()
                .map(|user| format!("`{user}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        DockerStep::StartPooler { name } => {
            format!("start container `{name}` and wait until PgBouncer answers")
        }
        DockerStep::ReloadPooler { name } => {
            format!("RELOAD through the admin console of `{name}` (clients stay connected)")
        }
        DockerStep::RemovePooler { name } => format!("stop container `{name}` and remove it"),
    }
}

/// The JSON document `plan --json` and `drift --json` print.
#[derive(Debug, Serialize)]
pub struct JsonPlan<'a> {
    /// Version of this format; incremented on any incompatible change.
    pub format_version: u32,
    pub deployment: &'a str,
    pub has_changes: bool,
    pub summary: Summary,
    pub actions: &'a [Action],
    pub unmanaged: &'a [String],
    pub notes: &'a [Note],
    pub errors: &'a [PlanError],
}

/// The plan as versioned JSON (pretty-printed, trailing newline).
pub fn json(plan: &Plan) -> String {
    let document = JsonPlan {
        format_version: FORMAT_VERSION,
        deployment: &plan.deployment,
        has_changes: plan.has_changes(),
        summary: plan.summary(),
        actions: &plan.actions,
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
}
