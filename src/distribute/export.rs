//! Reading `docker save` output (the Engine API's image export): the classic
//! layout of engine 20.10 (`manifest.json`, `<config>.json`,
//! `<id>/layer.tar`) and the OCI layout of newer engines (`blobs/sha256/…`).
//!
//! Entries are classified by content, not by name: each regular file is
//! spooled to an anonymous temp file while being hashed; a file hashing to the
//! image id is the config, one hashing to a diff_id is a layer, anything else
//! is dropped. Nothing is held in memory beyond a small read buffer.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use bytes::Bytes;

use crate::digest::{Digest, DigestWriter};

/// One useful item of the export.
#[derive(Debug)]
pub enum Exported {
    /// The config bytes (hash = image id).
    Config(Vec<u8>),
    /// An uncompressed layer spooled to an anonymous temp file.
    Layer {
        /// sha256 of the layer tar.
        diff_id: Digest,
        /// Its size.
        size: u64,
        /// The spool file.
        file: File,
    },
}

/// A blocking [`Read`] over chunks sent from an async task (the bollard
/// export stream), through a bounded channel so memory stays flat.
pub struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    /// Reads what `rx` delivers until it closes.
    pub fn new(rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>) -> Self {
        ChannelReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

fn ignored(name: &str) -> bool {
    matches!(
        name,
        "manifest.json" | "repositories" | "index.json" | "oci-layout"
    ) || name.ends_with("/VERSION")
        || name.ends_with("/json")
}

/// Walks a `docker save` tar, calling `on_item` for the config and for each
/// layer whose digest is in `diff_ids` (each at most once). Spool files go to
/// `spool_dir`.
pub fn walk_export(
    reader: impl Read,
    spool_dir: &Path,
    image_id: &Digest,
    diff_ids: &HashSet<Digest>,
    mut on_item: impl FnMut(Exported),
) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    let mut seen = HashSet::new();
    let mut buf = vec![0u8; 256 * 1024];
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path()?.to_string_lossy().into_owned();
        if ignored(&name) {
            continue;
        }
        let mut file = tempfile::tempfile_in(spool_dir)?;
        let mut hash = DigestWriter::new();
        {
            let mut out = std::io::BufWriter::with_capacity(256 * 1024, &file);
            loop {
                let n = entry.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hash.update(&buf[..n]);
                out.write_all(&buf[..n])?;
            }
            out.flush()?;
        }
        let (digest, size) = hash.finish();
        if &digest == image_id && seen.insert(digest.clone()) {
            let mut bytes = Vec::with_capacity(size as usize);
            file.seek(SeekFrom::Start(0))?;
            file.read_to_end(&mut bytes)?;
            on_item(Exported::Config(bytes));
        } else if diff_ids.contains(&digest) && seen.insert(digest.clone()) {
            on_item(Exported::Layer {
                diff_id: digest,
                size,
                file,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn finds_config_and_layers_by_content_in_both_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let config = br#"{"rootfs":{}}"#;
        let (l1, l2) = (b"layer-one".as_slice(), b"layer-two".as_slice());
        let id = Digest::of(config);
        let want: HashSet<_> = [Digest::of(l1), Digest::of(l2)].into();
        for files in [
            vec![
                ("abc/layer.tar", l1),
                ("abc/json", b"{}".as_slice()),
                ("def/layer.tar", l2),
                ("def/layer.tar2", l1),
                ("x.json", config.as_slice()),
                ("manifest.json", b"[]".as_slice()),
            ],
            vec![
                ("blobs/sha256/aa", l2),
                ("blobs/sha256/bb", config.as_slice()),
                ("blobs/sha256/cc", b"other".as_slice()),
                ("blobs/sha256/dd", l1),
                ("index.json", b"{}".as_slice()),
            ],
        ] {
            let mut got = Vec::new();
            walk_export(&tar_of(&files)[..], dir.path(), &id, &want, |i| got.push(i)).unwrap();
            let configs = got
                .iter()
                .filter(|i| matches!(i, Exported::Config(c) if c == config))
                .count();
            let layers: HashSet<_> = got
                .iter()
                .filter_map(|i| match i {
                    Exported::Layer { diff_id, size, .. } => Some((diff_id.clone(), *size)),
                    _ => None,
                })
                .collect();
            assert_eq!(configs, 1);
            assert_eq!(layers, [(Digest::of(l1), 9), (Digest::of(l2), 9)].into());
        }
    }
}
