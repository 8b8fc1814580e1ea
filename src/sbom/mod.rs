//! The SBOM of a built image: the packages its dpkg, apk and rpm databases
//! list and every regular file with its SHA-256, read from the Docker
//! Engine's image export as it streams (`export.rs`; nothing is spooled, so
//! memory grows with the number of files, never with their size), written
//! as CycloneDX 1.5 JSON (`cyclonedx.rs`). The sign stage attaches it to the
//! pushed digest as a signed in-toto attestation.

pub mod cyclonedx;
pub mod export;
pub mod layers;
pub mod packages;

pub use export::{SbomError, generate};

use crate::digest::Digest;
use layers::Tree;
use packages::Package;

/// One regular file of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Absolute path in the image.
    pub path: String,
    /// sha256 of its bytes.
    pub sha256: Digest,
    /// Its size.
    pub size: u64,
}

/// What the SBOM says about one image.
#[derive(Debug, Clone)]
pub struct Sbom {
    /// The image's config digest (its id).
    pub image_id: Digest,
    /// Installed packages, sorted.
    pub packages: Vec<Package>,
    /// Regular files, sorted by path.
    pub files: Vec<FileEntry>,
    /// What was found but not read (unsupported or oversized databases).
    pub unsupported: Vec<String>,
    /// `ID` of the image's `os-release` (the purl namespace).
    pub distro: Option<String>,
}

impl Sbom {
    /// Reads the packages out of a merged file tree.
    pub fn from_tree(image_id: Digest, tree: &Tree) -> Self {
        let mut packages = Vec::new();
        let mut unsupported = Vec::new();
        let mut distro = None;
        for (path, bytes) in &tree.databases {
            let text = || String::from_utf8_lossy(bytes);
            match path.as_str() {
                "etc/os-release" | "usr/lib/os-release" => {
                    distro = distro.or_else(|| os_release_id(&text()));
                }
                "lib/apk/db/installed" => packages.extend(packages::apk(&text(), path)),
                p if p.ends_with("rpmdb.sqlite") => match packages::rpm_sqlite(bytes, path) {
                    Ok(found) => packages.extend(found),
                    Err(e) => {
                        let cause = std::error::Error::source(&e).map(|s| format!(": {s}"));
                        let cause = cause.unwrap_or_default();
                        unsupported.push(format!("/{path}: rpm database not read: {e}{cause}"));
                    }
                },
                _ => packages.extend(packages::dpkg(&text(), path)),
            }
        }
        for path in tree.nodes.keys() {
            if let Some(what) = packages::unsupported(path) {
                unsupported.push(format!("/{path}: {what}, not read"));
            }
        }
        for (path, size) in &tree.too_large {
            unsupported.push(format!(
                "/{path}: {size} bytes, larger than kiln reads ({} bytes)",
                layers::MAX_DATABASE
            ));
        }
        packages.sort();
        let files = tree
            .files()
            .map(|(path, sha256, size)| FileEntry {
                path,
                sha256: sha256.clone(),
                size,
            })
            .collect();
        Sbom {
            image_id,
            packages,
            files,
            unsupported,
            distro,
        }
    }

    /// The CycloneDX 1.5 JSON document, naming the image `name`.
    pub fn cyclonedx(&self, name: &str) -> serde_json::Value {
        cyclonedx::document(self, name, &self.image_id)
    }
}

/// `ID=` of an os-release file, unquoted.
fn os_release_id(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("ID="))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
        .filter(|v| !v.is_empty())
}
