//! The server's certificate files: written when missing, written again when
//! the spec's certificate differs from the one in the data directory (or a
//! generated one no longer covers its names or expires soon), and the
//! server reloaded, never restarted. The plan shows certificates by
//! fingerprint, subject and expiry; key material never reaches it.
//!
//! The `ssl*` settings themselves are ordinary server settings, lowered
//! from `postgres.tls` by `spec::validate` and compared by `settings`.

use crate::model::address::{self, ObjectKind};
use crate::model::tls::{EXPIRY_WARNING_DAYS, TLS_DIRECTORY};
use crate::model::{CertificateInfo, Deployment, Tls, TlsFiles, TlsSource};
use crate::plan::{Action, ActionKind, Change, DockerStep, Note, Plan, Risk, Step};

/// Plans the server's certificate files.
pub fn diff(desired: &Deployment, live: &Deployment, plan: &mut Plan) {
    let (Some(want), Some(container)) = (&desired.tls, &desired.container) else {
        return;
    };
    let Some(source) = &want.source else { return };
    let address = address::tls(&container.name);
    let have = live.tls.as_ref().and_then(|tls| tls.installed.as_ref());
    let wanted = live.tls.as_ref().and_then(|tls| tls.wanted.as_ref());

    let mut changes = Vec::new();
    let reason = match (source, have) {
        (_, None) => {
            changes.push(Change::new(
                "certificate",
                None,
                Some(match (source, wanted) {
                    (TlsSource::Files { .. }, Some(wanted)) => wanted.certificate.describe(),
                    _ => generated_description(source),
                }),
            ));
            Some(format!(
                "the data directory holds no certificate in `{TLS_DIRECTORY}`"
            ))
        }
        (TlsSource::SelfSigned { names }, Some(have)) => {
            let reason = if !have.certificate.covers(names) {
                Some(format!(
                    "the generated certificate is not valid for {}",
                    missing_names(&have.certificate, names)
                ))
            } else if have.certificate.expired || have.certificate.expires_soon {
                Some(format!(
                    "the generated certificate expires on {}; a new one is issued by the same CA",
                    have.certificate.expiry_date()
                ))
            } else if !have.key_ok {
                Some("the key file is missing".to_owned())
            } else {
                None
            };
            if reason.is_some() {
                changes.push(Change::new(
                    "certificate",
                    Some(have.certificate.describe()),
                    Some(generated_description(source)),
                ));
            }
            reason
        }
        (TlsSource::Files { .. }, Some(have)) => match wanted {
            Some(wanted) => files_reason(have, wanted, &mut changes),
            None => None,
        },
    };
    if let Some(wanted) = wanted {
        note_expiry(
            &address,
            &wanted.certificate,
            "the spec's certificate",
            plan,
        );
    } else if let (TlsSource::Files { .. }, Some(have)) = (source, have) {
        note_expiry(&address, &have.certificate, "the certificate", plan);
    }
    if want.require && desired.access.is_none() {
        // With `access` rules, `require` makes them refuse clients without
        // TLS (`model::access::effective_rules`); without, pgspec leaves
        // the server's pg_hba.conf alone.
        plan.notes.push(Note {
            address: address.clone(),
            message: "`require` is enforced by the pooler (client_tls_sslmode = require); the \
                      server refuses clients without TLS once the spec has `access` rules, \
                      which pgspec then puts behind `hostnossl all all all reject` with its \
                      `host` rules as `hostssl`"
                .to_owned(),
        });
    }
    let Some(reason) = reason else { return };
    let kind = if have.is_some() {
        ActionKind::Update
    } else {
        ActionKind::Create
    };
    let mut steps = vec![Step::Docker(DockerStep::WriteTls {
        name: container.name.clone(),
        source: Box::new(source.clone()),
    })];
    if have.is_some() {
        // The server reads its certificate files again on a reload; the
        // `ssl*` settings of a first install reload the server themselves.
        steps.push(Step::Sql {
            database: None,
            statements: vec!["SELECT pg_reload_conf()".to_owned()],
            transaction: false,
        });
    }
    plan.actions.push(Action {
        address,
        object: ObjectKind::Tls,
        kind,
        reason: if have.is_some() {
            format!("{reason}; the server reloads its certificate without a restart")
        } else {
            reason
        },
        risk: Risk::none(),
        changes,
        steps,
    });
}

fn generated_description(source: &TlsSource) -> String {
    match source {
        TlsSource::SelfSigned { names } => {
            format!("generated, signed by pgspec's CA, for {}", names.join(", "))
        }
        TlsSource::Files { .. } => "from the spec's files".to_owned(),
    }
}

fn missing_names(certificate: &CertificateInfo, names: &[String]) -> String {
    names
        .iter()
        .filter(|name| !certificate.covers(std::slice::from_ref(name)))
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why the files in the data directory differ from the spec's, with the
/// changes the plan shows.
fn files_reason(have: &TlsFiles, wanted: &TlsFiles, changes: &mut Vec<Change>) -> Option<String> {
    let mut differs = Vec::new();
    if have.certificate.fingerprint != wanted.certificate.fingerprint {
        differs.push("certificate");
        changes.push(Change::new(
            "certificate",
            Some(have.certificate.describe()),
            Some(wanted.certificate.describe()),
        ));
    }
    let fingerprint = |files: &TlsFiles| files.ca.as_ref().map(|ca| ca.fingerprint.clone());
    if fingerprint(have) != fingerprint(wanted) {
        differs.push("CA");
        changes.push(Change::new(
            "ca",
            have.ca.as_ref().map(CertificateInfo::describe),
            wanted.ca.as_ref().map(CertificateInfo::describe),
        ));
    }
    if !have.key_ok {
        differs.push("key");
        changes.push(Change::sensitive("key"));
    }
    (!differs.is_empty()).then(|| {
        format!(
            "the {} in the data directory differs from the spec's",
            differs.join(" and ")
        )
    })
}

fn note_expiry(address: &str, certificate: &CertificateInfo, what: &str, plan: &mut Plan) {
    let message = if certificate.expired {
        format!(
            "{what} ({}) expired on {}",
            certificate.short_fingerprint(),
            certificate.expiry_date()
        )
    } else if certificate.expires_soon {
        format!(
            "{what} ({}) expires on {}, within {EXPIRY_WARNING_DAYS} days",
            certificate.short_fingerprint(),
            certificate.expiry_date()
        )
    } else {
        return;
    };
    plan.notes.push(Note {
        address: address.to_owned(),
        message,
    });
}

/// What the live files would be after `action` ran (for the property
/// tests): the spec's certificate, or a generated one valid for its names.
pub fn simulate(next: &mut Deployment, action: &Action) {
    for step in &action.steps {
        let Step::Docker(DockerStep::WriteTls { source, .. }) = step else {
            continue;
        };
        let tls = next.tls.get_or_insert_with(Tls::default);
        tls.installed = match source.as_ref() {
            TlsSource::Files { .. } => tls.wanted.clone(),
            TlsSource::SelfSigned { names } => Some(TlsFiles {
                certificate: CertificateInfo {
                    fingerprint: "simulated".to_owned(),
                    subject: "CN=simulated".to_owned(),
                    names: names.clone(),
                    ..CertificateInfo::default()
                },
                ca: None,
                key_ok: true,
            }),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Container;
    use crate::secret::Secret;

    fn certificate(fingerprint: &str, names: &[&str]) -> CertificateInfo {
        CertificateInfo {
            fingerprint: fingerprint.repeat(8),
            subject: "CN=db".to_owned(),
            names: names.iter().map(|name| (*name).to_owned()).collect(),
            not_after: 1_900_000_000,
            ..CertificateInfo::default()
        }
    }

    fn deployment(source: TlsSource) -> Deployment {
        Deployment {
            name: "x".to_owned(),
            container: Some(Container {
                name: "x-postgres".to_owned(),
                ..Container::default()
            }),
            tls: Some(Tls {
                source: Some(source),
                ..Tls::default()
            }),
            ..Deployment::default()
        }
    }

    fn live(installed: Option<TlsFiles>, wanted: Option<TlsFiles>) -> Deployment {
        Deployment {
            name: "x".to_owned(),
            tls: Some(Tls {
                installed,
                wanted,
                ..Tls::default()
            }),
            ..Deployment::default()
        }
    }

    fn files(certificate: CertificateInfo) -> TlsFiles {
        TlsFiles {
            certificate,
            ca: None,
            key_ok: true,
        }
    }

    fn from_files() -> TlsSource {
        TlsSource::Files {
            certificate: Secret::env("CERT"),
            key: Secret::env("KEY"),
            ca: None,
        }
    }

    #[test]
    fn a_changed_certificate_is_written_and_reloaded_by_fingerprint() {
        let mut plan = Plan::default();
        let have = files(certificate("aa", &["db"]));
        let wanted = files(certificate("bb", &["db"]));
        diff(
            &deployment(from_files()),
            &live(Some(have.clone()), Some(wanted.clone())),
            &mut plan,
        );
        let [action] = plan.actions.as_slice() else {
            panic!("{plan:?}")
        };
        assert_eq!(action.address, "tls.x-postgres");
        assert_eq!(action.kind, ActionKind::Update);
        assert!(!action.risk.restart);
        assert!(action.changes[0].old.as_deref().is_some_and(|old| {
            old.starts_with("SHA256:aaaaaaaaaaaaaaaa CN=db (expires 2030-03-17)")
        }));
        assert!(
            matches!(action.steps.last(), Some(Step::Sql { statements, .. })
            if statements == &["SELECT pg_reload_conf()"])
        );

        let mut plan = Plan::default();
        diff(
            &deployment(from_files()),
            &live(Some(wanted.clone()), Some(wanted)),
            &mut plan,
        );
        assert!(plan.actions.is_empty(), "{plan:?}");
    }

    #[test]
    fn a_generated_certificate_is_issued_again_for_new_names_or_near_its_expiry() {
        let source = TlsSource::SelfSigned {
            names: vec!["x-postgres".to_owned(), "localhost".to_owned()],
        };
        let covering = certificate("aa", &["localhost", "x-postgres"]);
        let mut plan = Plan::default();
        diff(
            &deployment(source.clone()),
            &live(Some(files(covering.clone())), None),
            &mut plan,
        );
        assert!(plan.actions.is_empty(), "{plan:?}");

        for have in [
            certificate("aa", &["localhost"]),
            CertificateInfo {
                expires_soon: true,
                ..covering
            },
        ] {
            let mut plan = Plan::default();
            diff(
                &deployment(source.clone()),
                &live(Some(files(have)), None),
                &mut plan,
            );
            assert_eq!(plan.actions.len(), 1, "{plan:?}");
            assert_eq!(plan.actions[0].kind, ActionKind::Update);
        }
    }

    #[test]
    fn a_certificate_from_files_near_its_expiry_is_a_note() {
        let soon = CertificateInfo {
            expires_soon: true,
            ..certificate("aa", &["db"])
        };
        let mut plan = Plan::default();
        diff(
            &deployment(from_files()),
            &live(Some(files(soon.clone())), Some(files(soon))),
            &mut plan,
        );
        assert!(plan.actions.is_empty());
        assert_eq!(
            plan.notes[0].message,
            "the spec's certificate (SHA256:aaaaaaaaaaaaaaaa) expires on 2030-03-17, within 30 days"
        );
    }
}
