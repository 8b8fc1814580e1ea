//! The hash chain: canonical JSON of a record and the link hash
//! `sha256(previous hash text + canonical JSON)`. Pure functions, no IO.
//!
//! **Invariant:** the stored JSON text is what gets hashed; records are never
//! re-serialised for verification, so a future change to the record type
//! cannot break the hashes of old records.

use serde_json::Value;

use crate::digest::Digest;

/// Canonical JSON of a chain entry (record or event): object keys sorted, no
/// whitespace.
pub fn canonical_json(entry: &impl serde::Serialize) -> Result<String, serde_json::Error> {
    let value = serde_json::to_value(entry)?;
    let mut out = String::new();
    write_canonical(&value, &mut out)?;
    Ok(out)
}

/// Writes `value` with object keys sorted by their UTF-8 bytes and no
/// insignificant whitespace (RFC 8785 key order; kiln records hold no floats).
fn write_canonical(value: &Value, out: &mut String) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k)?);
                out.push(':');
                write_canonical(v, out)?;
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out)?;
            }
            out.push(']');
        }
        scalar => out.push_str(&serde_json::to_string(scalar)?),
    }
    Ok(())
}

/// The link hash of a record: sha256 of the previous record's hash as text
/// (`sha256:…`, empty for the first record) followed by the canonical JSON.
pub fn link_hash(prev: Option<&Digest>, canonical_json: &str) -> Digest {
    let mut w = crate::digest::DigestWriter::new();
    if let Some(p) = prev {
        w.update(p.to_string().as_bytes());
    }
    w.update(canonical_json.as_bytes());
    w.finish().0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_sorts_keys_recursively_and_drops_whitespace() {
        let v: Value = serde_json::from_str(r#"{ "b": [ {"z":1, "a":"x"} ], "a": null }"#).unwrap();
        let mut s = String::new();
        write_canonical(&v, &mut s).unwrap();
        assert_eq!(s, r#"{"a":null,"b":[{"a":"x","z":1}]}"#);
    }

    #[test]
    fn link_hash_depends_on_the_previous_hash() {
        let json = r#"{"a":1}"#;
        let first = link_hash(None, json);
        assert_eq!(first, Digest::of(json.as_bytes()));
        let second = link_hash(Some(&first), json);
        assert_ne!(first, second);
        assert_eq!(second, Digest::of(format!("{first}{json}").as_bytes()));
    }
}
