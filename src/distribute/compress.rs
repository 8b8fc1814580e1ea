//! Layer compression as the export streams: a layer is cut into fixed
//! blocks, the blocks are compressed on a thread pool (one thread per core),
//! and the walker writes the results back in order to an anonymous temp file,
//! hashing them as it goes. Memory is bounded by the blocks in flight
//! ([`IN_FLIGHT_PER_THREAD`] × threads), whatever the layer or image size.
//!
//! gzip: one deflate stream, pigz-style — each block is raw deflate primed
//! with the previous 32 KiB (so back-references cross blocks and the ratio is
//! that of one stream) and ended with a sync flush; a final empty block ends
//! the stream; the gzip trailer's CRC-32 is combined from the blocks'.
//! "Adaptive": a block whose first 64 KiB do not shrink by 3% at level 1
//! (random or already-compressed data) is stored (level 0), ~10× faster and
//! smaller on such data. zstd: each block is one independent frame (a zstd
//! stream may hold several). Both are pure functions of the bytes and the
//! setting, so digests are reproducible; [`Codec::key`] keys the blob cache.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::digest::{Digest, DigestWriter};
use crate::load::Compression;

/// A compressed layer in an anonymous temp file (deleted when dropped).
#[derive(Debug)]
pub struct Compressed {
    /// Digest of the compressed bytes.
    pub digest: Digest,
    /// Size of the compressed bytes.
    pub size: u64,
    /// The file, positioned anywhere; read it with positional reads.
    pub file: Arc<File>,
}

/// One stream compressed by [`compress_stream`].
#[derive(Debug)]
pub struct Streamed {
    /// sha256 of the uncompressed bytes read.
    pub diff_id: Digest,
    /// Uncompressed size.
    pub size: u64,
    /// The compressed result.
    pub compressed: Compressed,
}

/// How layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// gzip (the default; every client pulls it).
    Gzip {
        /// Level 0–9.
        level: u32,
        /// Store blocks that do not compress.
        adaptive: bool,
    },
    /// zstd (`…layer.v1.tar+zstd`; containerd ≥ 1.5, Docker ≥ 23, podman).
    Zstd {
        /// Level 1–19.
        level: i32,
    },
}

/// Blocks queued or being compressed per pool thread: enough to keep every
/// thread busy while the walker waits for the oldest block.
pub const IN_FLIGHT_PER_THREAD: usize = 3;

/// Bytes of the previous block a gzip block may refer back to.
const WINDOW: usize = 32 * 1024;
/// Bytes of a block probed by the adaptive check.
const SAMPLE: usize = 64 * 1024;

/// The OCI media type of gzip layers (the parent's reused layers are gzip).
pub const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The OCI media type of zstd layers.
pub const ZSTD_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// The zstd level kiln uses (zstd's own default).
pub const ZSTD_LEVEL: i32 = 3;

impl Codec {
    /// The codec of a target's `compression`, with the gzip tuning given.
    pub fn of(compression: Compression, gzip_level: u32, adaptive: bool) -> Codec {
        match compression {
            Compression::Gzip => Codec::Gzip {
                level: gzip_level.min(9),
                adaptive,
            },
            Compression::Zstd => Codec::Zstd { level: ZSTD_LEVEL },
        }
    }

    /// The cache key of this setting, e.g. `gzip-1-b1m-adaptive`, `zstd-3-b2m`.
    /// (`b…`: the block size; the unblocked keys of older kiln versions
    /// name other digests and are never read.)
    pub fn key(&self) -> String {
        match self {
            Codec::Gzip { level, adaptive } => {
                let a = if *adaptive { "-adaptive" } else { "" };
                format!("gzip-{level}-b1m{a}")
            }
            Codec::Zstd { level } => format!("zstd-{level}-b2m"),
        }
    }

    /// The OCI layer media type.
    pub fn media_type(&self) -> &'static str {
        match self {
            Codec::Gzip { .. } => GZIP_LAYER,
            Codec::Zstd { .. } => ZSTD_LAYER,
        }
    }

    /// Uncompressed bytes per block.
    pub fn block_size(&self) -> usize {
        match self {
            Codec::Gzip { .. } => 1024 * 1024,
            Codec::Zstd { .. } => 2 * 1024 * 1024,
        }
    }

    fn header(&self) -> &'static [u8] {
        match self {
            // Magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
            Codec::Gzip { .. } => &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255],
            Codec::Zstd { .. } => &[],
        }
    }

    /// Compresses one block. `dict`: the end of the previous block (gzip).
    /// `last`: the (possibly empty) block that ends the stream; `only`: no
    /// block came before it.
    pub fn block(
        &self,
        dict: &[u8],
        data: &[u8],
        last: bool,
        only: bool,
    ) -> std::io::Result<Vec<u8>> {
        match *self {
            Codec::Gzip { level, adaptive } => {
                let level = if adaptive && level > 0 && !compresses(data)? {
                    0
                } else {
                    level
                };
                deflate_block(level, dict, data, last)
            }
            Codec::Zstd { level } => {
                if data.is_empty() && !only {
                    return Ok(Vec::new());
                }
                zstd::bulk::compress(data, level)
            }
        }
    }

    /// The gzip trailer: CRC-32 and size (mod 2^32) of `raw` bytes.
    fn trailer(&self, crc: crc32fast::Hasher, raw: u64) -> Vec<u8> {
        match self {
            Codec::Gzip { .. } => {
                let mut t = crc.finalize().to_le_bytes().to_vec();
                t.extend_from_slice(&(raw as u32).to_le_bytes());
                t
            }
            Codec::Zstd { .. } => Vec::new(),
        }
    }
}

/// Whether the start of `data` shrinks by 3% at level 1 (small blocks: yes).
fn compresses(data: &[u8]) -> std::io::Result<bool> {
    if data.len() < SAMPLE {
        return Ok(true);
    }
    let out = deflate_block(1, &[], &data[..SAMPLE], true)?.len();
    Ok(out * 100 < SAMPLE * 97)
}

/// Raw deflate of `data` primed with `dict`, ended by a sync flush (or, when
/// `last`, by the final block).
fn deflate_block(level: u32, dict: &[u8], data: &[u8], last: bool) -> std::io::Result<Vec<u8>> {
    use flate2::{Compress, FlushCompress, Status};
    let mut c = Compress::new(flate2::Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(std::io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() + data.len() / 8 + 1024);
    loop {
        let read = c.total_in() as usize;
        let status = c
            .compress_vec(&data[read..], &mut out, flush)
            .map_err(std::io::Error::other)?;
        let done = c.total_in() as usize == data.len() && out.len() < out.capacity();
        match status {
            Status::StreamEnd => break,
            _ if done && !last => break,
            _ => out.reserve(64 * 1024),
        }
    }
    Ok(out)
}

/// A block's result: compressed bytes and the CRC of its input.
/// (crc32fast: the carry-less multiply path; flate2's `Crc` on zlib-rs took
/// its portable one, 3% of a push's CPU.)
type BlockResult = std::io::Result<(Vec<u8>, crc32fast::Hasher)>;

/// Reads all of `input`, hashing it, and compresses it with `codec` on
/// `pool` into a new temp file in `dir`.
pub fn compress_stream(
    input: &mut dyn Read,
    codec: Codec,
    pool: &CompressPool,
    dir: &Path,
) -> std::io::Result<Streamed> {
    let file = Arc::new(tempfile::tempfile_in(dir)?);
    compress_to(input, codec, pool, file, &mut |_| {})
}

/// [`compress_stream`] into `file` (empty), calling `on_written` with the
/// bytes written so far after each write: a reader may follow the file
/// with positional reads while it grows.
pub fn compress_to(
    input: &mut dyn Read,
    codec: Codec,
    pool: &CompressPool,
    file: Arc<File>,
    on_written: &mut dyn FnMut(u64),
) -> std::io::Result<Streamed> {
    let mut hash_out = DigestWriter::new();
    let mut hash_in = DigestWriter::new();
    let mut crc = crc32fast::Hasher::new();
    let mut pending: VecDeque<mpsc::Receiver<BlockResult>> = VecDeque::new();
    let mut written = 0u64;
    let mut write = |bytes: &[u8]| -> std::io::Result<()> {
        hash_out.update(bytes);
        (&*file).write_all(bytes)?;
        written += bytes.len() as u64;
        on_written(written);
        Ok(())
    };
    write(codec.header())?;
    let mut dict: Arc<Vec<u8>> = Arc::new(Vec::new());
    let mut first = true;
    let limit = IN_FLIGHT_PER_THREAD * pool.threads();
    loop {
        let data = read_block(input, codec.block_size())?;
        hash_in.update(&data);
        let last = data.is_empty();
        let (tx, rx) = mpsc::sync_channel(1);
        let (prev, only) = (dict.clone(), first);
        if codec_uses_dict(codec) {
            dict = Arc::new(data[data.len().saturating_sub(WINDOW)..].to_vec());
        }
        pool.submit(Box::new(move || {
            let mut c = crc32fast::Hasher::new();
            c.update(&data);
            let _ = tx.send(codec.block(&prev, &data, last, only).map(|b| (b, c)));
        }));
        pending.push_back(rx);
        first = false;
        while pending.len() >= limit || (last && !pending.is_empty()) {
            let (bytes, c) = pending
                .pop_front()
                .expect("not empty")
                .recv()
                .map_err(std::io::Error::other)??;
            crc.combine(&c);
            write(&bytes)?;
        }
        if last {
            break;
        }
    }
    let (diff_id, raw) = hash_in.finish();
    write(&codec.trailer(crc, raw))?;
    let (digest, size) = hash_out.finish();
    Ok(Streamed {
        diff_id,
        size: raw,
        compressed: Compressed { digest, size, file },
    })
}

fn codec_uses_dict(codec: Codec) -> bool {
    matches!(codec, Codec::Gzip { .. })
}

/// Up to `size` bytes (fewer only at the end of `input`).
fn read_block(input: &mut dyn Read, size: usize) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(size);
    input.take(size as u64).read_to_end(&mut data)?;
    Ok(data)
}

/// A job for the pool.
pub type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads running jobs in arrival order.
pub struct CompressPool {
    jobs: Option<mpsc::Sender<Job>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CompressPool {
    /// Starts `threads` workers (at least one).
    pub fn new(threads: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("kiln-compress-{i}"))
                    .spawn(move || {
                        loop {
                            let job = rx.lock().expect("pool lock").recv();
                            match job {
                                Ok(job) => job(),
                                Err(_) => break,
                            }
                        }
                    })
                    .expect("spawning a compression thread")
            })
            .collect();
        CompressPool {
            jobs: Some(tx),
            threads,
        }
    }

    /// The number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Queues a job.
    pub fn submit(&self, job: Job) {
        if let Some(tx) = &self.jobs {
            let _ = tx.send(job);
        }
    }
}

impl Drop for CompressPool {
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    fn roundtrip(codec: Codec, data: &[u8], pool: &CompressPool) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let s = compress_stream(&mut &data[..], codec, pool, dir.path()).unwrap();
        assert_eq!((s.diff_id, s.size), (Digest::of(data), data.len() as u64));
        let mut f = &*s.compressed.file;
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        assert_eq!(Digest::of(&bytes), s.compressed.digest);
        assert_eq!(bytes.len() as u64, s.compressed.size);
        let mut out = Vec::new();
        match codec {
            Codec::Gzip { .. } => flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut out),
            Codec::Zstd { .. } => zstd::stream::read::Decoder::new(&bytes[..])
                .unwrap()
                .read_to_end(&mut out),
        }
        .unwrap();
        assert_eq!(out, data, "{codec:?} round trip");
        bytes
    }

    #[test]
    fn blocked_streams_decompress_to_the_input_and_are_deterministic() {
        let pool = CompressPool::new(3);
        let text: Vec<u8> = b"kiln layer text, somewhat repetitive; ".repeat(120_000);
        let random: Vec<u8> = (0..3_300_000).map(|_| fastrand::u8(..)).collect();
        let mut mixed = text.clone();
        mixed.extend_from_slice(&random);
        for codec in [
            Codec::Gzip {
                level: 1,
                adaptive: true,
            },
            Codec::Gzip {
                level: 6,
                adaptive: false,
            },
            Codec::Zstd { level: ZSTD_LEVEL },
        ] {
            for data in [&b""[..], b"x", &text, &mixed, &text[..1024 * 1024]] {
                let a = roundtrip(codec, data, &pool);
                let b = roundtrip(codec, data, &pool);
                assert_eq!(a, b, "{codec:?} is deterministic");
            }
        }
        // Cross-block references keep the ratio of one stream.
        let one = {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
            gz.write_all(&text).unwrap();
            gz.finish().unwrap().len()
        };
        let blocked = roundtrip(
            Codec::Gzip {
                level: 1,
                adaptive: true,
            },
            &text,
            &pool,
        )
        .len();
        assert!(
            blocked * 100 < one * 105,
            "blocked {blocked} vs one stream {one}"
        );
        // Random data is stored: at most a little larger than the input.
        let stored = roundtrip(
            Codec::Gzip {
                level: 1,
                adaptive: true,
            },
            &random,
            &pool,
        )
        .len();
        assert!(stored < random.len() + random.len() / 100, "{stored}");
    }
}
