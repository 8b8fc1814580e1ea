//! Dotenv files (`containerRunOptions.envFile`): `KEY=VALUE` lines, read
//! the way container-structure-test's loader (godotenv) reads them for the
//! common cases.

/// A shell variable name.
pub(super) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A dotenv file: `KEY=VALUE` lines, optional `export `, `#` comments, single
/// or double quotes. Entries with an empty key or value are dropped, as CST's
/// loader (godotenv) does. Errors carry the 1-based line.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, (u64, String)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err((i as u64 + 1, format!("expected KEY=VALUE, found `{line}`")));
        };
        let k = k.trim();
        if !is_identifier(k) {
            return Err((i as u64 + 1, format!("`{k}` is not a variable name")));
        }
        let v = v.trim();
        let v = if let Some(q) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            q.replace("\\n", "\n").replace("\\\"", "\"")
        } else if let Some(q) = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            q.to_string()
        } else {
            v.split(" #").next().unwrap_or(v).trim().to_string()
        };
        if !v.is_empty() {
            out.push((k.to_string(), v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dotenv_lines() {
        let v = parse("# c\nexport A=1\nB=\"two words\"\nC='x'\nEMPTY=\n").unwrap();
        assert_eq!(
            v,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x".into())
            ]
        );
        assert_eq!(parse("A=1\nnot a line\n").unwrap_err().0, 2);
    }
}
