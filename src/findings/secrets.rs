//! kiln's built-in secret rules and the streaming line scanner. A file is
//! read in bounded chunks: lines longer than [`MAX_LINE`] are scanned in
//! pieces of that size, so memory does not grow with the file; a file whose
//! first 8 KiB hold a NUL byte is treated as binary and skipped. What is
//! reported never contains the secret: [`mask`] keeps four characters.

use std::io::{BufRead, BufReader, Read};
use std::sync::LazyLock;

use regex::Regex;

use super::Severity;

/// Longest piece of a line scanned at once (bytes).
pub const MAX_LINE: usize = 16 * 1024;
/// How much of a file decides whether it is binary.
const SNIFF: usize = 8 * 1024;

/// One rule: a pattern whose group 1 is the secret.
struct Rule {
    id: &'static str,
    severity: Severity,
    what: &'static str,
    regex: Regex,
    /// Minimum Shannon entropy (bits per character) of the secret.
    min_entropy: f64,
}

fn rule(
    id: &'static str,
    severity: Severity,
    what: &'static str,
    re: &str,
    min_entropy: f64,
) -> Rule {
    Rule {
        id,
        severity,
        what,
        regex: Regex::new(re).expect("secret rule regex"),
        min_entropy,
    }
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    use Severity::*;
    vec![
        rule(
            "aws-access-key-id",
            Critical,
            "AWS access key id",
            r"\b((?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z0-9]{16})\b",
            0.0,
        ),
        rule(
            "aws-secret-access-key",
            Critical,
            "AWS secret access key",
            r#"(?i)aws.{0,24}?(?:secret|sk).{0,24}?[\s"':=]+([A-Za-z0-9/+=]{40})(?:[^A-Za-z0-9/+=]|$)"#,
            3.0,
        ),
        rule(
            "private-key",
            Critical,
            "private key",
            r"(-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)",
            0.0,
        ),
        rule(
            "github-token",
            High,
            "GitHub token",
            r"\b(gh[pousr]_[A-Za-z0-9]{36,255})\b",
            3.0,
        ),
        rule(
            "github-token",
            High,
            "GitHub token",
            r"\b(github_pat_[A-Za-z0-9_]{60,255})\b",
            3.0,
        ),
        rule(
            "gitlab-token",
            High,
            "GitLab token",
            r"\b(glpat-[A-Za-z0-9_-]{20,})\b",
            3.0,
        ),
        rule(
            "slack-token",
            High,
            "Slack token",
            r"\b(xox[abposr]-[A-Za-z0-9-]{10,})\b",
            3.0,
        ),
        rule(
            "google-api-key",
            High,
            "Google API key",
            r"\b(AIza[0-9A-Za-z_-]{35})\b",
            3.0,
        ),
        rule(
            "stripe-key",
            High,
            "Stripe secret key",
            r"\b([rs]k_live_[0-9A-Za-z]{20,})\b",
            3.0,
        ),
        rule(
            "npm-token",
            High,
            "npm token",
            r"\b(npm_[A-Za-z0-9]{36})\b",
            3.0,
        ),
        rule(
            "high-entropy-assignment",
            Medium,
            "high-entropy value assigned to a secret-looking name",
            r#"(?i)(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential)[a-z0-9_.-]*["']?\s*[:=]\s*["']?([A-Za-z0-9+/=_.@!#%^*~-]{16,})"#,
            4.0,
        ),
    ]
});

/// A secret found on one line.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Rule id (`aws-access-key-id`, …).
    pub rule: &'static str,
    /// How bad.
    pub severity: Severity,
    /// What it looks like, for the message.
    pub what: &'static str,
    /// The secret itself: hashed into the finding id, never shown.
    pub secret: String,
    /// 1-based column.
    pub column: usize,
}

/// Shannon entropy of `s` in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// `AKIA…(20 chars)`: the first four characters and the length.
pub fn mask(secret: &str) -> String {
    let head: String = secret.chars().take(4).collect();
    format!("{head}…({} chars)", secret.chars().count())
}

/// The secrets on one line (one per rule and position).
pub fn scan_line(line: &str) -> Vec<Hit> {
    let mut out: Vec<Hit> = Vec::new();
    for r in RULES.iter() {
        for c in r.regex.captures_iter(line) {
            let Some(m) = c.get(1) else { continue };
            let s = m.as_str();
            if s.contains("${") || s.contains("{{") || entropy(s) < r.min_entropy {
                continue;
            }
            // A token a specific rule found is not also an assignment.
            if out
                .iter()
                .any(|h| h.secret.contains(s) || s.contains(&h.secret))
            {
                continue;
            }
            out.push(Hit {
                rule: r.id,
                severity: r.severity,
                what: r.what,
                secret: s.to_string(),
                column: m.start() + 1,
            });
        }
    }
    out
}

/// Any rule's pattern: a batch of lines none of them matches is skipped
/// without looking at its lines one by one.
static ANY: LazyLock<regex::RegexSet> = LazyLock::new(|| {
    regex::RegexSet::new(RULES.iter().map(|r| r.regex.as_str())).expect("secret rule set")
});

/// Size of a batch of whole lines checked against [`ANY`] at once.
const BATCH: usize = 64 * 1024;

/// Lines gathered for one [`ANY`] check: the text and the number of its
/// first line.
struct Batch {
    text: Vec<u8>,
    first: u64,
}

impl Batch {
    fn flush(&mut self, hit: &mut impl FnMut(u64, Hit)) {
        if self.text.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.text);
        if ANY.is_match(&text) {
            for (i, line) in text.split('\n').enumerate() {
                for h in scan_line(line) {
                    hit(self.first + i as u64, h);
                }
            }
        }
        self.text.clear();
    }
}

/// Scans a text stream line by line; `hit` gets the 1-based line and each
/// hit. Binary streams (a NUL in the first 8 KiB) are skipped: returns
/// `Ok(false)`.
pub fn scan_reader<R: Read>(r: R, mut hit: impl FnMut(u64, Hit)) -> std::io::Result<bool> {
    let mut r = BufReader::with_capacity(BATCH, r);
    let head = r.fill_buf()?;
    if head[..head.len().min(SNIFF)].contains(&0) {
        return Ok(false);
    }
    let mut line_no = 1u64;
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    let mut batch = Batch {
        text: Vec::with_capacity(BATCH + MAX_LINE),
        first: 1,
    };
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        let (take, ends_line) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        let take_now = take.min(room.max(1));
        line.extend_from_slice(&chunk[..take_now]);
        r.consume(take_now);
        let complete = ends_line && take_now == take;
        if !complete && line.len() < MAX_LINE {
            continue;
        }
        // A piece of an over-long line is scanned on its own.
        if !complete {
            batch.flush(&mut hit);
            batch.first = line_no;
            batch.text.extend_from_slice(&line);
            batch.flush(&mut hit);
            line.clear();
            continue;
        }
        if batch.text.is_empty() {
            batch.first = line_no;
        }
        batch
            .text
            .extend_from_slice(line.strip_suffix(b"\n").unwrap_or(&line));
        batch.text.push(b'\n');
        line.clear();
        line_no += 1;
        if batch.text.len() >= BATCH {
            batch.text.pop();
            batch.flush(&mut hit);
        }
    }
    if !line.is_empty() {
        if batch.text.is_empty() {
            batch.first = line_no;
        }
        batch.text.extend_from_slice(&line);
    } else {
        batch.text.pop();
    }
    batch.flush(&mut hit);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary() -> String {
        format!("AKIA{}", "KILNCANARY7TESTQ")
    }

    #[test]
    fn finds_each_kind_and_masks_it() {
        let key = canary();
        let h = scan_line(&format!("aws_access_key_id = {key}"));
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!((h[0].rule, h[0].column), ("aws-access-key-id", 21));
        assert!(!mask(&h[0].secret).contains(&key[4..]), "masked");
        let secret = "kIlN/ExAmPlE+sEcReT0kEy1234567890abcdefG";
        let h = scan_line(&format!("aws_secret_access_key={secret}"));
        assert_eq!(h[0].rule, "aws-secret-access-key", "{h:?}");
        let pem = format!("-----BEGIN {}PRIVATE KEY-----", "EC ");
        assert_eq!(scan_line(&pem)[0].rule, "private-key");
        let gh = format!("token: ghp_{}", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8");
        assert_eq!(scan_line(&gh)[0].rule, "github-token");
        let h = scan_line("DB_PASSWORD=Zx8#qLm2Vb7!Tr9Kw4Pn");
        assert_eq!(h[0].rule, "high-entropy-assignment", "{h:?}");
    }

    #[test]
    fn placeholders_and_low_entropy_values_are_not_secrets() {
        assert!(scan_line("password = ${DB_PASSWORD_FROM_ENV}").is_empty());
        assert!(scan_line("token: aaaaaaaaaaaaaaaaaaaaaaaa").is_empty());
        assert!(scan_line("AKIA is a prefix").is_empty());
    }

    #[test]
    fn lines_are_counted_and_binary_is_skipped() {
        let text = format!("one\ntwo\nkey={}\n", canary());
        let mut found = Vec::new();
        assert!(scan_reader(text.as_bytes(), |l, h| found.push((l, h.rule))).unwrap());
        assert_eq!(found, [(3, "aws-access-key-id")]);
        let bin = [b"\x7fELF\0\0".as_slice(), canary().as_bytes()].concat();
        assert!(!scan_reader(bin.as_slice(), |_, _| panic!("binary")).unwrap());
    }

    #[test]
    fn a_huge_line_is_scanned_in_bounded_pieces() {
        let mut text = "x".repeat(MAX_LINE * 3);
        text.push_str(&format!(" {}\nnext\n", canary()));
        let mut found = Vec::new();
        scan_reader(text.as_bytes(), |l, h| found.push((l, h.rule))).unwrap();
        assert_eq!(found, [(1, "aws-access-key-id")]);
    }
}
