use super::*;

fn environment(config: &Path) -> Environment {
    Environment {
        config_dir: Some(config.to_owned()),
        ..Environment::default()
    }
}

fn write_context(config: &Path, name: &str, host: &str, tls: bool) {
    let id = context_id(name);
    let meta = config.join("contexts/meta").join(&id);
    std::fs::create_dir_all(&meta).unwrap();
    let json = serde_json::json!({
        "Name": name,
        "Metadata": {},
        "Endpoints": { "docker": { "Host": host, "SkipTLSVerify": false } }
    });
    std::fs::write(meta.join("meta.json"), json.to_string()).unwrap();
    if tls {
        let dir = config.join("contexts/tls").join(&id).join("docker");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), "").unwrap();
    }
}

#[test]
fn the_context_id_is_the_sha256_of_its_name() {
    assert_eq!(
        context_id("default"),
        "37a8eec1ce19687d132fe29051dca629d164e2c4958ba141d5f4133a33f0688f"
    );
}

#[test]
fn precedence_follows_the_docker_cli() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path();
    write_context(config, "remote", "tcp://db1.internal:2376", true);
    write_context(config, "other", "ssh://deploy@db2", false);
    std::fs::write(config.join("config.json"), r#"{"currentContext":"remote"}"#).unwrap();
    let mut env = environment(config);

    let current = choose(None, &env).unwrap();
    assert_eq!(current.host, "tcp://db1.internal:2376");
    assert_eq!(current.source, "docker context `remote`");
    let tls = current.tls.clone().unwrap();
    assert!(tls.ca.ends_with("docker/ca.pem") && tls.key.ends_with("docker/key.pem"));
    assert_eq!(current.route(), Route::Host("db1.internal".to_owned()));

    env.docker_context = Some("other".to_owned());
    let context = choose(None, &env).unwrap();
    assert_eq!(
        (context.host.as_str(), context.tls.is_none()),
        ("ssh://deploy@db2", true)
    );

    env.docker_host = Some("tcp://127.0.0.1:2376".to_owned());
    env.tls_verify = true;
    env.cert_path = Some(PathBuf::from("/certs"));
    let host = choose(None, &env).unwrap();
    assert_eq!(host.source, "DOCKER_HOST");
    assert_eq!(
        host.tls.clone().unwrap().cert,
        PathBuf::from("/certs/cert.pem")
    );
    assert_eq!(host.route(), Route::Local);

    let spec = choose(Some("ssh://deploy@db1.internal"), &env).unwrap();
    assert_eq!(spec.source, "the spec's postgres.engine");
    assert!(matches!(spec.route(), Route::Ssh(d) if d.host == "db1.internal"));
    let named = choose(Some("remote"), &env).unwrap();
    assert_eq!(named.host, "tcp://db1.internal:2376");
}

#[test]
fn a_missing_context_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = environment(dir.path());
    env.docker_context = Some("nowhere".to_owned());
    let error = choose(None, &env).unwrap_err().to_string();
    assert!(
        error.contains("docker context `nowhere` (DOCKER_CONTEXT) does not exist"),
        "{error}"
    );
    let error = choose(Some("ftp://x"), &env).unwrap_err().to_string();
    assert!(error.contains("engine `ftp://x`"), "{error}");
    let error = choose(Some("ssh://db1:2222"), &env)
        .unwrap_err()
        .to_string();
    assert!(error.contains("takes no port"), "{error}");
}

#[test]
fn without_anything_the_local_socket() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = choose(None, &environment(dir.path())).unwrap();
    assert_eq!(endpoint.host, "unix:///var/run/docker.sock");
    assert_eq!(endpoint.route(), Route::Local);
}
