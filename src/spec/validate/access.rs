//! Checks and lowering of the `access` section: client authentication
//! rules, in order. What the server alone can judge (which options a method
//! takes, a `hostssl` rule on a server without TLS) is left to the check
//! apply has the server make before the file is used.

use super::checker::Checker;
use crate::model::access::{self, Access, AccessRule, CONNECTION_TYPES, Cidr, METHODS, OPTIONS};
use crate::spec::file::{AccessLockout, AccessRuleSpec, SpecFile};

impl Checker<'_> {
    pub(super) fn check_access(&mut self, file: &SpecFile) {
        let Some(rules) = &file.access else {
            if file.access_lockout.is_some() {
                self.warning(
                    "access_lockout",
                    "`access_lockout` has no effect without an `access` section",
                );
            }
            return;
        };
        for (index, rule) in rules.iter().enumerate() {
            self.check_access_rule(&format!("access[{index}]"), rule);
        }
    }

    fn check_access_rule(&mut self, path: &str, rule: &AccessRuleSpec) {
        let kind = rule.kind.as_str();
        let known_kind = CONNECTION_TYPES.contains(&kind);
        if !known_kind {
            self.error_with_choices(
                &format!("{path}.type"),
                format!("unknown connection type `{kind}`"),
                kind,
                CONNECTION_TYPES,
                CONNECTION_TYPES.iter().copied(),
            );
        }
        self.check_access_names(&format!("{path}.database"), &rule.database.names(), false);
        self.check_access_names(&format!("{path}.user"), &rule.user.names(), true);
        let local = kind == "local";
        match (&rule.address, local) {
            (Some(_), true) => {
                self.error(
                    &format!("{path}.address"),
                    "a `local` rule is about Unix-socket connections and takes no address",
                )
                .help = Some("remove `address`, or make the rule `type: host`".to_owned());
            }
            (None, false) if known_kind => {
                self.error(
                    path,
                    format!("a `{kind}` rule needs an `address`: where its clients connect from"),
                )
                .help = Some(
                    "write a network such as `10.0.0.0/8`, or `all` for every address".to_owned(),
                );
            }
            (Some(address), false) => {
                self.check_access_address(&format!("{path}.address"), address)
            }
            _ => {}
        }
        let method = rule.method.as_str();
        let method_path = format!("{path}.method");
        if !METHODS.contains(&method) {
            self.error_with_choices(
                &method_path,
                format!("unknown authentication method `{method}`"),
                method,
                METHODS,
                METHODS.iter().copied(),
            );
        } else if access::LOCAL_ONLY_METHODS.contains(&method) && !local && known_kind {
            self.error(
                &method_path,
                format!("`{method}` works on `local` connections only"),
            )
            .help = Some("use `scram-sha-256` on rules for network connections".to_owned());
        } else if method == "ident" && local {
            self.error(
                &method_path,
                "the server turns `ident` on a `local` rule into `peer`",
            )
            .help = Some("write `peer`".to_owned());
        } else if method == "cert" && known_kind && kind != "hostssl" {
            self.error(
                &method_path,
                "`cert` needs a TLS connection: it works on `hostssl` rules only",
            );
        }
        for (name, value) in &rule.options {
            let option_path = format!("{path}.options.{name}");
            if !OPTIONS.contains(&name.as_str()) {
                self.error_with_choices(
                    &option_path,
                    format!("unknown option `{name}`"),
                    name,
                    OPTIONS,
                    OPTIONS.iter().copied(),
                );
            }
            if access::SECRET_OPTIONS.contains(&name.as_str()) {
                self.error(&option_path, format!("`{name}` holds a secret"))
                    .help = Some(
                    "pgspec shows rules in plans and would print it; keep this rule out of the \
                     spec until options can be secret references"
                        .to_owned(),
                );
            }
            if self.check_no_control(&option_path, value, "option value") && value.contains('"') {
                self.error(&option_path, "an option value cannot hold `\"`");
            }
        }
    }

    /// Names pgspec writes unquoted: letters, digits and `_ $ . -`, and
    /// a leading `+` on a user (the members of a role).
    fn check_access_names(&mut self, path: &str, names: &[String], users: bool) {
        if names.is_empty() {
            self.error(path, "name at least one, or `all`");
            return;
        }
        for name in names {
            let plain = access::is_plain_name(name, users);
            if name.starts_with('@') {
                self.error(path, format!("`{name}` names a file of names"))
                    .help = Some(
                    "pgspec writes the whole file and no file it includes: list the names"
                        .to_owned(),
                );
            } else if !plain {
                self.error(
                    path,
                    format!("`{name}` is not a name pgspec can write in a rule"),
                )
                .help = Some(
                    "use letters, digits and `_ $ . -` (and `+` before a role for its members)"
                        .to_owned(),
                );
            } else if !users && name == "samegroup" {
                self.warning(path, "`samegroup` is an old spelling of `samerole`");
            }
        }
    }

    fn check_access_address(&mut self, path: &str, address: &str) {
        if matches!(address, "all" | "samehost" | "samenet") {
            return;
        }
        if address.contains('/') {
            if Cidr::parse(address).is_none() {
                self.error(path, format!("`{address}` is not a valid CIDR address"))
                    .help = Some(
                    "write an address and a prefix length: `10.0.0.0/8`, `fd00::/8`".to_owned(),
                );
            }
            return;
        }
        if address.parse::<std::net::IpAddr>().is_ok() {
            let prefix = if address.contains(':') { 128 } else { 32 };
            self.error(path, format!("`{address}` has no prefix length"))
                .help = Some(format!("for this one address write `{address}/{prefix}`"));
            return;
        }
        let host_name = address.trim_start_matches('.');
        let valid = !host_name.is_empty()
            && host_name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .chars()
                        .all(|character| character.is_ascii_alphanumeric() || character == '-')
            });
        if !valid {
            self.error(
                path,
                format!("`{address}` is neither a CIDR address nor a host name"),
            )
            .help = Some(
                "write a network such as `10.0.0.0/8`, `all`, `samehost`, `samenet` or a host name"
                    .to_owned(),
            );
        }
    }
}

/// The rules as the model has them. Only called on a checked spec.
pub(super) fn lower_access(file: &SpecFile) -> Option<Access> {
    let rules = file.access.as_ref()?;
    Some(Access {
        rules: rules
            .iter()
            .map(|rule| AccessRule {
                kind: rule.kind.clone(),
                databases: rule.database.names(),
                users: rule.user.names(),
                address: rule.address.clone(),
                method: rule.method.clone(),
                options: rule.options.clone(),
            })
            .collect(),
        lockout_allowed: file.access_lockout == Some(AccessLockout::Allow),
        ..Access::default()
    })
}
