//! Checks that SQL text from a spec is one expression, and that names hold
//! no control characters.
//!
//! An index's `expression` and `where` are SQL the spec's author writes, and
//! pgspec puts them into a `CREATE INDEX` statement. They must stay inside
//! it: no `;` that would end the statement, no parenthesis that would close
//! the key list, no comment that would hide the rest of the statement, and
//! every quote closed. This is a lexer, not a parser: it knows PostgreSQL's
//! quoting (`'…'` with `''`, `E'…'` with backslash escapes, `"…"`,
//! `$tag$…$tag$`) so that a `;` or `)` inside a string literal is data, and
//! leaves the grammar to the server. It is a check for the spec's author;
//! `plan` and `drift` do not depend on it for safety (each statement they
//! send is parsed by the server as exactly one statement).
//!
//! Pure: no I/O.

/// Why text is not one expression, for a diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotOneExpression {
    /// A `;` outside any quote: it would end the statement.
    Semicolon,
    /// `--` or `/*` outside any quote.
    Comment,
    /// A `)` or `]` with no opening partner before it.
    UnopenedBracket(char),
    /// A `(` or `[` never closed.
    UnclosedBracket(char),
    /// A quote never closed: `'`, `"` or a dollar-quote tag.
    UnclosedQuote(String),
    /// A control character other than tab, newline and carriage return.
    ControlCharacter(char),
}

impl NotOneExpression {
    /// A short explanation, in the words of a diagnostic.
    pub fn describe(&self) -> String {
        match self {
            NotOneExpression::Semicolon => {
                "`;` outside a string would end the statement".to_owned()
            }
            NotOneExpression::Comment => "a comment (`--` or `/*`) outside a string".to_owned(),
            NotOneExpression::UnopenedBracket(bracket) => {
                format!("`{bracket}` closes a bracket that was not opened in the expression")
            }
            NotOneExpression::UnclosedBracket(bracket) => {
                format!("`{bracket}` is never closed")
            }
            NotOneExpression::UnclosedQuote(quote) => format!("`{quote}` is never closed"),
            NotOneExpression::ControlCharacter(character) => {
                format!("it holds the control character {}", escape_char(*character))
            }
        }
    }
}

fn is_identifier_char(character: char) -> bool {
    character.is_alphanumeric() || character == '_' || character == '$'
}

/// Checks that `text` is one SQL expression as far as quoting, brackets,
/// comments and statement ends go.
pub fn check_one_expression(text: &str) -> Result<(), NotOneExpression> {
    let characters: Vec<char> = text.chars().collect();
    let mut brackets: Vec<char> = Vec::new();
    let mut at = 0;
    while at < characters.len() {
        let character = characters[at];
        let previous = at.checked_sub(1).map(|before| characters[before]);
        let next = characters.get(at + 1).copied();
        if character.is_control() && !matches!(character, '\t' | '\n' | '\r') {
            return Err(NotOneExpression::ControlCharacter(character));
        }
        let after_identifier = previous.is_some_and(is_identifier_char);
        match character {
            ';' => return Err(NotOneExpression::Semicolon),
            '-' if next == Some('-') => return Err(NotOneExpression::Comment),
            '/' if next == Some('*') => return Err(NotOneExpression::Comment),
            '(' | '[' => brackets.push(character),
            ')' | ']' => {
                let opening = if character == ')' { '(' } else { '[' };
                if brackets.pop() != Some(opening) {
                    return Err(NotOneExpression::UnopenedBracket(character));
                }
            }
            '\'' => {
                // `E'…'` (any case), not the `e` that ends an identifier
                // such as `name'…'`, which is not valid SQL anyway.
                let escapes = previous.is_some_and(|letter| letter == 'e' || letter == 'E')
                    && at
                        .checked_sub(2)
                        .is_none_or(|before| !is_identifier_char(characters[before]));
                at = skip_quoted(&characters, at, '\'', escapes)
                    .ok_or_else(|| NotOneExpression::UnclosedQuote("'".to_owned()))?;
                continue;
            }
            '"' => {
                at = skip_quoted(&characters, at, '"', false)
                    .ok_or_else(|| NotOneExpression::UnclosedQuote("\"".to_owned()))?;
                continue;
            }
            '$' if !after_identifier => {
                if let Some(tag) = dollar_tag(&characters, at) {
                    at = skip_dollar_quoted(&characters, at, &tag)
                        .ok_or(NotOneExpression::UnclosedQuote(tag))?;
                    continue;
                }
            }
            _ => {}
        }
        at += 1;
    }
    match brackets.pop() {
        Some(bracket) => Err(NotOneExpression::UnclosedBracket(bracket)),
        None => Ok(()),
    }
}

/// The index just past the closing `quote` of the quoted text opening at
/// `start`; a doubled quote is one quote character, and with `escapes` a
/// backslash escapes the character after it.
fn skip_quoted(characters: &[char], start: usize, quote: char, escapes: bool) -> Option<usize> {
    let mut at = start + 1;
    while at < characters.len() {
        let character = characters[at];
        if escapes && character == '\\' {
            at += 2;
            continue;
        }
        if character == quote {
            if characters.get(at + 1) == Some(&quote) {
                at += 2;
                continue;
            }
            return Some(at + 1);
        }
        at += 1;
    }
    None
}

/// The tag of a dollar quote opening at `start` (`$$` or `$name$`), or
/// `None` when the `$` opens no quote (a parameter such as `$1`).
fn dollar_tag(characters: &[char], start: usize) -> Option<String> {
    let mut tag = String::from("$");
    for (offset, character) in characters[start + 1..].iter().enumerate() {
        match character {
            '$' => {
                tag.push('$');
                return Some(tag);
            }
            character
                if character.is_alphabetic()
                    || *character == '_'
                    || (offset > 0 && character.is_ascii_digit()) =>
            {
                tag.push(*character)
            }
            _ => return None,
        }
    }
    None
}

fn skip_dollar_quoted(characters: &[char], start: usize, tag: &str) -> Option<usize> {
    let tag: Vec<char> = tag.chars().collect();
    let body = start + tag.len();
    (body..characters.len())
        .find(|at| characters[*at..].starts_with(&tag))
        .map(|at| at + tag.len())
}

/// The first control character in a name, if any. PostgreSQL accepts a
/// newline or an escape sequence in a quoted identifier, but such a name
/// would break the lines of `pgbouncer.ini`, the auth file and the
/// terminal; NUL it cannot store at all.
pub fn control_character(name: &str) -> Option<char> {
    name.chars().find(|character| character.is_control())
}

/// A character as an escape a reader can type: `\n`, `\t`, `\u{1b}`.
pub fn escape_char(character: char) -> String {
    character.escape_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legitimate_expressions_are_accepted() {
        for text in [
            "state <> 'done'",
            "lower(url)",
            "(a + b) * c",
            "note = 'a;b'",
            "note = 'it''s; here'",
            "note = E'it\\'s; -- not a comment'",
            "note = e'\\\\'",
            "note <> $$a;b)$$",
            "note <> $tag$ $$ ; $tag$",
            "\"odd;name\" IS NOT NULL",
            "\"a\"\"b\" > 0",
            "tags[1] = 'x'",
            "coalesce(a, b) > 0 AND c IS NULL",
            "a - -1 > 0",
            "a / 2 > 0",
            "price$ > 0",
            "metadata ->> 'source' = '(unbalanced'",
            "created_at > '2024-01-01'\n  AND state <> 'done'",
            "U&'d\\0061t' <> ''",
        ] {
            assert_eq!(check_one_expression(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn smuggled_statements_and_tricks_are_rejected() {
        for (text, why) in [
            (
                "true; COPY (SELECT 1) TO PROGRAM 'touch /tmp/x'",
                NotOneExpression::Semicolon,
            ),
            ("true;", NotOneExpression::Semicolon),
            ("a > 0 -- ; DROP TABLE x", NotOneExpression::Comment),
            ("a > 0 /* hidden */", NotOneExpression::Comment),
            (
                "a) WITH (fillfactor = 10",
                NotOneExpression::UnopenedBracket(')'),
            ),
            ("lower(url", NotOneExpression::UnclosedBracket('(')),
            ("tags[1 = 'x'", NotOneExpression::UnclosedBracket('[')),
            ("(a]", NotOneExpression::UnopenedBracket(']')),
            (
                "note = 'open",
                NotOneExpression::UnclosedQuote("'".to_owned()),
            ),
            // `\'` escapes the quote in an E string, so this one never ends.
            (
                "note = E'a\\'",
                NotOneExpression::UnclosedQuote("'".to_owned()),
            ),
            (
                "\"open IS NULL",
                NotOneExpression::UnclosedQuote("\"".to_owned()),
            ),
            (
                "a <> $x$ never",
                NotOneExpression::UnclosedQuote("$x$".to_owned()),
            ),
            ("a > 0\0", NotOneExpression::ControlCharacter('\0')),
            (
                "a > 0\u{1b}[2J",
                NotOneExpression::ControlCharacter('\u{1b}'),
            ),
            // A standard string does not treat `\` as an escape: the quote
            // closes it and the `;` after it is outside.
            ("note = 'a\\'; DROP TABLE x", NotOneExpression::Semicolon),
        ] {
            assert_eq!(check_one_expression(text), Err(why), "{text}");
        }
    }

    #[test]
    fn control_characters_in_names_are_found() {
        assert_eq!(control_character("somali"), None);
        assert_eq!(control_character("ünï \"odd\" name"), None);
        assert_eq!(control_character("a\nb"), Some('\n'));
        assert_eq!(control_character("a\0"), Some('\0'));
        assert_eq!(control_character("\u{1b}[31mred"), Some('\u{1b}'));
        assert_eq!(escape_char('\u{1b}'), "\\u{1b}");
        assert_eq!(escape_char('\n'), "\\n");
    }
}
