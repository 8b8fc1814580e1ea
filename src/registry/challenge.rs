//! Parsing `WWW-Authenticate` challenges (RFC 7235) as registries send them:
//! `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.

use std::collections::BTreeMap;

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercased: `bearer`, `basic`, …
    pub scheme: String,
    /// The auth-params, names lowercased.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// A parameter by (lowercase) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses every challenge in a `WWW-Authenticate` header value. Malformed
/// trailing input ends parsing; what parsed so far is returned.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    loop {
        p.skip(|c| c == b' ' || c == b',');
        let Some(token) = p.token() else { break };
        // Either a new scheme or `name=value` for the current challenge.
        p.skip(|c| c == b' ');
        if p.peek() == Some(b'=') && !out.is_empty() {
            p.i += 1;
            p.skip(|c| c == b' ');
            let Some(value) = p.value() else { break };
            if let Some(last) = out.last_mut() {
                last.params.insert(token.to_ascii_lowercase(), value);
            }
        } else {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.i;
        self.skip(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn value(&mut self) -> Option<String> {
        if self.peek() != Some(b'"') {
            // Lenient: unquoted values run to the next comma or space, so
            // unquoted URLs (seen in the wild) survive.
            let start = self.i;
            self.skip(|c| c != b',' && c != b' ');
            return (self.i > start)
                .then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned());
        }
        self.i += 1;
        let mut v = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => return Some(String::from_utf8_lossy(&v).into_owned()),
                b'\\' => {
                    if let Some(n) = self.peek() {
                        v.push(n);
                        self.i += 1;
                    }
                }
                _ => v.push(c),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer_challenge() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#;
        let c = parse_challenges(h);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/alpine:pull"));
    }

    #[test]
    fn basic_token_values_escapes_and_multiple_challenges() {
        let h = r#"Basic realm="Registry \"Realm\"", Bearer realm=https://a/t,Service=x , error="insufficient_scope""#;
        let c = parse_challenges(h);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some(r#"Registry "Realm""#));
        assert_eq!(c[1].param("realm"), Some("https://a/t"));
        assert_eq!(c[1].param("service"), Some("x"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
    }

    #[test]
    fn malformed_input_does_not_panic() {
        assert!(parse_challenges("").is_empty());
        let c = parse_challenges(r#"Bearer realm="unterminated"#);
        assert_eq!(c.len(), 1);
        assert!(c[0].params.is_empty());
        assert_eq!(parse_challenges("=== ,,")[..], []);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn quoted(v: &str) -> String {
        let mut s = String::from('"');
        for c in v.chars() {
            if c == '"' || c == '\\' {
                s.push('\\');
            }
            s.push(c);
        }
        s.push('"');
        s
    }

    fn challenge() -> impl Strategy<Value = Challenge> {
        (
            "[A-Za-z][A-Za-z0-9-]{0,8}",
            prop::collection::btree_map("[a-z][a-z_]{0,8}", "[ -~]{0,20}", 0..4),
        )
            .prop_map(|(scheme, params)| Challenge {
                scheme: scheme.to_ascii_lowercase(),
                params,
            })
    }

    proptest! {
        /// Any header value (registries are untrusted) ends without a panic.
        #[test]
        fn arbitrary_headers_never_panic(h in "\\PC{0,120}") {
            let _ = parse_challenges(&h);
        }

        /// Challenges written with quoted-string values (escapes included)
        /// parse back to themselves, in order.
        #[test]
        fn written_challenges_round_trip(cs in prop::collection::vec(challenge(), 1..4)) {
            let header = cs
                .iter()
                .map(|c| {
                    let params: Vec<String> = c
                        .params
                        .iter()
                        .map(|(k, v)| format!("{k}={}", quoted(v)))
                        .collect();
                    format!("{} {}", c.scheme, params.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", ");
            prop_assert_eq!(parse_challenges(&header), cs);
        }
    }
}
