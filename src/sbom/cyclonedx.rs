//! The SBOM as a CycloneDX 1.5 JSON document (plain data, no IO): one
//! `library` component per package with its purl, one `file` component per
//! regular file with its SHA-256, the image as `metadata.component`, and
//! what kiln could not read as `metadata.properties` (`dev.kiln:unsupported`).

use std::collections::HashSet;

use serde_json::{Value, json};

use super::Sbom;
use super::packages::{Ecosystem, Package};
use crate::digest::Digest;

/// `specVersion` written.
pub const SPEC_VERSION: &str = "1.5";
/// The in-toto `predicateType` of a CycloneDX SBOM.
pub const PREDICATE_TYPE: &str = "https://cyclonedx.org/bom";

/// Percent-encodes a purl name or version (RFC 3986 unreserved kept).
fn purl_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `pkg:deb/debian/NAME@VERSION?arch=ARCH`; the namespace is the image's
/// `os-release` `ID` (else the ecosystem's usual one).
pub fn purl(p: &Package, distro: Option<&str>) -> String {
    let namespace = distro.unwrap_or(match p.ecosystem {
        Ecosystem::Deb => "debian",
        Ecosystem::Apk => "alpine",
        Ecosystem::Rpm => "redhat",
    });
    let mut out = format!(
        "pkg:{}/{}/{}@{}",
        p.ecosystem.purl_type(),
        purl_encode(namespace),
        purl_encode(&p.name),
        purl_encode(&p.version)
    );
    if let Some(a) = &p.arch {
        out.push_str(&format!("?arch={}", purl_encode(a)));
    }
    out
}

/// A version-4-shaped UUID URN derived from `digest` (same image, same
/// serial number).
fn serial(digest: &Digest) -> String {
    let h = digest.hex();
    format!(
        "urn:uuid:{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// The CycloneDX document for `sbom`, describing the image `name` whose
/// config digest is `image_id`.
pub fn document(sbom: &Sbom, name: &str, image_id: &Digest) -> Value {
    let mut refs = HashSet::new();
    let mut components: Vec<Value> = Vec::new();
    for p in &sbom.packages {
        let purl = purl(p, sbom.distro.as_deref());
        let mut bom_ref = purl.clone();
        let mut n = 1;
        while !refs.insert(bom_ref.clone()) {
            n += 1;
            bom_ref = format!("{purl}#{n}");
        }
        components.push(json!({
            "type": "library",
            "bom-ref": bom_ref,
            "name": p.name,
            "version": p.version,
            "purl": purl,
            "properties": [{ "name": "dev.kiln:package-database", "value": format!("/{}", p.database) }],
        }));
    }
    for f in &sbom.files {
        components.push(json!({
            "type": "file",
            "bom-ref": format!("file:{}", f.path),
            "name": f.path,
            "hashes": [{ "alg": "SHA-256", "content": f.sha256.hex() }],
        }));
    }
    let properties: Vec<Value> = sbom
        .unsupported
        .iter()
        .map(|u| json!({ "name": "dev.kiln:unsupported", "value": u }))
        .collect();
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": serial(image_id),
        "version": 1,
        "metadata": {
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "tools": { "components": [{ "type": "application", "name": "kiln", "version": env!("CARGO_PKG_VERSION") }] },
            "component": { "type": "container", "bom-ref": "image", "name": name, "version": image_id.to_string() },
            "properties": properties,
        },
        "components": components,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_encode_epochs_and_pluses() {
        let p = Package {
            ecosystem: Ecosystem::Deb,
            name: "libstdc++6".into(),
            version: "1:12.2.0-14".into(),
            arch: Some("amd64".into()),
            database: "var/lib/dpkg/status".into(),
        };
        assert_eq!(
            purl(&p, None),
            "pkg:deb/debian/libstdc%2B%2B6@1%3A12.2.0-14?arch=amd64"
        );
        let s = serial(&Digest::of(b"x"));
        assert_eq!(s.len(), "urn:uuid:".len() + 36, "{s}");
    }
}
