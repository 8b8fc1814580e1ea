//! `kiln … serve --listen 127.0.0.1:0` as a separate process: started, its
//! URL read from the "listening on" line, killed when dropped.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};

/// A daemon process, killed when dropped (a failing test leaves none behind).
pub struct Daemon(pub Child);

impl Daemon {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILL, like a crash.
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()?;
        self.0.wait().map(drop)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `kiln ARGS… serve --listen 127.0.0.1:0`; returns the daemon and its URL.
pub fn serve(args: &[&std::ffi::OsStr]) -> (Daemon, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let daemon = Daemon(child);
    let url = loop {
        let line = lines
            .next()
            .expect("daemon exited before listening")
            .unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
            let addr = addr.trim_end_matches(|c: char| !c.is_ascii_digit());
            break format!("http://{addr}");
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (daemon, url)
}

/// Runs `kiln --project DIR serve --listen 127.0.0.1:0`.
pub fn serve_project(dir: &std::path::Path) -> (Daemon, String) {
    serve(&["--project".as_ref(), dir.as_os_str()])
}
