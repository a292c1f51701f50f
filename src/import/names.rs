//! Names an import makes up: the environment variables that hold
//! passwords, and the glob `--role-pattern` matches with.

use std::collections::BTreeSet;

/// Prefix of every password variable an import writes.
pub const PASSWORD_PREFIX: &str = "PGSPEC_PASSWORD_";

/// Hands out one environment variable name per password owner:
/// `PGSPEC_PASSWORD_` and the role's name in upper case, every character
/// other than an ASCII letter or digit replaced by `_`. A name taken
/// already gets `_2`, `_3`, … in the order roles are asked for.
#[derive(Debug, Default)]
pub struct PasswordVariables {
    taken: BTreeSet<String>,
}

impl PasswordVariables {
    pub fn name_for(&mut self, role: &str) -> String {
        let base = password_variable(role);
        let mut name = base.clone();
        let mut number = 2;
        while self.taken.contains(&name) {
            name = format!("{base}_{number}");
            number += 1;
        }
        self.taken.insert(name.clone());
        name
    }
}

/// The variable name for a role's password, before collisions are
/// resolved.
pub fn password_variable(role: &str) -> String {
    let mut name = PASSWORD_PREFIX.to_owned();
    name.extend(role.chars().map(|character| {
        if character.is_ascii_alphanumeric() {
            character.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    name
}

/// Whether `name` matches a shell-style glob: `*` is any run of
/// characters, `?` any one character, everything else itself.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    // Classic two-pointer matching with backtracking to the last `*`.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|character| *character == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_upper_case_and_disambiguated() {
        let mut variables = PasswordVariables::default();
        assert_eq!(variables.name_for("app"), "PGSPEC_PASSWORD_APP");
        assert_eq!(variables.name_for("App"), "PGSPEC_PASSWORD_APP_2");
        assert_eq!(variables.name_for("a-p.p"), "PGSPEC_PASSWORD_A_P_P");
        assert_eq!(variables.name_for("a p p"), "PGSPEC_PASSWORD_A_P_P_2");
        assert_eq!(variables.name_for("Rëad \"x\""), "PGSPEC_PASSWORD_R_AD__X_");
    }

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_matches("app_*", "app_reader"));
        assert!(glob_matches("app_*", "app_"));
        assert!(!glob_matches("app_*", "xapp_reader"));
        assert!(glob_matches("*reader", "app_reader"));
        assert!(glob_matches("a?p*r", "app_reader"));
        assert!(glob_matches("*", ""));
        assert!(!glob_matches("a", "ab"));
        assert!(glob_matches("*a*b*", "xxaxxbxx"));
    }
}
