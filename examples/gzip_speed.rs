//! Measures kiln's layer compression throughput (block-parallel gzip on
//! every core) on random data: `cargo run --example gzip_speed -- [MB] [LEVEL]`.
use std::io::{Seek, SeekFrom, Write};
use std::time::Instant;

use kiln::distribute::{Codec, CompressPool, compress_stream};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mb: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    let level: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut f = tempfile::tempfile()?;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mb {
        buf.iter_mut().for_each(|b| *b = fastrand::u8(..));
        f.write_all(&buf)?;
    }
    f.seek(SeekFrom::Start(0))?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pool = CompressPool::new(threads);
    let codec = Codec::Gzip {
        level,
        adaptive: true,
    };
    let t = Instant::now();
    let c = compress_stream(&mut f, codec, &pool, &std::env::temp_dir())?.compressed;
    let s = t.elapsed().as_secs_f64();
    println!(
        "gzip level {level}: {mb} MB in {s:.2} s = {:.0} MB/s (out {} bytes)",
        mb as f64 / s,
        c.size
    );
    let t = Instant::now();
    let d = kiln::digest::Digest::of(&buf);
    println!("sha256 1 MB: {:?} ({d})", t.elapsed());
    Ok(())
}
