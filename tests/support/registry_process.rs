//! Extra `docker-registry` instances on free loopback ports, e.g. one behind
//! htpasswd basic auth. Killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RegistryProcess {
    pub host: String,
    child: Child,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(config: &std::path::Path, host: &str) -> Child {
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting /usr/bin/docker-registry");
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(host).is_err() {
        assert!(
            Instant::now() < deadline,
            "registry on {host} did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

impl RegistryProcess {
    /// Starts a registry requiring `user`/`pass` (bcrypt htpasswd).
    pub fn start_with_htpasswd(user: &str, pass: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("/usr/bin/htpasswd")
            .args(["-Bbn", user, pass])
            .output()
            .expect("running htpasswd");
        assert!(out.status.success(), "htpasswd failed");
        std::fs::write(dir.path().join("htpasswd"), &out.stdout).unwrap();
        let auth = format!(
            "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}/htpasswd\n",
            dir.path().display()
        );
        Self::start_in(dir, &auth)
    }

    /// Starts a plain-HTTP registry without auth, with its own storage.
    pub fn start_plain() -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), "")
    }

    /// Starts a registry storing in `dir`, with `extra` config appended.
    fn start_in(dir: tempfile::TempDir, extra: &str) -> Self {
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}",
            root = dir.path().display()
        );
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let host = format!("127.0.0.1:{port}");
        let child = spawn(&cfg, &host);
        RegistryProcess {
            host,
            child,
            config: cfg,
            _dir: dir,
        }
    }

    /// Kills the process (SIGKILL), like a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(&self.config, &self.host);
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
