//! Secrets kept out of logs, at the logging layer: every formatted log line
//! passes through [`redact`] before it is written ([`RedactingWriter`], set
//! up by the binary). Two nets: values registered at the moment they enter
//! the process ([`register`]: build-arg values when a recipe is loaded,
//! registry credentials and tokens when they are found), in every encoding a
//! dependency may log them in (raw, JSON string, URL query); and patterns that
//! carry secrets whatever their value (`buildargs=` in Engine API URLs,
//! `Authorization`/`X-Registry-Auth` headers, `password` fields).

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::{LazyLock, RwLock};

use regex::Regex;

/// Shown instead of a secret.
pub const MASK: &str = "<redacted>";

/// Registered values shorter than this are not replaced: they cannot be told
/// apart from ordinary words (`1`, `on`); the patterns still apply.
pub const MIN_LEN: usize = 4;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Patterns that carry secrets whatever their value.
static PATTERNS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?i)(buildargs=)[^&\s]*",
        r#"|((?:authorization|x-registry-auth|x-amz-security-token)"?\s*[:=]\s*"?)[^",\s]+(?:\s+[^",\s]+)?"#,
        r#"|("?\b(?:password|passwd|secret|token|identitytoken|registrytoken)\b"?\s*[:=]\s*"?)[^",&\s}]+"#,
    ))
    .expect("the redaction patterns compile")
});

/// Registers `value` (and its JSON-escaped and URL-encoded forms) as a
/// secret that no later log line may contain.
pub fn register(value: &str) {
    if value.chars().count() < MIN_LEN {
        return;
    }
    let json = serde_json::to_string(value).unwrap_or_default();
    let json = json.trim_matches('"').to_string();
    let forms = [
        value.to_string(),
        url::form_urlencoded::byte_serialize(value.as_bytes()).collect(),
        url::form_urlencoded::byte_serialize(json.as_bytes()).collect(),
        json,
    ];
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    for f in forms {
        if !secrets.contains(&f) {
            secrets.push(f);
        }
    }
    // Longest first, so a value containing another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret and every secret-carrying pattern
/// masked.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    {
        let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), MASK));
            }
        }
    }
    if PATTERNS.is_match(&out) {
        let masked = PATTERNS.replace_all(&out, |c: &regex::Captures<'_>| {
            let kept = (1..=3).find_map(|i| c.get(i)).map_or("", |m| m.as_str());
            format!("{kept}{MASK}")
        });
        out = Cow::Owned(masked.into_owned());
    }
    out
}

/// An `io::Write` that redacts what passes through. The tracing formatter
/// writes each event with one `write_all`, so a secret is never split
/// between two writes.
pub struct RedactingWriter<W: Write>(pub W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Standard error through [`RedactingWriter`], for
/// `tracing_subscriber::fmt().with_writer(redact::stderr)`.
pub fn stderr() -> RedactingWriter<io::Stderr> {
    RedactingWriter(io::stderr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_are_masked_in_every_encoding() {
        register("s3cr3t value/ä");
        // As the Docker client sends build args: JSON, then URL-encoded.
        let json = serde_json::json!({ "A": "s3cr3t value/ä" }).to_string();
        let url = format!(
            "/build?t=x&labels={}",
            url::form_urlencoded::byte_serialize(json.as_bytes()).collect::<String>()
        );
        for line in [
            "x s3cr3t value/ä y".to_string(),
            "\"s3cr3t value/ä\"".to_string(),
            url::form_urlencoded::byte_serialize("s3cr3t value/ä".as_bytes()).collect(),
            url,
        ] {
            let out = redact(&line);
            assert!(!out.contains("s3cr3t"), "{line} -> {out}");
        }
        register("ab");
        assert_eq!(redact("ab cd"), "ab cd", "short values are left alone");
    }

    #[test]
    fn secret_carrying_patterns_are_masked_whatever_the_value() {
        for (line, secret) in [
            ("GET /build?buildargs=%7B%22X%22%3A%22zz%22%7D&t=a", "zz"),
            ("authorization: Basic a2lsbjpwdw==", "a2lsbjpwdw"),
            ("Authorization: Bearer eyJhbGc.x.y", "eyJhbGc"),
            (r#"{"username":"u","password":"hunter22"}"#, "hunter22"),
            ("x-registry-auth: eyJ1c2Vy", "eyJ1c2Vy"),
        ] {
            let out = redact(line);
            assert!(!out.contains(secret), "{line} -> {out}");
            assert!(out.contains(MASK), "{out}");
        }
        assert_eq!(redact("nothing to hide"), "nothing to hide");
        let call = "calling GetAuthorizationToken: ok";
        assert_eq!(redact(call), call, "names that merely contain a word stay");
    }

    #[test]
    fn the_writer_redacts_what_it_passes_on() {
        register("canary-writer-1234");
        let mut w = RedactingWriter(Vec::new());
        w.write_all(b"buildargs contain canary-writer-1234\n")
            .unwrap();
        let text = String::from_utf8(w.0).unwrap();
        assert!(!text.contains("canary-writer-1234"), "{text}");
    }
}
