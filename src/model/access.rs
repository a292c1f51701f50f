//! Client authentication rules: the lines of the server's `pg_hba.conf`, in
//! order, as the spec's `access` section states them and as
//! `pg_hba_file_rules` reports them.
//!
//! Pure: the file's text, the canonical form both sides are compared in,
//! and which rule a connection would meet (for the lockout guard).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The first line of the file pgspec writes; what follows it is the spec's.
pub const FILE_HEADER: &str = "# Managed by pgspec: this file is written from the `access` section of \
     the spec,\n# and edits made here are drift that the next apply undoes.\n";

/// Connection types a rule may have (`pg_hba.conf`'s first field).
pub const CONNECTION_TYPES: &[&str] = &[
    "local",
    "host",
    "hostssl",
    "hostnossl",
    "hostgssenc",
    "hostnogssenc",
];

/// Authentication methods the server knows.
pub const METHODS: &[&str] = &[
    "trust",
    "reject",
    "scram-sha-256",
    "md5",
    "password",
    "gss",
    "sspi",
    "ident",
    "peer",
    "ldap",
    "radius",
    "cert",
    "pam",
    "bsd",
];

/// Methods that only work on local (Unix socket) connections.
pub const LOCAL_ONLY_METHODS: &[&str] = &["peer"];

/// Option names `pg_hba.conf` knows (for any method; the server checks
/// which method takes which).
pub const OPTIONS: &[&str] = &[
    "map",
    "clientcert",
    "clientname",
    "pamservice",
    "pam_use_hostname",
    "ldapurl",
    "ldaptls",
    "ldapserver",
    "ldapport",
    "ldapbinddn",
    "ldapbindpasswd",
    "ldapsearchattribute",
    "ldapsearchfilter",
    "ldapbasedn",
    "ldapprefix",
    "ldapsuffix",
    "ldapscheme",
    "krb_realm",
    "include_realm",
    "compat_realm",
    "upn_username",
    "radiusservers",
    "radiussecrets",
    "radiusidentifiers",
    "radiusports",
];

/// Options whose value is a password: never written into a spec, which
/// plans show.
pub const SECRET_OPTIONS: &[&str] = &["ldapbindpasswd", "radiussecrets"];

/// Options the server fills in for a method when the file leaves them out,
/// and reports in `pg_hba_file_rules` as if written: compared as though the
/// spec had written them.
const SERVER_DEFAULTS: &[(&str, &str, &str)] = &[("cert", "clientcert", "verify-full")];

/// The `access` section: rules in order, and whether rules that would
/// refuse pgspec's own connection are meant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Access {
    pub rules: Vec<AccessRule>,
    /// Desired: the spec says on purpose that its rules may refuse
    /// pgspec's own connection (`access_lockout: allow`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lockout_allowed: bool,
    /// Live only: the file the server reads (`hba_file`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    /// Live only: lines of the file the server cannot use, with its reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RuleError>,
    /// Live only: how pgspec's own session reached the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
}

/// A line of the live file the server rejects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleError {
    pub line: u32,
    pub message: String,
}

/// pgspec's own connection as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// `inet_client_addr()`; `None` for a Unix socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub user: String,
    /// `current_database()`: the maintenance database pgspec connects to.
    pub database: String,
    /// Whether the connection uses TLS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ssl: bool,
}

/// One rule: a line of `pg_hba.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRule {
    /// `local`, `host`, `hostssl`, `hostnossl`, `hostgssenc`, `hostnogssenc`.
    #[serde(rename = "type")]
    pub kind: String,
    pub databases: Vec<String>,
    pub users: Vec<String>,
    /// `None` on `local` rules; otherwise a CIDR (`10.0.0.0/8`), `all`,
    /// `samehost`, `samenet` or a host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub method: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

impl AccessRule {
    /// The rule as a line of `pg_hba.conf`.
    pub fn line(&self) -> String {
        let mut fields = vec![
            self.kind.clone(),
            self.databases.join(","),
            self.users.join(","),
        ];
        if let Some(address) = &self.address {
            fields.push(address.clone());
        }
        fields.push(self.method.clone());
        for (name, value) in &self.options {
            if value
                .chars()
                .any(|character| character.is_whitespace() || character == ',')
            {
                fields.push(format!("{name}=\"{value}\""));
            } else {
                fields.push(format!("{name}={value}"));
            }
        }
        fields.join(" ")
    }

    /// The rule in the form both sides are compared in: a CIDR address in
    /// the server's notation, and the options the server adds by itself.
    pub fn canonical(&self) -> AccessRule {
        let mut rule = self.clone();
        if let Some(address) = &rule.address
            && let Some(cidr) = Cidr::parse(address)
        {
            rule.address = Some(cidr.to_string());
        }
        for (method, option, value) in SERVER_DEFAULTS {
            if rule.method == *method {
                rule.options
                    .entry((*option).to_owned())
                    .or_insert_with(|| (*value).to_owned());
            }
        }
        rule
    }
}

/// The rules the server should have: the spec's, and with `require_tls`
/// (`postgres.tls.require`) every `host` rule as `hostssl` behind a first
/// rule refusing TCP clients without TLS, so none gets in without it.
pub fn effective_rules(access: &Access, require_tls: bool) -> Vec<AccessRule> {
    if !require_tls {
        return access.rules.clone();
    }
    let refuse_plain = AccessRule {
        kind: "hostnossl".to_owned(),
        databases: vec!["all".to_owned()],
        users: vec!["all".to_owned()],
        address: Some("all".to_owned()),
        method: "reject".to_owned(),
        options: BTreeMap::new(),
    };
    std::iter::once(refuse_plain)
        .chain(access.rules.iter().map(|rule| {
            let mut rule = rule.clone();
            if rule.kind == "host" {
                rule.kind = "hostssl".to_owned();
            }
            rule
        }))
        .collect()
}

/// The file pgspec writes for `rules`: the header, then one line a rule.
pub fn file_text(rules: &[AccessRule]) -> String {
    let mut text = FILE_HEADER.to_owned();
    for rule in rules {
        text.push_str(&rule.line());
        text.push('\n');
    }
    text
}

/// The rules as the plan shows them, one canonical line each (every line
/// ends in a newline, so even one rule is shown as lines).
pub fn rules_text(rules: &[AccessRule]) -> String {
    rules
        .iter()
        .map(|rule| format!("{}\n", rule.canonical().line()))
        .collect()
}

/// An address with a prefix length: `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub address: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// `ADDRESS/PREFIX`, the prefix no longer than the address.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = text.split_once('/')?;
        let address: IpAddr = address.parse().ok()?;
        if prefix.is_empty() || !prefix.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        let prefix: u8 = prefix.parse().ok()?;
        (prefix <= max_prefix(address)).then_some(Cidr { address, prefix })
    }

    /// An address and the netmask `pg_hba_file_rules` reports with it.
    pub fn from_netmask(address: &str, netmask: &str) -> Option<Cidr> {
        let address: IpAddr = address.parse().ok()?;
        let mask: IpAddr = netmask.parse().ok()?;
        let prefix = match mask {
            IpAddr::V4(mask) => u32::from(mask).leading_ones(),
            IpAddr::V6(mask) => u128::from(mask).leading_ones(),
        };
        Some(Cidr {
            address,
            prefix: u8::try_from(prefix).ok()?,
        })
    }

    /// Whether `address` is in this network.
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.address, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }

    /// Whether every address of `other` is in this network.
    pub fn covers(&self, other: &Cidr) -> bool {
        self.prefix <= other.prefix && self.contains(other.address)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

fn max_prefix(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// A connection the lockout guard asks about.
#[derive(Debug, Clone)]
pub struct Client<'a> {
    /// Where it comes from: `None` for a Unix socket; a network for a
    /// client known only by the network it is on (every address of it is
    /// taken to be the client's).
    pub from: Option<Cidr>,
    /// A network the server is attached to (the deployment's), for
    /// `samenet`; `None` when unknown.
    pub server_network: Option<Cidr>,
    pub ssl: bool,
    pub database: &'a str,
    pub user: &'a str,
}

/// What the rules do with a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The first rule that matches lets it try to log in with a password
    /// (or without one).
    Admitted { rule: usize },
    /// The first rule that matches refuses it, or asks for what pgspec
    /// cannot give (a client certificate, Kerberos, the OS user).
    Refused { rule: usize, method: String },
    /// No rule matches.
    Unmatched,
}

/// Methods a client that holds only a password can pass.
const PASSWORD_METHODS: &[&str] = &[
    "trust",
    "scram-sha-256",
    "md5",
    "password",
    "ldap",
    "radius",
    "pam",
    "bsd",
];

/// The verdict of `rules` on `client`, as the server reaches it: the first
/// rule whose type, database, user and address match decides. `member` says
/// whether a user is a member of a group (for `+group`). Rules the guard
/// cannot evaluate without the network (host names, `samehost`, `samenet`
/// beyond the server's known network) and `samerole` are taken not to
/// match.
pub fn verdict(
    rules: &[AccessRule],
    client: &Client<'_>,
    member: &dyn Fn(&str, &str) -> bool,
) -> Verdict {
    for (index, rule) in rules.iter().enumerate() {
        if !type_matches(&rule.kind, client)
            || !database_matches(&rule.databases, client)
            || !user_matches(&rule.users, client.user, member)
            || !address_matches(rule.address.as_deref(), client)
        {
            continue;
        }
        let method = rule.method.as_str();
        return if PASSWORD_METHODS.contains(&method) {
            Verdict::Admitted { rule: index }
        } else {
            Verdict::Refused {
                rule: index,
                method: method.to_owned(),
            }
        };
    }
    Verdict::Unmatched
}

fn type_matches(kind: &str, client: &Client<'_>) -> bool {
    match (kind, &client.from) {
        ("local", None) => true,
        ("host" | "hostnogssenc", Some(_)) => true,
        ("hostssl", Some(_)) => client.ssl,
        ("hostnossl", Some(_)) => !client.ssl,
        _ => false,
    }
}

fn database_matches(databases: &[String], client: &Client<'_>) -> bool {
    databases.iter().any(|database| match database.as_str() {
        "all" => true,
        "sameuser" => client.database == client.user,
        "samerole" | "samegroup" | "replication" => false,
        name => name == client.database,
    })
}

fn user_matches(users: &[String], user: &str, member: &dyn Fn(&str, &str) -> bool) -> bool {
    users.iter().any(|entry| match entry.strip_prefix('+') {
        Some(group) => group == user || member(user, group),
        None => entry == "all" || entry == user,
    })
}

fn address_matches(address: Option<&str>, client: &Client<'_>) -> bool {
    let Some(from) = &client.from else {
        return address.is_none();
    };
    match address {
        Some("all") => true,
        Some("samenet") => client
            .server_network
            .is_some_and(|network| network.covers(from)),
        Some(address) => Cidr::parse(address).is_some_and(|network| network.covers(from)),
        None => false,
    }
}

/// Whether a database or user name can be written in a rule without
/// quotes: letters, digits and `_ $ . -`, and for a user a leading `+`
/// (the members of a role).
pub fn is_plain_name(name: &str, user: bool) -> bool {
    let bare = if user {
        name.strip_prefix('+').unwrap_or(name)
    } else {
        name
    };
    !bare.is_empty()
        && bare.chars().all(|character| {
            character.is_ascii_alphanumeric() || matches!(character, '_' | '$' | '.' | '-')
        })
}

/// Whether `address` is the loopback interface (a port published there is
/// reachable from this host only).
pub fn is_loopback(address: &str) -> bool {
    address == "localhost"
        || address
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        kind: &str,
        database: &str,
        user: &str,
        address: Option<&str>,
        method: &str,
    ) -> AccessRule {
        AccessRule {
            kind: kind.to_owned(),
            databases: vec![database.to_owned()],
            users: vec![user.to_owned()],
            address: address.map(str::to_owned),
            method: method.to_owned(),
            options: BTreeMap::new(),
        }
    }

    #[test]
    fn required_tls_turns_host_rules_into_hostssl_behind_a_refusal() {
        let access = Access {
            rules: vec![
                rule("local", "all", "postgres", None, "peer"),
                rule("host", "all", "app", Some("10.0.0.0/8"), "scram-sha-256"),
                rule("hostssl", "all", "ops", Some("all"), "scram-sha-256"),
            ],
            ..Access::default()
        };
        assert_eq!(effective_rules(&access, false), access.rules);
        let lines: Vec<String> = effective_rules(&access, true)
            .iter()
            .map(AccessRule::line)
            .collect();
        assert_eq!(
            lines,
            [
                "hostnossl all all all reject",
                "local all postgres peer",
                "hostssl all app 10.0.0.0/8 scram-sha-256",
                "hostssl all ops all scram-sha-256",
            ]
        );
    }

    #[test]
    fn addresses_parse_and_compare_as_the_server_shows_them() {
        let cidr = Cidr::parse("10.1.2.3/8").expect("a CIDR");
        assert_eq!(cidr.to_string(), "10.1.2.3/8");
        assert!(cidr.contains("10.200.0.1".parse().expect("an address")));
        assert!(!cidr.contains("11.0.0.1".parse().expect("an address")));
        assert_eq!(
            Cidr::from_netmask("172.16.0.0", "255.240.0.0").map(|cidr| cidr.to_string()),
            Some("172.16.0.0/12".to_owned())
        );
        assert_eq!(
            Cidr::from_netmask("::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
                .map(|cidr| cidr.to_string()),
            Some("::1/128".to_owned())
        );
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "10.0.0.0/",
            "x/8",
            "::1/129",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
        let everything = Cidr::parse("0.0.0.0/0").expect("a CIDR");
        assert!(everything.covers(&Cidr::parse("172.18.0.0/16").expect("a CIDR")));
        assert!(
            !Cidr::parse("172.18.0.0/24")
                .expect("a CIDR")
                .covers(&Cidr::parse("172.18.0.0/16").expect("a CIDR"))
        );
    }

    #[test]
    fn lines_and_canonical_forms() {
        let mut cert = rule("hostssl", "all", "+admins", Some("10.0.0.0/8"), "cert");
        assert_eq!(cert.line(), "hostssl all +admins 10.0.0.0/8 cert");
        assert_eq!(
            cert.canonical().line(),
            "hostssl all +admins 10.0.0.0/8 cert clientcert=verify-full"
        );
        cert.options
            .insert("ldapprefix".to_owned(), "cn= x".to_owned());
        assert!(cert.line().ends_with("ldapprefix=\"cn= x\""));
        let text = file_text(&[rule("local", "all", "postgres", None, "peer")]);
        assert!(text.starts_with("# Managed by pgspec"));
        assert!(text.ends_with("\nlocal all postgres peer\n"));
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rules = vec![
            rule("local", "all", "postgres", None, "peer"),
            rule("host", "all", "intruder", Some("all"), "reject"),
            rule("hostssl", "all", "all", Some("all"), "scram-sha-256"),
            rule(
                "host",
                "app",
                "+staff",
                Some("172.16.0.0/12"),
                "scram-sha-256",
            ),
            rule("host", "replication", "all", Some("all"), "trust"),
        ];
        let no_groups = |_: &str, _: &str| false;
        let from = Cidr::parse("172.18.0.1/32");
        let client = |user, database| Client {
            from,
            server_network: None,
            ssl: false,
            database,
            user,
        };
        assert_eq!(
            verdict(&rules, &client("intruder", "app"), &no_groups),
            Verdict::Refused {
                rule: 1,
                method: "reject".to_owned()
            }
        );
        assert_eq!(
            verdict(&rules, &client("postgres", "app"), &no_groups),
            Verdict::Unmatched
        );
        let staff = |user: &str, group: &str| user == "alice" && group == "staff";
        assert_eq!(
            verdict(&rules, &client("alice", "app"), &staff),
            Verdict::Admitted { rule: 3 }
        );
        let tls = Client {
            ssl: true,
            ..client("postgres", "postgres")
        };
        assert_eq!(
            verdict(&rules, &tls, &no_groups),
            Verdict::Admitted { rule: 2 }
        );
        let socket = Client {
            from: None,
            ..client("postgres", "app")
        };
        assert_eq!(
            verdict(&rules, &socket, &no_groups),
            Verdict::Refused {
                rule: 0,
                method: "peer".to_owned()
            }
        );
        let samenet = [rule("host", "all", "all", Some("samenet"), "md5")];
        assert_eq!(
            verdict(&samenet, &client("postgres", "app"), &no_groups),
            Verdict::Unmatched
        );
        let on_the_network = Client {
            server_network: Cidr::parse("172.18.0.0/16"),
            ..client("postgres", "app")
        };
        assert_eq!(
            verdict(&samenet, &on_the_network, &no_groups),
            Verdict::Admitted { rule: 0 }
        );
    }
}
