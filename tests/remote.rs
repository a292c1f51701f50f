//! Remote engines and fleets, on this machine: a second dockerd listening
//! on a loopback TCP port with TLS (certificates made here), driven by
//! DOCKER_HOST, by a docker context and by `postgres.engine`; the main
//! engine reached over SSH (Debian's sshd on a loopback port, with a key
//! made here) with `ssh://`; and a directory of three specs on the two
//! engines planned, applied and drift-checked with one summary.
//!
//! One scenario on one PostgreSQL major version: the second engine needs
//! the test image loaded, and CI time is short.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cleanup, Workdir, arg, free_port, pgspec, postgres_image, unique_name};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

const PASSWORD_ENV: &str = "PGSPEC_IT_REMOTE_PASSWORD";
const MAJOR: u32 = 17;
/// The SSH engine's host name, an alias in the test's ssh configuration.
const SSH_HOST: &str = "pgspec-test-ssh-engine";

/// A CA and what it signs, PEM.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("CA").pem();
        Ca {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    fn issue(&self, server: bool) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        if server {
            params.subject_alt_names = vec![
                SanType::IpAddress("127.0.0.1".parse().expect("address")),
                SanType::DnsName("localhost".try_into().expect("name")),
            ];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params
                .distinguished_name
                .push(DnType::CommonName, "pgspec test engine");
        } else {
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params
                .distinguished_name
                .push(DnType::CommonName, "pgspec test client");
        }
        let certificate = params.signed_by(&key, &self.issuer).expect("certificate");
        (certificate.pem(), key.serialize_pem())
    }

    /// ca.pem, cert.pem and key.pem of a client in `dir`.
    fn client_files(&self, dir: &Path) {
        std::fs::create_dir_all(dir).expect("client dir");
        let (cert, key) = self.issue(false);
        std::fs::write(dir.join("ca.pem"), &self.pem).expect("ca.pem");
        std::fs::write(dir.join("cert.pem"), cert).expect("cert.pem");
        std::fs::write(dir.join("key.pem"), key).expect("key.pem");
    }
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what} not ready within {limit:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A second dockerd: its own data root, exec root, pid file and socket in
/// a temporary directory, a bridge of its own (never `--bridge none`, with
/// which dockerd deletes `docker0`, the main engine's bridge), no iptables,
/// an address pool of its own, and a TLS listener on a loopback port.
/// Stopped and removed, with its bridge, when dropped.
struct SecondEngine {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    bridge: String,
}

/// Runs `ip ARGS`, failing the test when it fails.
fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("ip (iproute2)");
    assert!(status.success(), "ip {args:?}");
}

impl SecondEngine {
    fn start(ca: &Ca) -> SecondEngine {
        // Short: the unix sockets under it have a path length limit.
        let dir = tempfile::Builder::new()
            .prefix("pgs")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let root = dir.path();
        let (cert, key) = ca.issue(true);
        std::fs::write(root.join("ca.pem"), &ca.pem).expect("ca");
        std::fs::write(root.join("server-cert.pem"), cert).expect("cert");
        std::fs::write(root.join("server-key.pem"), key).expect("key");
        let port = free_port();
        let pid = std::process::id();
        let bridge = format!("pgspec{}", pid % 100_000);
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("10.213.{}.1/24", pid % 250),
            "dev",
            &bridge,
        ]);
        ip(&["link", "set", &bridge, "up"]);
        let log = std::fs::File::create(root.join("dockerd.log")).expect("log");
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", root.join("sock").display()))
            .arg("-H")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .args(["--tlsverify", "--tlscacert"])
            .arg(root.join("ca.pem"))
            .arg("--tlscert")
            .arg(root.join("server-cert.pem"))
            .arg("--tlskey")
            .arg(root.join("server-key.pem"))
            .arg("--bridge")
            .arg(&bridge)
            .args([
                "--iptables=false",
                "--ip-masq=false",
                "--default-address-pool",
                "base=10.214.0.0/16,size=24",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start a second dockerd (Debian's docker.io)");
        let engine = SecondEngine {
            dir,
            child,
            port,
            bridge,
        };
        let socket = engine.socket();
        wait_for("the second dockerd", Duration::from_secs(60), || {
            Command::new("docker")
                .args(["-H", &socket, "version"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        });
        engine
    }

    fn socket(&self) -> String {
        format!("unix://{}", self.dir.path().join("sock").display())
    }

    fn tcp(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// The test image, saved from the main engine and loaded here.
    fn load_image(&self, image: &str) {
        let present = Command::new("docker")
            .args(["-H", &self.socket(), "image", "inspect", image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if present {
            return;
        }
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker save {image} | docker -H {} load -q",
                self.socket()
            ))
            .stdout(Stdio::null())
            .status()
            .expect("docker save | load");
        assert!(status.success(), "loading {image} into the second engine");
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        // Containers first, then the daemon (SIGTERM), then its files.
        let socket = self.socket();
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker -H {socket} ps -aq | xargs -r docker -H {socket} rm -f -v"
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // SAFETY: kill(2) on the child this test started.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Mounts the daemon may have left under its roots.
        let root = self.dir.path().display().to_string();
        if let Ok(mounts) = std::fs::read_to_string("/proc/mounts") {
            let mut points: Vec<&str> = mounts
                .lines()
                .filter_map(|line| line.split(' ').nth(1))
                .filter(|point| point.starts_with(&root))
                .collect();
            points.sort_by_key(|point| std::cmp::Reverse(point.len()));
            for point in points {
                let _ = Command::new("umount").arg("-l").arg(point).status();
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

/// Debian's sshd on a loopback port, as a child process with its own
/// configuration, host key and authorized key; an `ssh` wrapper first on
/// PATH points the client at the test's key and known-hosts file.
struct SshServer {
    dir: tempfile::TempDir,
    child: Child,
}

impl SshServer {
    fn start() -> SshServer {
        let port = free_port();
        let dir = tempfile::Builder::new()
            .prefix("pgssh")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let root = dir.path();
        for key in ["host_key", "id"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(root.join(key))
                .status()
                .expect("ssh-keygen (openssh-client)");
            assert!(status.success());
        }
        std::fs::copy(root.join("id.pub"), root.join("authorized_keys")).expect("authorized");
        let root_text = root.display();
        std::fs::write(
            root.join("sshd_config"),
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {root_text}/host_key\n\
                 AuthorizedKeysFile {root_text}/authorized_keys\nStrictModes no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nUsePAM no\nAllowTcpForwarding yes\n\
                 PidFile {root_text}/sshd.pid\n"
            ),
        )
        .expect("sshd_config");
        std::fs::write(
            root.join("ssh_config"),
            format!(
                "Host {SSH_HOST}\n  HostName 127.0.0.1\n  Port {port}\n\
                 Host *\n  IdentityFile {root_text}/id\n  IdentitiesOnly yes\n  \
                 UserKnownHostsFile {root_text}/known_hosts\n  StrictHostKeyChecking no\n  \
                 LogLevel ERROR\n"
            ),
        )
        .expect("ssh_config");
        std::fs::create_dir_all(root.join("bin")).expect("bin");
        let wrapper = root.join("bin/ssh");
        std::fs::write(
            &wrapper,
            format!("#!/bin/sh\nexec /usr/bin/ssh -F {root_text}/ssh_config \"$@\"\n"),
        )
        .expect("ssh wrapper");
        let mut permissions = std::fs::metadata(&wrapper).expect("wrapper").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&wrapper, permissions).expect("chmod");
        // sshd's privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(root.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("sshd.log")).expect("log"))
            .spawn()
            .expect("start sshd (scripts/test-env.sh installs openssh-server)");
        let server = SshServer { dir, child };
        wait_for("sshd", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        server
    }

    fn url(&self) -> String {
        // The port is in the client's configuration, under this host name.
        format!("ssh://root@{SSH_HOST}")
    }

    /// PATH with the ssh wrapper first.
    fn path(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A docker CLI configuration directory whose current context is the
/// second engine, with its TLS files where the CLI keeps them.
fn context_config(dir: &Path, name: &str, host: &str, ca: &Ca) -> PathBuf {
    use sha2::Digest;
    let id = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    let meta = dir.join("contexts/meta").join(&id);
    std::fs::create_dir_all(&meta).expect("meta dir");
    std::fs::write(
        meta.join("meta.json"),
        format!(
            r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#
        ),
    )
    .expect("meta.json");
    ca.client_files(&dir.join("contexts/tls").join(&id).join("docker"));
    std::fs::write(
        dir.join("config.json"),
        format!(r#"{{"currentContext":"{name}"}}"#),
    )
    .expect("config.json");
    dir.to_owned()
}

fn spec(name: &str, port: u16, engine: Option<&str>, roles: &str) -> String {
    let engine = engine.map_or(String::new(), |engine| format!("  engine: {engine}\n"));
    format!(
        "version: 1\nname: {name}\npostgres:\n  image: {}\n  port: {port}\n{engine}  \
         superuser: {{ password: {{ env: {PASSWORD_ENV} }} }}\n{roles}\
         databases:\n  - name: app\n",
        postgres_image(MAJOR)
    )
}

fn cleanup_for(names: &[&str]) -> Cleanup {
    let mut cleanup = Cleanup::default();
    for name in names {
        cleanup.containers.push(format!("{name}-postgres"));
        cleanup.volumes.push(format!("{name}-pgdata"));
        cleanup.networks.push(format!("{name}-net"));
    }
    cleanup
}

#[test]
fn remote_engines_over_tls_and_ssh_and_a_fleet() {
    let main_bridge = Path::new("/sys/class/net/docker0").exists();
    let ca = Ca::new("pgspec test engine CA");
    let engine = SecondEngine::start(&ca);
    engine.load_image(&postgres_image(MAJOR));
    let ssh = SshServer::start();
    let work = Workdir::new();
    let client = work.path("client");
    ca.client_files(&client);
    let empty_config = work.path("docker-config");
    std::fs::create_dir_all(&empty_config).expect("config dir");
    let password = format!("pw-{}", unique_name("secret"));

    let tls_name = unique_name("tls");
    let ssh_name = unique_name("ssh");
    let local_name = unique_name("local");
    // The TLS engine's objects go with the engine; the main engine's here.
    let _cleanup = cleanup_for(&[&ssh_name, &local_name]);
    let tls_port = free_port();
    let path = ssh.path();
    let base: Vec<(&str, &str)> = vec![
        (PASSWORD_ENV, password.as_str()),
        ("DOCKER_CONFIG", arg(&empty_config)),
        ("PATH", path.as_str()),
    ];
    let with = |extra: &[(&'static str, &str)]| -> Vec<(&str, String)> {
        base.iter()
            .map(|(name, value)| (*name, (*value).to_owned()))
            .chain(
                extra
                    .iter()
                    .map(|(name, value)| (*name, (*value).to_owned())),
            )
            .collect()
    };
    let run = |args: &[&str], env: &[(&str, String)]| {
        let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
        pgspec(args, &env)
    };
    let tcp = engine.tcp();

    // DOCKER_HOST with TLS: apply on the second engine.
    let single = work.write("single.yaml", &spec(&tls_name, tls_port, None, ""));
    let tls_env = with(&[
        ("DOCKER_HOST", &tcp),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", arg(&client)),
    ]);
    run(&["apply", "--auto-approve", "-f", arg(&single)], &tls_env).expect(0);
    let listed = Command::new("docker")
        .args(["-H", &engine.socket(), "ps", "--format", "{{.Names}}"])
        .output()
        .expect("docker ps");
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(&format!("{tls_name}-postgres")),
        "the container runs on the second engine"
    );

    // A wrong certificate: a clear error naming the engine and the files.
    let wrong = work.path("wrong");
    Ca::new("another CA").client_files(&wrong);
    let wrong_env = with(&[
        ("DOCKER_HOST", &tcp),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", arg(&wrong)),
    ]);
    let refused = run(&["drift", "-f", arg(&single)], &wrong_env).expect(1);
    assert!(
        refused.stderr.contains(&tcp) && refused.stderr.contains("ca.pem"),
        "{}",
        refused.stderr
    );

    // The current docker context of a CLI configuration.
    let contexts = context_config(&work.path("contexts"), "pgspec-second", &tcp, &ca);
    let context_env = with(&[("DOCKER_CONFIG", arg(&contexts))]);
    run(&["drift", "-f", arg(&single)], &context_env).expect(0);
    let missing = run(
        &["drift", "-f", arg(&single)],
        &with(&[("DOCKER_CONTEXT", "pgspec-nowhere")]),
    )
    .expect(1);
    assert!(
        missing.stderr.contains("docker context `pgspec-nowhere`")
            && missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );

    // A fleet: the TLS engine named in the spec, the main engine over SSH,
    // and the main engine through its socket.
    let fleet = work.path("fleet");
    std::fs::create_dir_all(&fleet).expect("fleet dir");
    let ssh_url = ssh.url();
    let write = |file: &str, text: String| std::fs::write(fleet.join(file), text).expect("spec");
    write("a-tls.yaml", spec(&tls_name, tls_port, Some(&tcp), ""));
    write(
        "b-ssh.yaml",
        spec(&ssh_name, free_port(), Some(&ssh_url), ""),
    );
    let local_port = free_port();
    write("c-local.yaml", spec(&local_name, local_port, None, ""));
    let fleet_env = with(&[
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", arg(&client)),
    ]);
    let dir = arg(&fleet);
    let planned = run(&["plan", "--detailed-exitcode", "-f", dir], &fleet_env).expect(2);
    assert!(
        planned.stdout.contains("Summary (3 deployments)"),
        "{}",
        planned.stdout
    );
    let summary = |out: &str, name: &str| {
        out.lines()
            .find(|line| line.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no summary line for {name} in\n{out}"))
            .to_owned()
    };
    assert!(summary(&planned.stdout, &tls_name).contains("ok"));
    assert!(summary(&planned.stdout, &ssh_name).contains("changes pending"));
    assert!(summary(&planned.stdout, &ssh_name).contains(&ssh_url));
    run(&["apply", "--auto-approve", "-f", dir], &fleet_env).expect(0);
    let over_ssh = run(&["drift", "-f", arg(&fleet.join("b-ssh.yaml"))], &fleet_env).expect(0);
    assert!(
        over_ssh.stdout.contains("note: engine: ssh://root@")
            && over_ssh.stdout.contains("through an SSH tunnel"),
        "{}",
        over_ssh.stdout
    );
    let synced = run(&["drift", "-f", dir], &fleet_env).expect(0);
    assert_eq!(
        synced.stdout.matches("in sync").count(),
        3,
        "{}",
        synced.stdout
    );

    // Drift on one deployment: exit 2, one entry per deployment in JSON.
    write(
        "c-local.yaml",
        spec(
            &local_name,
            local_port,
            None,
            "roles:\n  - { name: reporter, login: false }\n",
        ),
    );
    let drifted = run(&["drift", "--json", "-f", dir], &fleet_env).expect(2);
    let document: serde_json::Value =
        serde_json::from_str(&drifted.stdout).expect("one JSON document");
    let entries = document["deployments"].as_array().expect("deployments");
    assert_eq!(entries.len(), 3);
    let outcomes: Vec<&str> = entries
        .iter()
        .map(|entry| entry["outcome"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(outcomes, ["in sync", "in sync", "drift"]);
    assert!(entries[2]["plan"].is_object());

    // Two specs claiming the same container on one engine.
    write("d-clash.yaml", spec(&local_name, free_port(), None, ""));
    let clash = run(&["validate", "-f", dir], &fleet_env).expect(1);
    assert!(
        clash.stderr.contains("c-local.yaml and") && clash.stderr.contains("d-clash.yaml"),
        "{}",
        clash.stderr
    );

    // The second engine leaves the main engine's bridge alone.
    drop(engine);
    assert_eq!(
        Path::new("/sys/class/net/docker0").exists(),
        main_bridge,
        "docker0 after the second engine stopped"
    );
}
