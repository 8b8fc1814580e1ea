//! Installed packages from the databases found in an image: dpkg
//! (`var/lib/dpkg/status` and distroless `status.d/` files), apk
//! (`lib/apk/db/installed`) and rpm's SQLite database (`rpmdb.sqlite`).
//! rpm's BerkeleyDB (`Packages`) and NDB (`Packages.db`) formats are not
//! read; [`unsupported`] names them so the SBOM says so.

use std::collections::BTreeMap;

/// Which package manager a package belongs to (the purl type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ecosystem {
    /// Debian's dpkg.
    Deb,
    /// Alpine's apk.
    Apk,
    /// rpm.
    Rpm,
}

impl Ecosystem {
    /// The purl type.
    pub fn purl_type(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Rpm => "rpm",
        }
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    /// Package manager.
    pub ecosystem: Ecosystem,
    /// Name.
    pub name: String,
    /// Version as the package manager prints it (dpkg: with the epoch).
    pub version: String,
    /// Architecture, when the database records one.
    pub arch: Option<String>,
    /// The database file it was read from (no leading `/`).
    pub database: String,
}

/// dpkg statuses whose package is not on disk.
const NOT_PRESENT: [&str; 2] = ["not-installed", "config-files"];

/// The paragraphs of a Debian control file: field name → value (folded
/// continuation lines joined with `\n`).
fn paragraphs(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let mut cur: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            last = None;
        } else if line.starts_with([' ', '\t']) {
            if let Some(v) = last.as_ref().and_then(|k| cur.get_mut(k)) {
                v.push('\n');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            cur.insert(k.trim().to_string(), v.trim().to_string());
            last = Some(k.trim().to_string());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Packages of a dpkg status file (or a `status.d/` file, which has no
/// `Status` field: present). Packages whose status is `not-installed` or
/// `config-files` are left out, as their files are gone.
pub fn dpkg(text: &str, database: &str) -> Vec<Package> {
    paragraphs(text)
        .into_iter()
        .filter(|p| {
            p.get("Status")
                .and_then(|s| s.split_whitespace().nth(2))
                .is_none_or(|s| !NOT_PRESENT.contains(&s))
        })
        .filter_map(|mut p| {
            Some(Package {
                ecosystem: Ecosystem::Deb,
                name: p.remove("Package")?,
                version: p.remove("Version")?,
                arch: p.remove("Architecture"),
                database: database.to_string(),
            })
        })
        .collect()
}

/// Packages of apk's `installed` database (`P:` name, `V:` version, `A:`
/// architecture; a blank line ends a package).
pub fn apk(text: &str, database: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let (mut name, mut version, mut arch) = (None, None, None);
    for line in text.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if let (Some(n), Some(v)) = (name.take(), version.take()) {
                out.push(Package {
                    ecosystem: Ecosystem::Apk,
                    name: n,
                    version: v,
                    arch: arch.take(),
                    database: database.to_string(),
                });
            }
            (name, version, arch) = (None, None, None);
        } else if let Some(v) = line.strip_prefix("P:") {
            name = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("V:") {
            version = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("A:") {
            arch = Some(v.to_string());
        }
    }
    out
}

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_ARCH: u32 = 1022;

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Name, `[epoch:]version-release` and arch from one rpm header blob (the
/// `Packages.blob` column of `rpmdb.sqlite`: index count, data length,
/// 16-byte index entries, then the data). `None` when malformed.
pub fn rpm_header(blob: &[u8]) -> Option<(String, String, Option<String>)> {
    let count = be32(blob, 0)? as usize;
    let data_len = be32(blob, 4)? as usize;
    let data_at = 8usize.checked_add(count.checked_mul(16)?)?;
    let data = blob.get(data_at..data_at.checked_add(data_len)?)?;
    let mut found: BTreeMap<u32, String> = BTreeMap::new();
    for i in 0..count {
        let e = 8 + i * 16;
        let (tag, kind, offset) = (be32(blob, e)?, be32(blob, e + 4)?, be32(blob, e + 8)?);
        let at = offset as usize;
        let value = match kind {
            // STRING, STRING_ARRAY (first), I18NSTRING (first)
            6 | 8 | 9 => {
                let rest = data.get(at..)?;
                let end = rest.iter().position(|&b| b == 0)?;
                String::from_utf8_lossy(&rest[..end]).into_owned()
            }
            // INT32
            4 => be32(data, at)?.to_string(),
            _ => continue,
        };
        found.entry(tag).or_insert(value);
    }
    let name = found.remove(&TAG_NAME)?;
    let version = found.remove(&TAG_VERSION)?;
    let release = found.remove(&TAG_RELEASE)?;
    let version = match found.remove(&TAG_EPOCH) {
        Some(e) => format!("{e}:{version}-{release}"),
        None => format!("{version}-{release}"),
    };
    Some((name, version, found.remove(&TAG_ARCH)))
}

/// Why an rpm SQLite database could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpmDbError {
    /// Copying it to a temp file failed.
    #[error("cannot copy it to a temp file")]
    Spool(#[source] std::io::Error),
    /// SQLite refused it.
    #[error("sqlite refused it")]
    Sqlite(#[source] rusqlite::Error),
}

impl From<rusqlite::Error> for RpmDbError {
    fn from(e: rusqlite::Error) -> Self {
        RpmDbError::Sqlite(e)
    }
}

/// Packages of an rpm SQLite database (its bytes, copied to a temp file to
/// open it read-only).
pub fn rpm_sqlite(bytes: &[u8], database: &str) -> Result<Vec<Package>, RpmDbError> {
    use std::io::Write as _;
    let mut file = tempfile::NamedTempFile::new().map_err(RpmDbError::Spool)?;
    file.write_all(bytes).map_err(RpmDbError::Spool)?;
    file.flush().map_err(RpmDbError::Spool)?;
    let db = rusqlite::Connection::open_with_flags(
        file.path(),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut stmt = db.prepare("SELECT blob FROM Packages")?;
    let blobs = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = Vec::new();
    for blob in blobs {
        if let Some((name, version, arch)) = rpm_header(&blob?) {
            out.push(Package {
                ecosystem: Ecosystem::Rpm,
                name,
                version,
                arch,
                database: database.to_string(),
            });
        }
    }
    Ok(out)
}

/// Package databases kiln finds but cannot read.
pub fn unsupported(path: &str) -> Option<&'static str> {
    match path {
        "var/lib/rpm/Packages" => Some("rpm BerkeleyDB database"),
        "var/lib/rpm/Packages.db" | "usr/lib/sysimage/rpm/Packages.db" => Some("rpm NDB database"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_keeps_present_packages_with_epochs_and_folded_fields() {
        let text = "Package: a\nStatus: install ok installed\nVersion: 1:2.0-1\nArchitecture: amd64\nDescription: x\n more\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: b\nVersion: 3\n";
        let got: Vec<(String, String)> = dpkg(text, "s")
            .into_iter()
            .map(|p| (p.name, p.version))
            .collect();
        assert_eq!(
            got,
            [("a".into(), "1:2.0-1".into()), ("b".into(), "3".into())]
        );
    }

    #[test]
    fn apk_packages() {
        let text = "C:x\nP:musl\nV:1.2.4-r2\nA:x86_64\n\nP:busybox\nV:1.36.1-r5\n";
        let got = apk(text, "lib/apk/db/installed");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].arch.as_deref(), Some("x86_64"));
        assert_eq!(got[1].version, "1.36.1-r5");
    }

    #[test]
    fn rpm_header_reads_name_epoch_version_release_arch() {
        let mut data = Vec::new();
        let mut index = Vec::new();
        let mut add = |tag: u32, kind: u32, value: &[u8]| {
            index.extend_from_slice(&tag.to_be_bytes());
            index.extend_from_slice(&kind.to_be_bytes());
            index.extend_from_slice(&(data.len() as u32).to_be_bytes());
            index.extend_from_slice(&1u32.to_be_bytes());
            data.extend_from_slice(value);
        };
        add(TAG_NAME, 6, b"bash\0");
        add(TAG_VERSION, 6, b"5.2\0");
        add(TAG_RELEASE, 6, b"1.el9\0");
        add(TAG_EPOCH, 4, &2u32.to_be_bytes());
        add(TAG_ARCH, 6, b"x86_64\0");
        let mut blob = Vec::new();
        blob.extend_from_slice(&5u32.to_be_bytes());
        blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
        blob.extend_from_slice(&index);
        blob.extend_from_slice(&data);
        assert_eq!(
            rpm_header(&blob),
            Some(("bash".into(), "2:5.2-1.el9".into(), Some("x86_64".into())))
        );
        assert_eq!(rpm_header(&blob[..20]), None);
    }
}
