//! The built-in secret scan of an exported image (`docker save`, classic or
//! OCI layout), read as one stream: every layer tar is walked as it passes
//! (its diff id hashed on the way, gzip layers decompressed), every regular
//! text file scanned line by line ([`super::secrets::scan_reader`]), and the
//! image config — environment, labels, command, and the history's
//! `created_by` lines — scanned field by field. Nothing is spooled, so memory
//! does not grow with the image.

use std::io::{BufRead, BufReader, Read};

use sha2::{Digest as _, Sha256};

use super::Finding;
use super::secrets::{self, Hit};

/// The source name of kiln's own findings.
pub const SOURCE: &str = "kiln-secrets";
/// At most this many findings are kept per image (the rest are counted).
pub const MAX_FINDINGS: usize = 1000;
/// Largest JSON entry read as a possible image config.
const MAX_CONFIG: u64 = 8 << 20;

/// What a scan saw.
#[derive(Debug, Default)]
pub struct Scanned {
    /// The findings (at most [`MAX_FINDINGS`]).
    pub findings: Vec<Finding>,
    /// Findings beyond the cap.
    pub dropped: usize,
    /// Layers walked.
    pub layers: usize,
    /// Text files scanned.
    pub files: u64,
}

impl Scanned {
    fn add(&mut self, f: Finding) {
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(f);
        } else {
            self.dropped += 1;
        }
    }
}

fn finding(hit: &Hit, path: String, line: u64) -> Finding {
    let mut f = Finding::new(SOURCE, hit.rule, hit.severity, Some(path), &hit.secret);
    f.line = Some(line);
    f.message = format!("{} `{}`", hit.what, secrets::mask(&hit.secret));
    f
}

/// Scans a `docker save` stream.
pub fn scan_archive<R: Read>(r: R) -> std::io::Result<Scanned> {
    let mut out = Scanned::default();
    let mut archive = tar::Archive::new(r);
    for entry in archive.entries()? {
        let entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let size = entry.header().size()?;
        let mut head = BufReader::with_capacity(64 * 1024, entry);
        let sniff = head.fill_buf()?;
        let is_tar = sniff.len() > 262 && &sniff[257..262] == b"ustar";
        let is_gzip = sniff.starts_with(&[0x1f, 0x8b]);
        let is_json = sniff.first() == Some(&b'{');
        if is_tar {
            scan_layer(head, &mut out)?;
        } else if is_gzip {
            scan_layer(flate2::read::GzDecoder::new(head), &mut out)?;
        } else if is_json && size <= MAX_CONFIG {
            let mut text = String::new();
            head.read_to_string(&mut text)?;
            scan_config(&text, &mut out);
        }
    }
    Ok(out)
}

/// Hashes what it passes on (the layer's diff id).
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn scan_layer<R: Read>(r: R, out: &mut Scanned) -> std::io::Result<()> {
    let first = out.findings.len();
    let mut hashing = Hashing {
        inner: r,
        hash: Sha256::new(),
    };
    {
        let mut layer = tar::Archive::new(&mut hashing);
        for entry in layer.entries()? {
            let entry = entry?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = format!("/{}", entry.path()?.display());
            if path
                .rsplit('/')
                .next()
                .is_some_and(|n| n.starts_with(".wh."))
            {
                continue;
            }
            let mut hits = Vec::new();
            if secrets::scan_reader(entry, |line, h| hits.push((line, h)))? {
                out.files += 1;
            }
            for (line, h) in hits {
                out.add(finding(&h, path.clone(), line));
            }
        }
    }
    std::io::copy(&mut hashing, &mut std::io::sink())?;
    let diff_id = format!("sha256:{}", hex::encode(hashing.hash.finalize()));
    for f in &mut out.findings[first..] {
        f.layer = Some(diff_id.clone());
    }
    out.layers += 1;
    Ok(())
}

/// The image config (a JSON with `rootfs`); manifests and indexes are not.
fn scan_config(text: &str, out: &mut Scanned) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    if v.get("rootfs").is_none() {
        return;
    }
    let mut fields = Vec::new();
    for key in ["config", "container_config", "history"] {
        if let Some(sub) = v.get(key) {
            strings(sub, key.to_string(), &mut fields);
        }
    }
    for (field, value) in fields {
        for (i, line) in value.lines().enumerate() {
            for h in secrets::scan_line(line) {
                out.add(finding(&h, format!("config:{field}"), i as u64 + 1));
            }
        }
    }
}

/// Every string under `v`, with its path (`config.Env[2]`).
fn strings(v: &serde_json::Value, at: String, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::String(s) => out.push((at, s.clone())),
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                strings(x, format!("{at}[{i}]"), out);
            }
        }
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                strings(x, format!("{at}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// Every finding for `image`: kiln's secret scan (streamed from the engine,
/// or read from the archive the hooks get) and each scanner hook's. With
/// hooks, the image is saved once to a temporary docker-archive, removed
/// when this returns.
pub async fn collect(
    docker: &bollard::Docker,
    image: &str,
    config: &crate::operator::findings::FindingsConfig,
) -> Result<Scanned, super::FindingsError> {
    use futures_util::StreamExt;
    use std::io::Write;
    let io = |source| super::FindingsError::Scan {
        image: image.to_string(),
        source,
    };
    if config.scanners.is_empty() {
        if !config.secrets {
            return Ok(Scanned::default());
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
        let (docker, name) = (docker.clone(), image.to_string());
        let pump = tokio::spawn(async move {
            let mut stream = docker.export_image(&name);
            while let Some(chunk) = stream.next().await {
                let stop = chunk.is_err();
                let sent = tx.send(chunk.map_err(std::io::Error::other)).await;
                if sent.is_err() || stop {
                    break;
                }
            }
        });
        let reader = crate::distribute::export::ChannelReader::new(rx);
        let scanned = tokio::task::spawn_blocking(move || scan_archive(reader)).await;
        pump.abort();
        return scanned
            .map_err(|e| io(std::io::Error::other(e)))?
            .map_err(io);
    }
    let mut archive = tempfile::NamedTempFile::new().map_err(io)?;
    let mut stream = docker.export_image(image);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| super::FindingsError::Docker {
            image: image.to_string(),
            source,
        })?;
        archive.as_file_mut().write_all(&chunk).map_err(io)?;
    }
    archive.as_file_mut().flush().map_err(io)?;
    let mut scanned = Scanned::default();
    if config.secrets {
        let file = archive.reopen().map_err(io)?;
        let s = tokio::task::spawn_blocking(move || scan_archive(file)).await;
        scanned = s.map_err(|e| io(std::io::Error::other(e)))?.map_err(io)?;
    }
    for hook in &config.scanners {
        for f in super::hooks::run(hook, archive.path()).await? {
            scanned.add(f);
        }
    }
    Ok(scanned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribute::export::tests::tar_of;

    #[test]
    fn finds_secrets_in_layers_and_in_the_history_with_their_place() {
        let key = format!("AKIA{}", "KILNCANARY7TESTQ");
        let layer = tar_of(&[
            ("bin/tool", b"\x7fELF\0\0binary".as_slice()),
            (
                "etc/app/creds",
                format!("[default]\nkey = {key}\n").as_bytes(),
            ),
        ]);
        let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&layer)));
        let config = serde_json::json!({
            "rootfs": {"type": "layers"},
            "config": {"Env": ["PATH=/bin"]},
            "history": [{"created_by": format!("RUN echo {key} > /x")}],
        })
        .to_string();
        let save = tar_of(&[
            ("abc/layer.tar", &layer),
            ("abc.json", config.as_bytes()),
            ("manifest.json", b"[{\"Config\":\"abc.json\"}]"),
        ]);
        let s = scan_archive(save.as_slice()).unwrap();
        assert_eq!((s.layers, s.files), (1, 1));
        let places: Vec<_> = s
            .findings
            .iter()
            .map(|f| (f.layer.clone(), f.path.clone().unwrap(), f.line))
            .collect();
        assert_eq!(
            places,
            [
                (Some(diff_id), "/etc/app/creds".to_string(), Some(2)),
                (None, "config:history[0].created_by".to_string(), Some(1)),
            ]
        );
        assert!(!s.findings.iter().any(|f| f.message.contains(&key[4..])));
    }
}
