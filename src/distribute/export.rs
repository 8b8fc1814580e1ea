//! Reading `docker save` output (the Engine API's image export): the classic
//! layout of engine 20.10 (`manifest.json`, `<config>.json`,
//! `<id>/layer.tar`) and the OCI layout of newer engines (`blobs/sha256/…`).
//!
//! Entries are classified by content, not by name: each regular file is
//! hashed as it is read; one hashing to the image id is the config, one
//! hashing to a wanted diff_id is a layer, anything else is dropped. Large
//! entries are compressed *while* they are read ([`compress_stream`]), before
//! their digest is known — speculatively, except where the OCI layout's name
//! already says the blob is not wanted; small ones (and config candidates)
//! are read into memory first. Memory stays bounded by the blocks in flight.
//! With [`Walk::stream_over`], a large entry is announced as it starts
//! ([`Exported::Growing`]) so its upload can follow the compression.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use super::compress::{Codec, CompressPool, Compressed, Streamed, compress_stream, compress_to};
use crate::digest::Digest;
use crate::registry::{GrowingBlob, Growth};

/// One useful item of the export.
#[derive(Debug)]
pub enum Exported {
    /// The config bytes (hash = image id).
    Config(Vec<u8>),
    /// A layer, compressed into an anonymous temp file.
    Layer {
        /// sha256 of the layer tar.
        diff_id: Digest,
        /// Its uncompressed size.
        size: u64,
        /// The compressed layer.
        compressed: Compressed,
        /// Announced as [`Exported::Growing`] while it was compressed.
        streamed: bool,
    },
    /// A large entry being compressed (see [`Walk::stream_over`]): its
    /// growth ends `Done` just before its [`Exported::Layer`], or
    /// `Abandoned` when it is not a wanted layer.
    Growing(GrowingBlob),
}

/// What [`walk_export`] looks for and how it compresses.
pub struct Walk<'a> {
    /// The config's digest.
    pub image_id: &'a Digest,
    /// The layers to compress (others are dropped).
    pub wanted: &'a HashSet<Digest>,
    /// Where compressed layers are spooled.
    pub spool: &'a Path,
    /// The compression.
    pub codec: Codec,
    /// The threads that compress.
    pub pool: &'a CompressPool,
    /// Entries larger than this are announced as they start compressing
    /// (`None`: never).
    pub stream_over: Option<u64>,
}

/// Entries up to this size are read into memory and classified before any
/// compression.
const SMALL: u64 = 1024 * 1024;
/// The largest entry read into memory as a config candidate.
const CONFIG_MAX: u64 = 64 * 1024 * 1024;

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
/// layer in `walk.wanted` (each at most once), compressed.
pub fn walk_export(
    reader: impl Read,
    walk: &Walk<'_>,
    mut on_item: impl FnMut(Exported),
) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    let mut seen = HashSet::new();
    let id_hex = walk
        .image_id
        .to_string()
        .trim_start_matches("sha256:")
        .to_string();
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path()?.to_string_lossy().into_owned();
        if ignored(&name) || unwanted_oci_blob(&name, walk.wanted, &id_hex) {
            continue;
        }
        let size = entry.header().size()?;
        let config_like = name.ends_with(".json") || name.ends_with(&id_hex);
        if size <= SMALL || (config_like && size <= CONFIG_MAX) {
            let mut bytes = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut bytes)?;
            let digest = Digest::of(&bytes);
            if &digest == walk.image_id && seen.insert(digest.clone()) {
                on_item(Exported::Config(bytes));
            } else if walk.wanted.contains(&digest) && seen.insert(digest.clone()) {
                let s = compress_stream(&mut &bytes[..], walk.codec, walk.pool, walk.spool)?;
                on_item(layer(s, false));
            }
            continue;
        }
        if walk.stream_over.is_some_and(|min| size > min) {
            streamed_entry(&mut entry, walk, &mut seen, &mut on_item)?;
            continue;
        }
        let s = compress_stream(&mut entry, walk.codec, walk.pool, walk.spool)?;
        if walk.wanted.contains(&s.diff_id) && seen.insert(s.diff_id.clone()) {
            on_item(layer(s, false));
        }
    }
    Ok(())
}

fn layer(s: Streamed, streamed: bool) -> Exported {
    Exported::Layer {
        diff_id: s.diff_id,
        size: s.size,
        compressed: s.compressed,
        streamed,
    }
}

/// Compresses a large entry announced as [`Exported::Growing`] first.
fn streamed_entry(
    entry: &mut dyn Read,
    walk: &Walk<'_>,
    seen: &mut HashSet<Digest>,
    on_item: &mut impl FnMut(Exported),
) -> std::io::Result<()> {
    let file = Arc::new(tempfile::tempfile_in(walk.spool)?);
    let (growth, rx) = watch::channel(Growth::Writing(0));
    on_item(Exported::Growing(GrowingBlob {
        file: file.clone(),
        growth: rx,
    }));
    // An error drops `growth`, which ends the followers as abandoned.
    let s = compress_to(entry, walk.codec, walk.pool, file, &mut |n| {
        growth.send_replace(Growth::Writing(n));
    })?;
    if walk.wanted.contains(&s.diff_id) && seen.insert(s.diff_id.clone()) {
        let (digest, size) = (s.compressed.digest.clone(), s.compressed.size);
        // The layer is reported before any follower can finish with it.
        on_item(layer(s, true));
        growth.send_replace(Growth::Done { digest, size });
    } else {
        growth.send_replace(Growth::Abandoned);
    }
    Ok(())
}

/// An OCI-layout blob whose name is a digest neither wanted nor the config's
/// (its content would not be used; the name is only trusted to skip work).
fn unwanted_oci_blob(name: &str, wanted: &HashSet<Digest>, id_hex: &str) -> bool {
    let Some(hex) = name.strip_prefix("blobs/sha256/") else {
        return false;
    };
    hex != id_hex
        && format!("sha256:{hex}")
            .parse::<Digest>()
            .is_ok_and(|d| !wanted.contains(&d))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tar of `files` (name, bytes), for tests of archive readers.
    pub(crate) fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
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
        let pool = CompressPool::new(2);
        let config = br#"{"rootfs":{}}"#;
        let (l1, l2) = (b"layer-one".as_slice(), b"layer-two".as_slice());
        // Larger than SMALL: compressed while read, before its digest is known.
        let big: Vec<u8> = (0..1_500_000u32).map(|i| (i % 253) as u8).collect();
        let other_big: Vec<u8> = big.iter().map(|b| b ^ 1).collect();
        let id = Digest::of(config);
        let want: HashSet<_> = [Digest::of(l1), Digest::of(l2), Digest::of(&big)].into();
        for files in [
            vec![
                ("abc/layer.tar", l1),
                ("abc/json", b"{}".as_slice()),
                ("def/layer.tar", l2),
                ("def/layer.tar2", l1),
                ("ghi/layer.tar", big.as_slice()),
                ("jkl/layer.tar", other_big.as_slice()),
                ("x.json", config.as_slice()),
                ("manifest.json", b"[]".as_slice()),
            ],
            vec![
                ("blobs/sha256/aa", l2),
                ("blobs/sha256/bb", config.as_slice()),
                ("blobs/sha256/cc", b"other".as_slice()),
                ("blobs/sha256/dd", l1),
                ("blobs/sha256/ee", other_big.as_slice()),
                ("blobs/sha256/ff", big.as_slice()),
                ("index.json", b"{}".as_slice()),
            ],
        ] {
            let mut got = Vec::new();
            let walk = Walk {
                image_id: &id,
                wanted: &want,
                spool: dir.path(),
                codec: Codec::Gzip {
                    level: 1,
                    adaptive: true,
                },
                pool: &pool,
                stream_over: None,
            };
            walk_export(&tar_of(&files)[..], &walk, |i| got.push(i)).unwrap();
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
            let sizes = [(Digest::of(l1), 9), (Digest::of(l2), 9)];
            let big_entry = (Digest::of(&big), big.len() as u64);
            assert_eq!(layers, sizes.into_iter().chain([big_entry]).collect());
            for item in got {
                if let Exported::Layer {
                    diff_id,
                    compressed,
                    ..
                } = item
                {
                    use std::io::{Seek, SeekFrom};
                    let mut file = &*compressed.file;
                    file.seek(SeekFrom::Start(0)).unwrap();
                    let mut gz = Vec::new();
                    file.read_to_end(&mut gz).unwrap();
                    assert_eq!(Digest::of(&gz), compressed.digest);
                    let mut raw = Vec::new();
                    flate2::read::GzDecoder::new(&gz[..])
                        .read_to_end(&mut raw)
                        .unwrap();
                    assert_eq!(Digest::of(&raw), diff_id);
                }
            }
        }
    }

    #[test]
    fn large_entries_are_announced_and_end_done_or_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let pool = CompressPool::new(2);
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let other: Vec<u8> = big.iter().map(|b| b ^ 1).collect();
        let id = Digest::of(b"{}");
        let want: HashSet<_> = [Digest::of(&big)].into();
        let walk = Walk {
            image_id: &id,
            wanted: &want,
            spool: dir.path(),
            codec: Codec::Gzip {
                level: 1,
                adaptive: true,
            },
            pool: &pool,
            stream_over: Some(SMALL),
        };
        let files = [("a/layer.tar", other.as_slice()), ("b/layer.tar", &big)];
        let mut got = Vec::new();
        walk_export(&tar_of(&files)[..], &walk, |i| got.push(i)).unwrap();
        let [
            Exported::Growing(unwanted),
            Exported::Growing(wanted),
            Exported::Layer {
                compressed,
                streamed: true,
                ..
            },
        ] = &got[..]
        else {
            panic!("{got:?}")
        };
        assert_eq!(*unwanted.growth.borrow(), Growth::Abandoned);
        let done = Growth::Done {
            digest: compressed.digest.clone(),
            size: compressed.size,
        };
        assert_eq!(*wanted.growth.borrow(), done);
        assert_eq!(wanted.file.metadata().unwrap().len(), compressed.size);
    }
}
