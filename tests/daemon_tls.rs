//! `kiln serve` and TLS, as processes: plain HTTP on a non-loopback address
//! is refused; with a certificate from a private CA (made here with the
//! openssl CLI) the CLI connects with `--cacert` and fails without it.

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_kiln");

/// A project with only the repository's daemon config (dev tokens).
fn project() -> tempfile::TempDir {
    support::services();
    let dir = tempfile::tempdir().unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["config", "recipes"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    std::fs::copy(
        repo.join("deploy/kiln.yaml"),
        dir.path().join("config/kiln.yaml"),
    )
    .unwrap();
    dir
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl req -x509`: a self-signed P-256 certificate `NAME.pem` and its
/// key `NAME.key` in `dir` (marked as a CA, as openssl does by default).
fn self_signed(dir: &Path, name: &str, subject: &str, extra: &[&str]) {
    let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-out",
        &pem,
        "-days",
        "1",
        "-subj",
        subject,
    ];
    args.extend_from_slice(extra);
    openssl(dir, &args);
}

/// A self-signed CA (`ca.pem`) and a server certificate for 127.0.0.1 and
/// localhost signed by it (`server.pem`, `server.key`), in `dir`.
fn certificates(dir: &Path) {
    self_signed(dir, "ca", "/CN=kiln test CA", &[]);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=kiln test daemon",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "server.ext",
        ],
    );
}

/// A daemon process, killed when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `kiln serve ARGS…`; returns it and the port it listens on.
fn serve(dir: &Path, args: &[&str]) -> (Daemon, u16) {
    let mut child = Command::new(BIN)
        .args(["--project", dir.to_str().unwrap(), "serve"])
        .args(args)
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("daemon exited before listening")
            .unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
            let port = addr.rsplit(':').next().unwrap();
            break port
                .trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .unwrap();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (Daemon(child), port)
}

/// `kiln runs --json` against `server`, with `--cacert` when given.
fn runs(server: &str, cacert: Option<&Path>) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.args(["runs", "--json", "--server", server])
        .env("KILN_TOKEN", "kiln-dev-reader")
        .env_remove("KILN_CACERT");
    if let Some(ca) = cacert {
        c.arg("--cacert").arg(ca);
    }
    c.output().unwrap()
}

#[test]
fn plain_http_off_loopback_is_refused() {
    let dir = project();
    let out = Command::new(BIN)
        .args(["--project", dir.path().to_str().unwrap()])
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without TLS") && err.contains("--tls-cert"),
        "{err}"
    );
}

#[test]
fn the_cli_connects_over_tls_with_cacert_and_fails_without() {
    let dir = project();
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let cert = certs.path().join("server.pem");
    let key = certs.path().join("server.key");
    let (_daemon, port) = serve(
        dir.path(),
        &[
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let https = format!("https://127.0.0.1:{port}");
    let ok = runs(&https, Some(&certs.path().join("ca.pem")));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(list, serde_json::json!([]));

    let untrusted = runs(&https, None);
    assert!(!untrusted.status.success());
    // Under --json the error is the JSON document on stdout.
    let answer: serde_json::Value = serde_json::from_slice(&untrusted.stdout).unwrap();
    assert!(
        answer.to_string().contains("cannot reach the kiln daemon"),
        "{answer}"
    );

    let cookie = login_cookie_over_tls(&https, &certs.path().join("ca.pem"));
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("; Secure"),
        "{cookie}"
    );

    let plain = runs(&format!("http://127.0.0.1:{port}"), None);
    assert!(
        !plain.status.success(),
        "plain HTTP answered on the TLS port"
    );

    // The wrong CA is refused too, and a file without certificates is named.
    let wrong = runs(&https, Some(&cert));
    assert!(!wrong.status.success());
    let empty = certs.path().join("server.ext");
    let bad = runs(&https, Some(&empty));
    assert!(!bad.status.success());
    // Under --json the error is the JSON document on stdout.
    let said = String::from_utf8_lossy(&bad.stdout);
    assert!(said.contains("server.ext"), "{said}");
}

/// The status page's CSRF cookie as a TLS daemon sets it.
fn login_cookie_over_tls(https: &str, ca: &Path) -> String {
    let pem = std::fs::read(ca).unwrap();
    let cert = reqwest::Certificate::from_pem(&pem).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let http = reqwest::Client::builder()
            .tls_certs_only([cert])
            .build()
            .unwrap();
        let resp = http.get(format!("{https}/ui/login")).send().await.unwrap();
        assert!(resp.status().is_success());
        resp.headers()["set-cookie"].to_str().unwrap().to_string()
    })
}

/// `openssl req -x509` marks its certificate as a CA, which TLS clients
/// refuse as a server's own: the CLI says so once, with the fix, and no
/// TLS library log line is printed besides.
#[test]
fn a_ca_certificate_served_as_the_daemons_own_is_named_with_the_fix() {
    let dir = project();
    let certs = tempfile::tempdir().unwrap();
    let san = ["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"];
    self_signed(certs.path(), "self", "/CN=localhost", &san);
    let (cert, key) = (certs.path().join("self.pem"), certs.path().join("self.key"));
    let tls = [
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    let (_daemon, port) = serve(dir.path(), &tls);
    let out = Command::new(BIN)
        .args(["runs", "--server", &format!("https://127.0.0.1:{port}")])
        .arg("--cacert")
        .arg(&cert)
        .env("KILN_TOKEN", "kiln-dev-reader")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("presents a CA certificate") && err.contains("CA:FALSE"),
        "{err}"
    );
    assert!(!err.contains("ERROR"), "{err}");
}
