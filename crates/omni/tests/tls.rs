//! HTTPS end to end: the real `omni` with `--tls-cert/--tls-key`, the real
//! `omnictl` with `--ca-cert`, over a real rustls handshake.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::*;

struct TlsOmni {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    ca: PathBuf,
    token: String,
}

impl Drop for TlsOmni {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsOmni {
    async fn start() -> TlsOmni {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        let (ca, cert, key) = omni_testkit::write_server_certs(&certs).unwrap();
        let port = omni_testkit::free_port().unwrap();
        let log = std::fs::File::create(dir.path().join("omni.log")).unwrap();
        let child = Command::new(omni_bin())
            .args(["--state", "memory", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--bind", &format!("127.0.0.1:{port}"), "--tls-cert"])
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut omni = TlsOmni {
            child,
            port,
            dir,
            ca,
            token: String::new(),
        };
        let token_path = omni.dir.path().join("data/admin-token");
        let token = eventually("the admin token", || {
            std::fs::read_to_string(&token_path)
                .ok()
                .filter(|t| !t.trim().is_empty())
        })
        .await;
        omni.token = token.trim().to_string();
        let tls = omni_client::TlsOptions {
            ca_cert_pem: Some(std::fs::read(&omni.ca).unwrap()),
            insecure_skip_verify: false,
        };
        let client =
            omni_client::Client::with_tls(&omni.endpoint(), Some(omni.token.clone()), &tls)
                .unwrap();
        omni_testkit::wait_until(WAIT, || {
            let client = client.clone();
            async move {
                client
                    .list("Clusters.omni.sidero.dev", "default", None)
                    .await
                    .is_ok()
            }
        })
        .await
        .unwrap_or_else(|_| panic!("omni (TLS) not ready: {}", omni.log()));
        omni
    }

    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("omni.log")).unwrap_or_default()
    }

    fn ctl(&self, endpoint: &str, env: &[(&str, &Path)], args: &[&str]) -> Output {
        let mut cmd = Command::new(omnictl_bin());
        cmd.args(args)
            .env("OMNICTL_ENDPOINT", endpoint)
            .env("OMNICTL_TOKEN", &self.token)
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env_remove("OMNICTL_CA_CERT")
            .env_remove("OMNICTL_INSECURE_SKIP_TLS_VERIFY")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

const CLUSTER: &str = "metadata:\n  type: cluster\n  id: c1\nspec: {}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_right_ca_works_and_everything_else_fails_clearly() {
    let omni = TlsOmni::start().await;
    let https = omni.endpoint();
    let ca = path_str(&omni.ca).to_string();
    let manifest = omni.dir.path().join("c1.yaml");
    std::fs::write(&manifest, CLUSTER).unwrap();

    // The right CA, by flag: a write and a read go through.
    let out = omni.ctl(
        &https,
        &[],
        &["--ca-cert", &ca, "apply", "-f", path_str(&manifest)],
    );
    assert!(out.status.success(), "{}\n{}", stderr(&out), omni.log());
    let out = omni.ctl(&https, &[], &["get", "cluster", "c1", "--ca-cert", &ca]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("c1"), "{}", stdout(&out));
    // ... and by environment.
    let out = omni.ctl(
        &https,
        &[("OMNICTL_CA_CERT", &omni.ca)],
        &["get", "cluster", "c1"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // Another CA, or the system roots: refused, with a sentence, not an enum dump.
    let other = omni.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (wrong_ca, _, _) = omni_testkit::write_server_certs(&other).unwrap();
    for extra in [vec!["--ca-cert", path_str(&wrong_ca)], vec![]] {
        let mut args = vec!["get", "cluster"];
        args.extend(extra.iter().copied());
        let out = omni.ctl(&https, &[], &args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} accepted");
        assert!(err.starts_with("error: "), "{err}");
        assert!(
            err.contains("not signed by a trusted CA"),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("UnknownIssuer") && !err.contains("BadSignature"),
            "{err}"
        );
    }

    // Skipping verification works, on request only.
    let out = omni.ctl(
        &https,
        &[],
        &["get", "cluster", "c1", "--insecure-skip-tls-verify"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // Plain HTTP to the TLS port: told to use https.
    let http = format!("http://127.0.0.1:{}", omni.port);
    let out = omni.ctl(&http, &[], &["get", "cluster"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("this port serves HTTPS"),
        "{}",
        stderr(&out)
    );

    // A CA file that holds no certificate is named.
    let junk = omni.dir.path().join("junk.pem");
    std::fs::write(&junk, "hello").unwrap();
    let out = omni.ctl(
        &https,
        &[],
        &["get", "cluster", "--ca-cert", path_str(&junk)],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid CA certificate"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contexts_carry_endpoint_token_and_ca() {
    let omni = TlsOmni::start().await;
    let config = omni.dir.path().join("omnictl.yaml");
    let cfg = path_str(&config).to_string();
    let ca = path_str(&omni.ca).to_string();
    // No endpoint or token in the environment: only the context supplies them.
    let ctl = |args: &[&str]| {
        Command::new(omnictl_bin())
            .args(args)
            .args(["--config", &cfg])
            .env_remove("OMNICTL_ENDPOINT")
            .env_remove("OMNICTL_TOKEN")
            .env_remove("OMNICTL_CONTEXT")
            .env("HOME", omni.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let out = ctl(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    // A pre-context file (top-level endpoint) keeps working as the fallback.
    std::fs::write(&config, "endpoint: http://127.0.0.1:1\n").unwrap();
    ok(&[
        "config",
        "add-context",
        "tls",
        "--endpoint",
        &omni.endpoint(),
        "--token",
        &omni.token,
        "--ca-cert",
        &ca,
    ]);
    ok(&[
        "config",
        "add-context",
        "broken",
        "--endpoint",
        "http://127.0.0.1:1",
    ]);
    let out = ctl(&["get", "cluster"]);
    assert!(
        !out.status.success(),
        "the top-level endpoint is a dead port"
    );
    ok(&["get", "cluster", "--context", "tls"]);
    ok(&["config", "use-context", "tls"]);
    ok(&["get", "cluster"]);
    let listed = ok(&["config", "contexts"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with('*') && l.contains("tls")),
        "{listed}"
    );
    assert!(listed.contains("broken"), "{listed}");
    let shown = ok(&["config", "show"]);
    assert!(!shown.contains(&omni.token), "token leaked: {shown}");
    let out = ctl(&["config", "use-context", "nope"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("\"nope\""), "{}", stderr(&out));
    let out = ctl(&["get", "cluster", "--context", "broken"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("127.0.0.1:1"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_client_against_plain_server_and_public_plain_bind() {
    let plain = Omni::start(&["--state", "memory"]).await;
    let https = format!("https://127.0.0.1:{}", plain.port);
    let out = plain.ctl(&["get", "cluster", "--endpoint", &https]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("did not answer with TLS"),
        "{}",
        stderr(&out)
    );

    // Plain HTTP on a non-loopback address needs --insecure-http.
    let dir = tempfile::tempdir().unwrap();
    let port = omni_testkit::free_port().unwrap();
    let out = Command::new(omni_bin())
        .args(["--state", "memory", "--data-dir"])
        .arg(dir.path())
        .args(["--bind", &format!("0.0.0.0:{port}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--insecure-http") && err.contains("--tls-cert"),
        "{err}"
    );
    assert!(
        !dir.path().join("admin-token").exists(),
        "a refused start must not initialise the data dir"
    );
}
