//! Layer compression: gzip from a spooled file to an anonymous temp file,
//! hashing the output as it is written. Deterministic (mtime 0, no name), so
//! the same layer and level always give the same digest. Runs on plain
//! threads, a bounded number at once (see [`CompressPool`]).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use crate::digest::{Digest, DigestWriter};

/// A compressed layer in an anonymous temp file (deleted when dropped).
#[derive(Debug)]
pub struct Compressed {
    /// Digest of the compressed bytes.
    pub digest: Digest,
    /// Size of the compressed bytes.
    pub size: u64,
    /// The file, positioned anywhere; read it with positional reads.
    pub file: File,
}

/// The cache key of a compression setting, e.g. `gzip-1` or `gzip-1-adaptive`.
pub fn compression_key(level: u32, adaptive: bool) -> String {
    if adaptive {
        format!("gzip-{level}-adaptive")
    } else {
        format!("gzip-{level}")
    }
}

/// Bytes per sample when probing compressibility.
const SAMPLE: u64 = 256 * 1024;

/// The level to use for `input`: `level`, or 0 (stored deflate blocks) when
/// three samples (start, middle, end) do not shrink by 3% at level 1, as
/// with random or already-compressed data. Stored is ~10× faster and, on
/// such data, smaller. A pure function of the bytes, so digests stay
/// reproducible.
pub fn adaptive_level(input: &File, level: u32) -> std::io::Result<u32> {
    use std::os::unix::fs::FileExt;
    let size = input.metadata()?.len();
    if level == 0 || size < 4 * SAMPLE {
        return Ok(level);
    }
    let mut probe = flate2::write::DeflateEncoder::new(Counter(0), flate2::Compression::new(1));
    let mut buf = vec![0u8; SAMPLE as usize];
    for at in [0, size / 2 - SAMPLE / 2, size - SAMPLE] {
        input.read_exact_at(&mut buf, at)?;
        probe.write_all(&buf)?;
    }
    let out = probe.finish()?.0;
    Ok(if out * 100 >= 3 * SAMPLE * 97 {
        0
    } else {
        level
    })
}

struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Tee {
    out: BufWriter<File>,
    hash: DigestWriter,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Gzips all of `input` (from its start) at `level` into a new temp file in
/// `dir`.
pub fn gzip_file(input: &File, level: u32, dir: &Path) -> std::io::Result<Compressed> {
    let mut input = input.try_clone()?;
    input.seek(SeekFrom::Start(0))?;
    let file = tempfile::tempfile_in(dir)?;
    let tee = Tee {
        out: BufWriter::with_capacity(256 * 1024, file.try_clone()?),
        hash: DigestWriter::new(),
    };
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(tee, flate2::Compression::new(level.min(9)));
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        gz.write_all(&buf[..n])?;
    }
    let mut tee = gz.finish()?;
    tee.flush()?;
    let Tee { out, hash } = tee;
    drop(out.into_inner().map_err(|e| e.into_error())?);
    let (digest, size) = hash.finish();
    Ok(Compressed { digest, size, file })
}

/// A job for the pool: compress `file`, then hand the result to `done`.
pub type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of threads running compression jobs in arrival order.
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
                    .name(format!("kiln-gzip-{i}"))
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

    #[test]
    fn incompressible_layers_are_stored_and_text_is_compressed() {
        let mut random = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..2_000_000).map(|_| fastrand::u8(..)).collect();
        random.write_all(&data).unwrap();
        assert_eq!(adaptive_level(&random, 1).unwrap(), 0);
        let mut text = tempfile::tempfile().unwrap();
        text.write_all(&b"kiln layer text ".repeat(200_000))
            .unwrap();
        assert_eq!(adaptive_level(&text, 1).unwrap(), 1);
    }

    #[test]
    fn gzip_is_deterministic_and_decompresses() {
        let dir = tempfile::tempdir().unwrap();
        let mut input = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        input.write_all(&data).unwrap();
        let a = gzip_file(&input, 1, dir.path()).unwrap();
        let b = gzip_file(&input, 1, dir.path()).unwrap();
        assert_eq!((a.digest.clone(), a.size), (b.digest, b.size));
        let mut f = a.file;
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut gz = Vec::new();
        f.read_to_end(&mut gz).unwrap();
        assert_eq!(Digest::of(&gz), a.digest);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }
}
