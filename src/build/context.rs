//! The build context: a deterministic tar of the rendered Dockerfile, the
//! generated component files and the recipe's context folder.
//!
//! [`scan`] lists and hashes every entry once (the build key is made from that
//! list); [`write_tar`] writes the tar from the same list, checking each file
//! against its scanned digest; [`stream`] runs `write_tar` on a blocking
//! thread into a channel so the tar is never held whole in memory.
//!
//! Determinism: entries sorted by path, mtime [`CONTEXT_MTIME`], uid/gid 0,
//! empty user/group names, modes 0755 (folders, executables) or 0644.
//! Symlinks are stored as links, never followed; one that points outside the
//! context is an error. `.dockerignore` in the context folder is honoured and
//! not itself sent.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;

use super::dockerignore::{DockerIgnore, DockerIgnoreError};
use crate::digest::{Digest, DigestWriter};
use crate::render::{GENERATED_DIR, RenderedBuild};

/// Modification time of every tar entry (2000-01-01T00:00:00Z).
pub const CONTEXT_MTIME: u64 = 946_684_800;
/// Where the rendered Dockerfile sits in the context.
pub const DOCKERFILE_PATH: &str = ".kiln/Dockerfile";
/// Bytes per chunk sent to the daemon.
const CHUNK: usize = 64 * 1024;

/// Why the build context could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// A symlink points outside the context folder (or is absolute).
    #[error("`{path}` is a symlink to `{target}`, outside the context folder")]
    SymlinkEscapes {
        /// The link, relative to the context.
        path: String,
        /// Where it points.
        target: PathBuf,
    },
    /// The context folder uses a name kiln reserves for generated files.
    #[error(
        "the context folder contains `{path}`; `{GENERATED_DIR}/` is reserved for kiln's generated files"
    )]
    Reserved {
        /// The path.
        path: String,
    },
    /// Sockets, devices and fifos cannot go into a context.
    #[error("`{path}` is not a regular file, folder or symlink")]
    Unsupported {
        /// The path.
        path: String,
    },
    /// A path is not valid UTF-8.
    #[error("`{path}` is not a UTF-8 path")]
    NonUtf8 {
        /// The path.
        path: PathBuf,
    },
    /// A file changed between hashing and sending.
    #[error("`{path}` changed while the build context was being sent")]
    Changed {
        /// The path.
        path: String,
    },
    /// `.dockerignore` is invalid.
    #[error("error in `{path}`")]
    DockerIgnore {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: DockerIgnoreError,
    },
    /// Reading or writing failed.
    #[error("error reading `{path}` for the build context")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file on disk.
    Disk(PathBuf),
    /// Bytes kiln generated.
    Generated(Arc<[u8]>),
}

/// What an entry is.
#[derive(Debug, Clone)]
pub enum EntryKind {
    /// A folder.
    Dir,
    /// A regular file.
    File {
        /// Its bytes.
        source: Source,
        /// Size in bytes.
        size: u64,
        /// Whether it is sent as 0755.
        executable: bool,
    },
    /// A symlink, stored as a link.
    Symlink {
        /// The target as written.
        target: String,
    },
}

/// One tar entry with its content digest.
#[derive(Debug, Clone)]
pub struct ContextEntry {
    /// `/`-separated path inside the context.
    pub path: String,
    /// Kind and source.
    pub kind: EntryKind,
    /// Digest over kind, mode and content (file bytes, link target).
    pub digest: Digest,
}

/// Every entry of a build context, sorted by path.
#[derive(Debug, Clone, Default)]
pub struct ContextManifest {
    /// Entries.
    pub entries: Vec<ContextEntry>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn entry_digest(tag: &str, executable: bool, content: &Digest) -> Digest {
    let mode = if executable { "0755" } else { "0644" };
    Digest::of(format!("{tag} {mode} {content}").as_bytes())
}

fn dir_entry(path: String) -> ContextEntry {
    ContextEntry {
        path,
        kind: EntryKind::Dir,
        digest: Digest::of(b"dir"),
    }
}

fn generated(path: &str, bytes: &[u8], mode: u32) -> ContextEntry {
    let executable = mode & 0o111 != 0;
    ContextEntry {
        path: path.to_string(),
        digest: entry_digest("file", executable, &Digest::of(bytes)),
        kind: EntryKind::File {
            source: Source::Generated(Arc::from(bytes)),
            size: bytes.len() as u64,
            executable,
        },
    }
}

/// Whether `target`, written in a link at `link` (relative to the root),
/// stays inside the root.
fn link_stays_inside(link: &str, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: Vec<&str> = link.split('/').collect();
    depth.pop();
    for c in target.components() {
        match c {
            std::path::Component::ParentDir if depth.pop().is_none() => return false,
            std::path::Component::Normal(n) => depth.push(n.to_str().unwrap_or("?")),
            _ => {}
        }
    }
    true
}

fn scan_dir(root: &Path, out: &mut Vec<ContextEntry>) -> Result<(), ContextError> {
    let ignore_file = root.join(".dockerignore");
    let ignore = match std::fs::read_to_string(&ignore_file) {
        Ok(text) => DockerIgnore::parse(&text).map_err(|source| ContextError::DockerIgnore {
            path: ignore_file.clone(),
            source,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DockerIgnore::default(),
        Err(e) => return Err(io_err(&ignore_file)(e)),
    };
    let descend_excluded = ignore.has_negations();
    let mut walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
        .into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry.map_err(|e| {
            let p = e.path().unwrap_or(root).to_path_buf();
            ContextError::Io {
                path: p,
                source: e.into(),
            }
        })?;
        let rel = entry.path().strip_prefix(root).expect("below root");
        let rel = rel
            .to_str()
            .ok_or_else(|| ContextError::NonUtf8 {
                path: entry.path().to_path_buf(),
            })?
            .replace('\\', "/");
        let ft = entry.file_type();
        if rel == ".dockerignore" {
            continue;
        }
        if ignore.is_excluded(&rel) {
            if ft.is_dir() && !descend_excluded {
                walk.skip_current_dir();
            }
            continue;
        }
        if rel == GENERATED_DIR || rel.starts_with(&format!("{GENERATED_DIR}/")) {
            return Err(ContextError::Reserved { path: rel });
        }
        if ft.is_dir() {
            out.push(dir_entry(rel));
        } else if ft.is_symlink() {
            let target = std::fs::read_link(entry.path()).map_err(io_err(entry.path()))?;
            if !link_stays_inside(&rel, &target) {
                return Err(ContextError::SymlinkEscapes { path: rel, target });
            }
            let target = target
                .to_str()
                .ok_or_else(|| ContextError::NonUtf8 {
                    path: entry.path().to_path_buf(),
                })?
                .to_string();
            out.push(ContextEntry {
                path: rel,
                digest: Digest::of(format!("link {target}").as_bytes()),
                kind: EntryKind::Symlink { target },
            });
        } else if ft.is_file() {
            let meta = entry
                .metadata()
                .map_err(|e| io_err(entry.path())(e.into()))?;
            #[cfg(unix)]
            let executable = {
                use std::os::unix::fs::PermissionsExt;
                meta.permissions().mode() & 0o111 != 0
            };
            #[cfg(not(unix))]
            let executable = false;
            let (content, size) = hash_file(entry.path(), meta.len())?;
            out.push(ContextEntry {
                path: rel,
                digest: entry_digest("file", executable, &content),
                kind: EntryKind::File {
                    source: Source::Disk(entry.path().to_path_buf()),
                    size,
                    executable,
                },
            });
        } else {
            return Err(ContextError::Unsupported { path: rel });
        }
    }
    Ok(())
}

fn hash_file(path: &Path, size: u64) -> Result<(Digest, u64), ContextError> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut w = DigestWriter::new();
    std::io::copy(&mut file.take(size), &mut w).map_err(io_err(path))?;
    Ok(w.finish())
}

impl ContextManifest {
    /// Adds the Dockerfile kiln sends (at [`DOCKERFILE_PATH`]). Kept apart
    /// from [`scan`] because the sent Dockerfile carries the labels, which
    /// carry the build key, which is made from the scanned entries.
    pub fn with_dockerfile(mut self, text: &str) -> Self {
        self.entries.retain(|e| e.path != DOCKERFILE_PATH);
        if !self.entries.iter().any(|e| e.path == GENERATED_DIR) {
            self.entries.push(dir_entry(GENERATED_DIR.to_string()));
        }
        self.entries
            .push(generated(DOCKERFILE_PATH, text.as_bytes(), 0o644));
        self.entries.sort_by(|a, b| a.path.cmp(&b.path));
        self
    }
}

/// Lists and hashes the recipe's context folder and kiln's generated files
/// (everything but the Dockerfile; see [`ContextManifest::with_dockerfile`]).
pub fn scan(rendered: &RenderedBuild) -> Result<ContextManifest, ContextError> {
    let mut entries = Vec::new();
    if let Some(dir) = &rendered.context_dir {
        scan_dir(dir, &mut entries)?;
    }
    let mut dirs = std::collections::BTreeSet::new();
    let mut add_parents = |path: &str| {
        let mut i = 0;
        while let Some(j) = path[i..].find('/') {
            dirs.insert(path[..i + j].to_string());
            i += j + 1;
        }
    };
    for f in &rendered.files {
        add_parents(&f.path);
        entries.push(generated(&f.path, &f.contents, f.mode));
    }
    entries.extend(dirs.into_iter().map(dir_entry));
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries.dedup_by(|a, b| a.path == b.path && matches!(a.kind, EntryKind::Dir));
    Ok(ContextManifest { entries })
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(CONTEXT_MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// A reader that checks the bytes it passes against the scanned digest.
struct Checked<R> {
    inner: R,
    hasher: DigestWriter,
}

impl<R: Read> Read for Checked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Writes the tar of `manifest` into `out`; returns the tar's digest and size.
pub fn write_tar<W: Write>(
    manifest: &ContextManifest,
    out: W,
) -> Result<(Digest, u64), ContextError> {
    let tee = Tee {
        inner: out,
        hasher: DigestWriter::new(),
    };
    let mut tar = tar::Builder::new(tee);
    let tar_err = |path: &str| {
        let p = PathBuf::from(path);
        move |source| ContextError::Io { path: p, source }
    };
    for e in &manifest.entries {
        match &e.kind {
            EntryKind::Dir => {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                tar.append_data(&mut h, format!("{}/", e.path), std::io::empty())
                    .map_err(tar_err(&e.path))?;
            }
            EntryKind::Symlink { target } => {
                let mut h = header(tar::EntryType::Symlink, 0o777, 0);
                tar.append_link(&mut h, &e.path, target)
                    .map_err(tar_err(&e.path))?;
            }
            EntryKind::File {
                source,
                size,
                executable,
            } => {
                let mode = if *executable { 0o755 } else { 0o644 };
                let mut h = header(tar::EntryType::Regular, mode, *size);
                let reader: Box<dyn Read> = match source {
                    Source::Disk(p) => Box::new(std::fs::File::open(p).map_err(io_err(p))?),
                    Source::Generated(b) => Box::new(std::io::Cursor::new(b.clone())),
                };
                let mut checked = Checked {
                    inner: reader.take(*size),
                    hasher: DigestWriter::new(),
                };
                tar.append_data(&mut h, &e.path, &mut checked)
                    .map_err(tar_err(&e.path))?;
                let (content, n) = checked.hasher.finish();
                if n != *size || entry_digest("file", *executable, &content) != e.digest {
                    return Err(ContextError::Changed {
                        path: e.path.clone(),
                    });
                }
            }
        }
    }
    let mut tee = tar.into_inner().map_err(tar_err("<tar>"))?;
    tee.inner.flush().map_err(tar_err("<tar>"))?;
    Ok(tee.hasher.finish())
}

struct Tee<W> {
    inner: W,
    hasher: DigestWriter,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Sends written bytes down a channel in [`CHUNK`]-sized pieces.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the build request ended before the context was sent",
            )
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The blocking task writing a context tar: its digest and size, or the error.
pub type TarTask = tokio::task::JoinHandle<Result<(Digest, u64), ContextError>>;

/// The tar of `manifest` as a byte stream, written on a blocking thread. The
/// handle yields the tar's digest and size, or why it could not be written
/// (the stream then ends with an error so the request is aborted).
pub fn stream(
    manifest: ContextManifest,
) -> (
    impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    TarTask,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let handle = tokio::task::spawn_blocking(move || {
        let err_tx = tx.clone();
        let writer = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let result = write_tar(&manifest, writer);
        if let Err(e) = &result {
            let _ = err_tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
        result
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (body, handle)
}
