//! YAML syntax errors, pointed at the mistake rather than where the parser
//! noticed it: a duplicate key at its second occurrence, an unclosed `[` or
//! `{` where it opens, a tab in the indentation named as such.
//!
//! Invariant: no I/O; reads only the spec's text.

use std::collections::HashSet;

use yaml_rust2::parser::{Event, Parser};

use crate::diag::{Diagnostic, Span};

/// The diagnostic for a YAML syntax error serde_yaml reported on `source`.
pub(super) fn syntax_error(error: &serde_yaml::Error, source: &str) -> Diagnostic {
    let text = error.to_string();
    if text.contains("duplicate entry with key")
        && let Some((key, line, column)) = duplicate_key(source)
    {
        return Diagnostic::error(format!("duplicate key `{key}`"))
            .with_span(Some(Span {
                line,
                column,
                length: key.chars().count().max(1),
            }))
            .with_label("a second time")
            .with_help("a key may appear once in a mapping; remove or merge one of them");
    }
    if let Some(location) = error.location() {
        let at = source
            .lines()
            .nth(location.line().saturating_sub(1))
            .and_then(|line| line.chars().nth(location.column().saturating_sub(1)));
        if at == Some('\t') || text.contains("tab character") {
            return Diagnostic::error("a tab in the indentation")
                .with_span(Some(Span {
                    line: location.line(),
                    column: location.column(),
                    length: 1,
                }))
                .with_help("tabs are not allowed in YAML indentation; indent with spaces");
        }
    }
    if let Some((kind, line, column)) = unclosed_flow(&text) {
        let (open, close) = if kind == "sequence" {
            ("[", "]")
        } else {
            ("{", "}")
        };
        return Diagnostic::error(format!("`{open}` is never closed"))
            .with_span(Some(Span {
                line,
                column,
                length: 1,
            }))
            .with_label("opened here")
            .with_help(format!(
                "close it with `{close}` (a flow {kind} may span lines, but every item needs a \
                 `,` between it and the next)"
            ));
    }
    // The location is shown as FILE:LINE:COL; drop its first mention from
    // the text but keep any "while parsing … at line N column M" context.
    let message = match (error.location(), text.find(" at line ")) {
        (Some(location), Some(start)) => {
            let mention = format!(" at line {} column {}", location.line(), location.column());
            if text[start..].starts_with(&mention) {
                format!("{}{}", &text[..start], &text[start + mention.len()..])
            } else {
                text.clone()
            }
        }
        _ => text.clone(),
    };
    let span = error.location().map(|location| Span {
        line: location.line(),
        column: location.column(),
        length: 1,
    });
    Diagnostic::error(format!("invalid YAML: {message}")).with_span(span)
}

/// Where a flow collection that is never closed opens, from the parser's
/// "while parsing a flow sequence at line L column C".
fn unclosed_flow(message: &str) -> Option<(&'static str, usize, usize)> {
    let rest = &message[message.find("while parsing a flow ")? + "while parsing a flow ".len()..];
    let (kind, rest) = if let Some(rest) = rest.strip_prefix("sequence at line ") {
        ("sequence", rest)
    } else {
        ("mapping", rest.strip_prefix("mapping at line ")?)
    };
    let (line, rest) = rest.split_once(" column ")?;
    let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((kind, line.parse().ok()?, column.parse().ok()?))
}

/// What a mapping or sequence being read expects next.
enum Frame {
    Mapping {
        seen: HashSet<String>,
        /// The next node is a key (else a value).
        key_next: bool,
    },
    Sequence,
}

/// The first key that appears twice in one mapping: the key, and the line
/// and column of its second occurrence.
fn duplicate_key(source: &str) -> Option<(String, usize, usize)> {
    let mut parser = Parser::new_from_str(source);
    let mut stack: Vec<Frame> = Vec::new();
    // A node ended: in a mapping, a key is followed by a value and a value
    // by a key.
    let finished = |stack: &mut Vec<Frame>| {
        if let Some(Frame::Mapping { key_next, .. }) = stack.last_mut() {
            *key_next = !*key_next;
        }
    };
    while let Ok((event, mark)) = parser.next_token() {
        match event {
            Event::StreamEnd | Event::DocumentEnd => return None,
            Event::MappingStart(..) => stack.push(Frame::Mapping {
                seen: HashSet::new(),
                key_next: true,
            }),
            Event::SequenceStart(..) => stack.push(Frame::Sequence),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                finished(&mut stack);
            }
            Event::Scalar(value, ..) => {
                if let Some(Frame::Mapping {
                    seen,
                    key_next: true,
                }) = stack.last_mut()
                    && !seen.insert(value.clone())
                {
                    return Some((value, mark.line(), mark.col() + 1));
                }
                finished(&mut stack);
            }
            Event::Alias(_) => finished(&mut stack),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagnose(source: &str) -> Diagnostic {
        let error = serde_yaml::from_str::<serde_yaml::Value>(source).expect_err("invalid YAML");
        syntax_error(&error, source)
    }

    #[test]
    fn a_duplicate_key_is_shown_where_it_comes_again() {
        let found =
            diagnose("version: 1\nname: a\nroles:\n  - name: x\n    login: true\n    name: y\n");
        assert_eq!(found.message, "duplicate key `name`");
        let span = found.span.expect("span");
        assert_eq!((span.line, span.column), (6, 5));
    }

    #[test]
    fn an_unclosed_bracket_is_shown_where_it_opens() {
        let found = diagnose("version: 1\nname: x\nroles: [ {name: a}\ndatabases: []\n");
        assert_eq!(found.message, "`[` is never closed");
        let span = found.span.expect("span");
        assert_eq!((span.line, span.column), (3, 8));
        let found = diagnose("a: { b: 1\nc: 2\n");
        assert_eq!(found.message, "`{` is never closed");
    }

    #[test]
    fn a_tab_in_the_indentation_says_so() {
        let found = diagnose("version: 1\nroles:\n\t- name: a\n");
        assert_eq!(found.message, "a tab in the indentation");
        assert!(
            found
                .help
                .unwrap_or_default()
                .contains("tabs are not allowed")
        );
    }

    #[test]
    fn keys_of_different_mappings_are_not_duplicates() {
        assert_eq!(
            duplicate_key("a: {x: 1}\nb: {x: 2}\nc:\n  - x: 1\n  - x: 2\n"),
            None
        );
        assert_eq!(
            duplicate_key("a:\n  x: 1\n  x: 2\n"),
            Some(("x".to_owned(), 3, 3))
        );
    }
}
