//! File tests through the archive API, as container-structure-test's docker
//! driver does them: on a container created from the image and never
//! started (so no shell is needed, and nothing the entrypoint does at run
//! time changes what is seen). `fileExistenceTests` see a symlink itself;
//! `fileContentTests` and licence files follow it. `licenseTests` check
//! Debian's `/usr/share/doc/*/copyright` files (and any listed files) for the
//! licences CST refuses.

use std::collections::HashMap;
use std::io::Read as _;
use std::time::Instant;

use bollard::Docker;
use bollard::query_parameters::DownloadFromContainerOptionsBuilder;
use futures_util::StreamExt;

use super::TestPhaseError;
use super::checks::{expand_env, go_mode_string, matches, result};
use super::report::{CheckKind, CheckResult};
use super::structure::{FileContentTest, FileExistenceTest, LicenseTest};

/// Most bytes of a file read for content tests.
const MAX_FILE: usize = 16 * 1024 * 1024;
/// Most bytes of `/usr/share/doc` read for a Debian licence test.
const MAX_DOC_TREE: usize = 256 * 1024 * 1024;
/// Where Debian keeps one folder per package (CST's `DebianRoot`).
pub const DEBIAN_DOC: &str = "/usr/share/doc";
/// Packages CST's licence test always passes.
const LICENSE_ALLOWED: [&str; 1] = ["libgnutls30"];
/// Words that fail a licence file (CST's list, compared in upper case).
const LICENSE_REFUSED: [&str; 2] = ["AGPL", "WTFPL"];

/// A container the files are read from.
pub(crate) struct FileSource<'a> {
    pub docker: &'a Docker,
    pub container: &'a str,
}

impl FileSource<'_> {
    /// The archive of `path`, up to `cap` bytes; `None` when it is missing.
    async fn archive(&self, path: &str, cap: usize) -> Result<Option<Vec<u8>>, TestPhaseError> {
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let mut stream = self
            .docker
            .download_from_container(self.container, Some(options));
        let mut buf = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(b) => buf.extend_from_slice(&b),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(None),
                Err(source) => {
                    return Err(TestPhaseError::docker(
                        "read a file from container",
                        self.container,
                        source,
                    ));
                }
            }
            if buf.len() > cap {
                break;
            }
        }
        Ok(Some(buf))
    }

    /// The first entry of `path`'s archive: its header (a symlink is not
    /// followed), or `None` when missing.
    async fn stat(&self, path: &str) -> Result<Option<tar::Header>, TestPhaseError> {
        let Some(buf) = self.archive(path, 8192).await? else {
            return Ok(None);
        };
        let mut archive = tar::Archive::new(buf.as_slice());
        let io = |source| TestPhaseError::Archive { source };
        let mut entries = archive.entries().map_err(io)?;
        match entries.next() {
            Some(e) => Ok(Some(e.map_err(io)?.header().clone())),
            None => Ok(None),
        }
    }

    /// A file's content, following symlinks (8 at most); `Err(reason)` when
    /// it is missing or a directory.
    async fn read(&self, path: &str) -> Result<Result<Vec<u8>, String>, TestPhaseError> {
        let mut path = path.to_string();
        for _ in 0..8 {
            let Some(buf) = self.archive(&path, MAX_FILE + 8192).await? else {
                return Ok(Err(format!("{path} does not exist")));
            };
            let mut archive = tar::Archive::new(buf.as_slice());
            let io = |source| TestPhaseError::Archive { source };
            let mut entries = archive.entries().map_err(io)?;
            let Some(entry) = entries.next() else {
                return Ok(Err(format!("{path} does not exist")));
            };
            let mut entry = entry.map_err(io)?;
            match entry.header().entry_type() {
                tar::EntryType::Directory => {
                    return Ok(Err(format!("{path} is a directory, not a file")));
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(io)?
                        .map(|l| l.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    path = if target.starts_with('/') {
                        target
                    } else {
                        let dir = path.rsplit_once('/').map(|d| d.0).unwrap_or("");
                        format!("{dir}/{target}")
                    };
                }
                _ => {
                    let mut data = Vec::new();
                    entry
                        .by_ref()
                        .take(MAX_FILE as u64)
                        .read_to_end(&mut data)
                        .map_err(io)?;
                    return Ok(Ok(data));
                }
            }
        }
        Ok(Err(format!("{path}: too many levels of symbolic links")))
    }
}

/// A `fileExistenceTests` entry (`path` expanded against `env`, as CST 2.0.0 does).
pub(crate) async fn existence(
    src: &FileSource<'_>,
    f: &FileExistenceTest,
    env: &HashMap<String, String>,
) -> Result<CheckResult, TestPhaseError> {
    let start = Instant::now();
    let path = expand_env(&f.path, env);
    let found = src.stat(&path).await?;
    let mut errors = Vec::new();
    match (&found, f.should_exist) {
        (None, true) => errors.push(format!("{path} should exist but does not")),
        (Some(_), false) => errors.push(format!("{path} should not exist but does")),
        _ => {}
    }
    if let (Some(h), true) = (&found, f.should_exist) {
        let actual = go_mode_string(h);
        if let Some(p) = f.permissions.as_ref().filter(|p| !p.is_empty())
            && *p != actual
        {
            errors.push(format!("{path} has permissions {actual}, expected {p}"));
        }
        let mode = h.mode().unwrap_or(0);
        if let Some(by) = &f.is_executable_by {
            let mask = match by.as_str() {
                "owner" => 0o100,
                "group" => 0o010,
                "other" => 0o001,
                _ => 0o111,
            };
            if mode & mask == 0 {
                errors.push(format!("{path} is not executable by {by} ({actual})"));
            }
        }
        let (uid, gid) = (h.uid().unwrap_or(0) as i64, h.gid().unwrap_or(0) as i64);
        if let Some(u) = f.uid.filter(|u| *u != uid) {
            errors.push(format!("{path} is owned by uid {uid}, expected {u}"));
        }
        if let Some(g) = f.gid.filter(|g| *g != gid) {
            errors.push(format!("{path} has gid {gid}, expected {g}"));
        }
    }
    Ok(result(&f.name, CheckKind::FileExistence, start, errors))
}

/// A `fileContentTests` entry.
pub(crate) async fn content(
    src: &FileSource<'_>,
    f: &FileContentTest,
) -> Result<CheckResult, TestPhaseError> {
    let start = Instant::now();
    let mut errors = Vec::new();
    match src.read(&f.path).await? {
        Err(reason) => errors.push(format!("cannot read {}: {reason}", f.path)),
        Ok(data) => {
            let text = String::from_utf8_lossy(&data);
            for re in &f.expected_contents {
                if !matches(re, &text) {
                    errors.push(format!("expected contents `{re}` not found in {}", f.path));
                }
            }
            for re in &f.excluded_contents {
                if matches(re, &text) {
                    errors.push(format!("excluded contents `{re}` found in {}", f.path));
                }
            }
        }
    }
    Ok(result(&f.name, CheckKind::FileContent, start, errors))
}

/// Why a licence text is refused, if it is.
fn refused(text: &[u8]) -> Option<&'static str> {
    let upper = String::from_utf8_lossy(text).to_uppercase();
    LICENSE_REFUSED.into_iter().find(|w| upper.contains(w))
}

/// A `licenseTests` entry, named `license (FILE) #N`.
pub(crate) async fn license(
    src: &FileSource<'_>,
    t: &LicenseTest,
    name: &str,
) -> Result<CheckResult, TestPhaseError> {
    let start = Instant::now();
    let mut errors = Vec::new();
    let mut files: Vec<String> = Vec::new();
    if t.debian {
        match src.archive(DEBIAN_DOC, MAX_DOC_TREE).await? {
            None => errors.push(format!("cannot read {DEBIAN_DOC}: it does not exist")),
            Some(buf) if buf.len() > MAX_DOC_TREE => errors.push(format!(
                "{DEBIAN_DOC} is larger than {} MiB",
                MAX_DOC_TREE >> 20
            )),
            Some(buf) => {
                for pkg in packages(&buf).map_err(|source| TestPhaseError::Archive { source })? {
                    if !LICENSE_ALLOWED.contains(&pkg.as_str()) {
                        files.push(format!("{DEBIAN_DOC}/{pkg}/copyright"));
                    }
                }
            }
        }
    }
    files.extend(t.files.iter().cloned());
    for f in &files {
        match src.read(f).await? {
            Err(reason) => errors.push(format!("cannot read licence file {f}: {reason}")),
            Ok(text) => {
                if let Some(word) = refused(&text) {
                    errors.push(format!("{f}: licence contains {word}"));
                }
            }
        }
    }
    Ok(result(name, CheckKind::License, start, errors))
}

/// Top-level package folders in the archive of `/usr/share/doc`.
fn packages(tar_bytes: &[u8]) -> std::io::Result<Vec<String>> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let entry = entry?;
        if entry.header().entry_type() != tar::EntryType::Directory {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        if let [_, pkg] = parts.as_slice() {
            out.push(pkg.to_string());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licence_words_are_matched_case_insensitively() {
        assert_eq!(refused(b"GNU Affero ... agpl-3"), Some("AGPL"));
        assert_eq!(refused(b"Do What The F*ck You Want (wtfpl)"), Some("WTFPL"));
        assert_eq!(refused(b"MIT License"), None);
    }

    #[test]
    fn lists_top_level_packages() {
        let mut b = tar::Builder::new(Vec::new());
        for (p, dir) in [
            ("doc/", true),
            ("doc/a/", true),
            ("doc/a/copyright", false),
            ("doc/a/x/", true),
            ("doc/b/", true),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(if dir {
                tar::EntryType::Directory
            } else {
                tar::EntryType::Regular
            });
            h.set_size(0);
            h.set_mode(0o755);
            b.append_data(&mut h, p, std::io::empty()).unwrap();
        }
        let bytes = b.into_inner().unwrap();
        assert_eq!(packages(&bytes).unwrap(), vec!["a".to_string(), "b".into()]);
    }
}
