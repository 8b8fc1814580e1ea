//! One layer tar of an image export, read as it streams by (nothing spooled:
//! each file is hashed and dropped), and the merge of layers into the image's
//! final file tree with the OCI whiteouts applied (`.wh.NAME` removes `NAME`
//! from the layers below, `.wh..wh..opq` empties its folder of them).
//!
//! Only the bytes of package databases ([`is_database`]) are kept, up to
//! [`MAX_DATABASE`] each; memory grows with the number of files, not their
//! size.

use std::collections::BTreeMap;
use std::io::Read;

use crate::digest::{Digest, DigestWriter};

/// Largest package database file kept in memory.
pub const MAX_DATABASE: u64 = 256 * 1024 * 1024;

/// Files whose bytes the SBOM reads (package databases and `os-release`).
pub fn is_database(path: &str) -> bool {
    matches!(
        path,
        "var/lib/dpkg/status"
            | "lib/apk/db/installed"
            | "var/lib/rpm/rpmdb.sqlite"
            | "usr/lib/sysimage/rpm/rpmdb.sqlite"
            | "etc/os-release"
            | "usr/lib/os-release"
    ) || path
        .strip_prefix("var/lib/dpkg/status.d/")
        .is_some_and(|f| !f.is_empty() && !f.contains('/'))
}

/// What a path is in the final tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A regular file.
    File {
        /// sha256 of its bytes.
        sha256: Digest,
        /// Its size.
        size: u64,
    },
    /// A folder, symlink or device: listed by path only.
    Other,
}

/// One entry of a layer, in tar order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A path written by the layer.
    Put(String, Node),
    /// A hard link to another path (of this layer or one below).
    Link(String, String),
    /// `.wh.NAME`: the path is removed from the layers below.
    Whiteout(String),
    /// `.wh..wh..opq`: the folder's contents below are hidden.
    Opaque(String),
}

/// What one layer holds.
#[derive(Debug, Default, Clone)]
pub struct LayerScan {
    /// Its entries in order.
    pub changes: Vec<Change>,
    /// The bytes of the package databases it writes.
    pub databases: BTreeMap<String, Vec<u8>>,
    /// Databases larger than [`MAX_DATABASE`] (path, size): not read.
    pub too_large: Vec<(String, u64)>,
}

/// `./a/b/` → `a/b`.
fn normalize(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/')
        .to_string()
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Reads one layer tar (uncompressed, as `docker save` writes it).
pub fn scan_layer(reader: impl Read) -> std::io::Result<LayerScan> {
    let mut archive = tar::Archive::new(reader);
    let mut scan = LayerScan::default();
    let mut buf = vec![0u8; 64 * 1024];
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = normalize(&entry.path()?.to_string_lossy());
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        if name == ".wh..wh..opq" {
            scan.changes.push(Change::Opaque(dir.to_string()));
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            scan.changes.push(Change::Whiteout(join(dir, hidden)));
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_hard_link() {
            let target = entry.link_name()?.map(|t| normalize(&t.to_string_lossy()));
            scan.changes
                .push(Change::Link(path, target.unwrap_or_default()));
            continue;
        }
        if !kind.is_file() {
            if !path.is_empty() {
                scan.changes.push(Change::Put(path, Node::Other));
            }
            continue;
        }
        let size = entry.size();
        let keep = is_database(&path) && size <= MAX_DATABASE;
        if is_database(&path) && !keep {
            scan.too_large.push((path.clone(), size));
        }
        let mut bytes = Vec::new();
        let mut hash = DigestWriter::new();
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            if keep {
                bytes.extend_from_slice(&buf[..n]);
            }
        }
        let (sha256, size) = hash.finish();
        if keep {
            scan.databases.insert(path.clone(), bytes);
        }
        scan.changes
            .push(Change::Put(path, Node::File { sha256, size }));
    }
    Ok(scan)
}

/// The image's file tree, built by applying layers bottom up.
#[derive(Debug, Default)]
pub struct Tree {
    /// Every path (no leading `/`) and what it is.
    pub nodes: BTreeMap<String, Node>,
    /// Package database bytes of the paths still present.
    pub databases: BTreeMap<String, Vec<u8>>,
    /// Databases not read because of their size (path, size).
    pub too_large: Vec<(String, u64)>,
}

/// Removes `path` and everything under it (`path` empty: everything).
fn remove_under<V>(map: &mut BTreeMap<String, V>, path: &str, keep_self: bool) {
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let doomed: Vec<String> = map
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        map.remove(&k);
    }
    if !keep_self {
        map.remove(path);
    }
}

impl Tree {
    /// Applies the next layer up: its whiteouts hide what the layers below
    /// hold, then its own entries are written.
    pub fn apply(&mut self, layer: LayerScan) {
        for change in &layer.changes {
            match change {
                Change::Whiteout(p) => {
                    remove_under(&mut self.nodes, p, false);
                    remove_under(&mut self.databases, p, false);
                }
                Change::Opaque(p) => {
                    remove_under(&mut self.nodes, p, true);
                    remove_under(&mut self.databases, p, true);
                }
                _ => {}
            }
        }
        for change in layer.changes {
            match change {
                Change::Put(path, node) => {
                    if node != Node::Other {
                        remove_under(&mut self.nodes, &path, true);
                    }
                    self.databases.remove(&path);
                    self.nodes.insert(path, node);
                }
                Change::Link(path, target) => {
                    let node = self.nodes.get(&target).cloned().unwrap_or(Node::Other);
                    if let Some(bytes) = self.databases.get(&target).cloned()
                        && is_database(&path)
                    {
                        self.databases.insert(path.clone(), bytes);
                    }
                    self.nodes.insert(path, node);
                }
                Change::Whiteout(_) | Change::Opaque(_) => {}
            }
        }
        self.databases.extend(layer.databases);
        self.too_large.extend(layer.too_large);
    }

    /// Regular files: path (with a leading `/`), sha256, size.
    pub fn files(&self) -> impl Iterator<Item = (String, &Digest, u64)> {
        self.nodes.iter().filter_map(|(p, n)| match n {
            Node::File { sha256, size } => Some((format!("/{p}"), sha256, *size)),
            Node::Other => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            match data {
                Some(d) => {
                    h.set_size(d.len() as u64);
                    h.set_entry_type(tar::EntryType::Regular);
                }
                None => {
                    h.set_size(0);
                    h.set_entry_type(tar::EntryType::Directory);
                }
            }
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data.unwrap_or_default())
                .unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_and_opaque_folders_hide_lower_files_only() {
        let status: &[u8] = b"Package: a\nVersion: 1\n";
        let base = layer(&[
            ("./etc/", None),
            ("./etc/gone", Some(b"x")),
            ("./etc/keep", Some(b"k")),
            ("./opt/old/f", Some(b"o")),
            ("./var/lib/dpkg/status", Some(status)),
        ]);
        let top = layer(&[
            ("etc/.wh.gone", Some(b"")),
            ("opt/old/.wh..wh..opq", Some(b"")),
            ("opt/old/new", Some(b"n")),
            ("var/lib/dpkg/.wh.status", Some(b"")),
        ]);
        let mut tree = Tree::default();
        let scan = scan_layer(&base[..]).unwrap();
        assert_eq!(scan.databases["var/lib/dpkg/status"], status);
        tree.apply(scan);
        tree.apply(scan_layer(&top[..]).unwrap());
        let files: Vec<String> = tree.files().map(|(p, _, _)| p).collect();
        assert_eq!(files, ["/etc/keep", "/opt/old/new"]);
        assert!(tree.databases.is_empty());
        let (_, sha, size) = tree.files().next().unwrap();
        assert_eq!((sha, size), (&Digest::of(b"k"), 1));
    }

    #[test]
    fn database_paths() {
        assert!(is_database("var/lib/dpkg/status.d/base"));
        assert!(!is_database("var/lib/dpkg/status.d/"));
        assert!(!is_database("var/lib/dpkg/status-old"));
        assert!(is_database("lib/apk/db/installed"));
    }
}
