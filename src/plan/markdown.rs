//! The plan as a pull-request comment: GitHub-flavoured Markdown with a
//! summary table, risks and restarts called out, and one collapsible
//! section per action.
//!
//! Invariant: no I/O. Plans hold no secret (only references and
//! `(sensitive)` markers), so neither does this. Text from the spec or the
//! live side goes into code spans and code blocks, never into raw HTML,
//! and the whole comment stays under `LIMIT` bytes, cut at an action
//! boundary with a note saying how much was left out.

use std::fmt::Write as _;

use crate::diag::printable;
use crate::plan::render::{renamed_from, step_lines, verb};
use crate::plan::{Action, ActionKind, Change, Plan};

/// GitHub refuses comments over 65 536 characters; leave room for what a
/// CI step puts around the plan.
pub const LIMIT: usize = 60_000;

/// The plan as Markdown, at most [`LIMIT`] bytes.
pub fn markdown(plan: &Plan) -> String {
    markdown_within(plan, LIMIT)
}

/// The plan as Markdown, at most `limit` bytes.
pub fn markdown_within(plan: &Plan, limit: usize) -> String {
    let mut head = String::new();
    let summary = plan.summary();
    let _ = writeln!(head, "### pgspec plan for `{}`\n", code(&plan.deployment));
    if !plan.errors.is_empty() {
        let _ = writeln!(
            head,
            "> [!CAUTION]\n> The plan has {} error(s) and cannot be applied.\n",
            plan.errors.len()
        );
        for error in &plan.errors {
            let _ = writeln!(
                head,
                "- **error** `{}`: {}",
                code(&error.address),
                inline(&error.message)
            );
        }
        head.push('\n');
    }
    if !plan.is_pending() && plan.errors.is_empty() {
        let _ = writeln!(
            head,
            "**No changes.** The live deployment matches the spec."
        );
        return head;
    }
    let _ = writeln!(
        head,
        "| add | change | replace | destroy | restart | waiting |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: |\n\
         | {} | {} | {} | {} | {} | {} |\n",
        summary.add,
        summary.change,
        summary.replace,
        summary.destroy,
        summary.restart,
        plan.waiting.len()
    );
    let mut restarts: Vec<&str> = Vec::new();
    for action in plan.actions.iter().filter(|action| action.risk.restart) {
        if !restarts.contains(&action.address.as_str()) {
            restarts.push(&action.address);
        }
    }
    if !restarts.is_empty() {
        let _ = writeln!(
            head,
            "> [!WARNING]\n> The server restarts ({}); clients reconnect.\n",
            restarts
                .iter()
                .map(|address| format!("`{}`", code(address)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let destructive: Vec<&Action> = plan
        .actions
        .iter()
        .filter(|action| matches!(action.kind, ActionKind::Replace | ActionKind::Delete))
        .collect();
    if !destructive.is_empty() {
        let _ = writeln!(
            head,
            "> [!IMPORTANT]\n> Replaced or destroyed: {}.\n",
            destructive
                .iter()
                .map(|action| format!("`{}`", code(&action.address)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let mut tail = String::new();
    if !plan.waiting.is_empty() {
        let _ = writeln!(
            tail,
            "\n**Waiting** for tables the application's migrations create ({}):\n",
            plan.waiting.len()
        );
        for item in &plan.waiting {
            let _ = writeln!(
                tail,
                "- `{}` (table `{}`)",
                code(&item.address),
                code(&item.table)
            );
        }
    }
    if !plan.notes.is_empty() {
        tail.push('\n');
        for note in &plan.notes {
            let _ = writeln!(
                tail,
                "- note `{}`: {}",
                code(&note.address),
                inline(&note.message)
            );
        }
    }

    let mut body = String::new();
    let mut shown = 0;
    for action in &plan.actions {
        let section = action_section(action);
        let cut_note = 200;
        if head.len() + body.len() + section.len() + tail.len() + cut_note > limit {
            break;
        }
        body.push_str(&section);
        shown += 1;
    }
    let mut out = head;
    out.push_str(&body);
    if shown < plan.actions.len() {
        let _ = writeln!(
            out,
            "\n_{} more action(s) left out to stay within a comment's size; run `pgspec plan` \
             to see the whole plan._",
            plan.actions.len() - shown
        );
    }
    if out.len() + tail.len() <= limit {
        out.push_str(&tail);
    }
    out
}

fn action_section(action: &Action) -> String {
    let mut section = String::new();
    let _ = writeln!(
        section,
        "<details><summary><code>{}</code> {}</summary>\n",
        html(&action.address),
        match renamed_from(action) {
            Some(old) => format!("will be renamed from <code>{}</code>", html(old)),
            None => verb(action.kind).to_owned(),
        }
    );
    let _ = writeln!(section, "{}\n", inline(&action.reason));
    let mut risks: Vec<String> = action
        .risk
        .locks
        .iter()
        .map(|lock| format!("locks {lock}"))
        .collect();
    if action.risk.restart {
        risks.push("restarts the server".to_owned());
    }
    if action.risk.reconnects {
        risks.push("clients reconnect".to_owned());
    }
    if !risks.is_empty() {
        let _ = writeln!(section, "**Risk:** {}\n", inline(&risks.join(", ")));
    }
    let mut lines = Vec::new();
    for change in &action.changes {
        lines.extend(change_lines(change));
    }
    if !action.steps.is_empty() {
        lines.push("steps:".to_owned());
        for step in &action.steps {
            lines.extend(step_lines(step).into_iter().map(|line| format!("  {line}")));
        }
    }
    if !lines.is_empty() {
        let fence = fence_for(&lines);
        let _ = writeln!(section, "{fence}diff");
        for line in lines {
            let _ = writeln!(section, "{}", printable(&line));
        }
        let _ = writeln!(section, "{fence}\n");
    }
    section.push_str("</details>\n\n");
    section
}

/// A change in the `diff` language's terms: `+` added, `-` removed, `!`
/// changed.
fn change_lines(change: &Change) -> Vec<String> {
    if change.sensitive {
        return vec![format!("! {} = (sensitive)", change.field)];
    }
    match (&change.old, &change.new) {
        (None, Some(new)) => prefixed("+", &change.field, new),
        (Some(old), None) => prefixed("-", &change.field, old),
        (Some(old), Some(new)) => {
            let mut lines = prefixed("-", &change.field, old);
            lines.extend(prefixed("+", &change.field, new));
            lines
        }
        (None, None) => vec![format!("! {}", change.field)],
    }
}

fn prefixed(sign: &str, field: &str, value: &str) -> Vec<String> {
    value
        .lines()
        .enumerate()
        .map(|(number, line)| {
            if number == 0 {
                format!("{sign} {field} = {line}")
            } else {
                format!("{sign}   {line}")
            }
        })
        .collect()
}

/// A code fence longer than any run of backticks in the lines.
fn fence_for(lines: &[String]) -> String {
    let longest = lines
        .iter()
        .flat_map(|line| line.split(|character| character != '`'))
        .map(str::len)
        .max()
        .unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

/// Text for inside a code span: backticks cannot end it, and control
/// characters (line breaks, escape sequences) are shown escaped.
fn code(text: &str) -> String {
    printable(text).replace('`', "'")
}

/// Text for HTML: the address in a `<summary>`.
fn html(text: &str) -> String {
    printable(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Prose from pgspec (reasons, messages) that quotes names in backticks:
/// kept on one line, with HTML tags from names made harmless.
fn inline(text: &str) -> String {
    printable(text).replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::address::ObjectKind;
    use crate::plan::{Risk, Step};

    fn action(address: &str) -> Action {
        Action {
            address: address.to_owned(),
            object: ObjectKind::Role,
            kind: ActionKind::Create,
            reason: "declared in the spec".to_owned(),
            risk: Risk::none(),
            changes: vec![Change::new("login", None, Some("true".to_owned()))],
            steps: vec![Step::Sql {
                database: None,
                statements: vec!["CREATE ROLE \"x\"".to_owned()],
                transaction: false,
            }],
        }
    }

    #[test]
    fn a_long_plan_is_cut_at_an_action_and_says_so() {
        let plan = Plan {
            deployment: "app".to_owned(),
            actions: (0..500).map(|n| action(&format!("role.r{n}"))).collect(),
            ..Plan::default()
        };
        let text = markdown_within(&plan, 10_000);
        assert!(text.len() <= 10_000, "{}", text.len());
        assert!(text.contains("more action(s) left out"), "{text}");
        assert_eq!(
            text.matches("<details>").count(),
            text.matches("</details>").count()
        );
    }

    #[test]
    fn names_cannot_break_out_of_code_or_html() {
        let plan = Plan {
            deployment: "app".to_owned(),
            actions: vec![action("role.a</summary><script>x</script>`y")],
            ..Plan::default()
        };
        let text = markdown(&plan);
        assert!(!text.contains("<script>"), "{text}");
        assert!(text.contains("&lt;script&gt;"), "{text}");
    }

    /// Issue 24: an index found under another name is renamed, and the
    /// summary says from what, with the old name escaped like any other.
    #[test]
    fn a_rename_says_from_what() {
        let plan = Plan {
            deployment: "app".to_owned(),
            actions: vec![Action {
                object: ObjectKind::Index,
                kind: ActionKind::Update,
                changes: vec![Change::new(
                    "name",
                    Some("idx_<old>".to_owned()),
                    Some("idx_new".to_owned()),
                )],
                ..action("database.app/index.idx_new")
            }],
            ..Plan::default()
        };
        let text = markdown(&plan);
        assert!(
            text.contains(
                "<code>database.app/index.idx_new</code> will be renamed from \
                 <code>idx_&lt;old&gt;</code></summary>"
            ),
            "{text}"
        );
    }

    #[test]
    fn fences_outgrow_backticks_in_the_lines() {
        assert_eq!(fence_for(&["a ``` b".to_owned()]), "````");
        assert_eq!(fence_for(&["plain".to_owned()]), "```");
    }
}
