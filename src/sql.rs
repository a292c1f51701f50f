//! The one path from a spec value into SQL text.
//!
//! Identifiers always go through `quote_ident` and values, where DDL allows
//! no bind parameter, through `quote_literal`. No other code formats a name
//! or value from a spec into a statement.

/// Quotes an identifier: always double-quoted, embedded quotes doubled, so a
/// role called `a"; DROP TABLE x; --` is just a name.
pub fn quote_ident(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for character in name.chars() {
        if character == '"' {
            quoted.push('"');
        }
        quoted.push(character);
    }
    quoted.push('"');
    quoted
}

/// Quotes a string literal in standard-conforming form. Backslashes are not
/// special with `standard_conforming_strings` on (the default since 9.1), but
/// a literal containing one is written as an `E''` string so that it means
/// the same whatever that setting is.
pub fn quote_literal(value: &str) -> String {
    let escaped = value.replace('\'', "''");
    if escaped.contains('\\') {
        format!("E'{}'", escaped.replace('\\', "\\\\"))
    } else {
        format!("'{escaped}'")
    }
}

/// A schema-qualified name, each part quoted.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_quoted() {
        assert_eq!(quote_ident("somali"), r#""somali""#);
        assert_eq!(quote_ident("Mixed Case"), r#""Mixed Case""#);
        assert_eq!(
            quote_ident(r#"a"; DROP TABLE x; --"#),
            r#""a""; DROP TABLE x; --""#
        );
        assert_eq!(quote_ident("ünï"), "\"ünï\"");
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(quote_literal("1.10"), "'1.10'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b'"), r"E'a\\b'''");
    }
}
