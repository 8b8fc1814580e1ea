//! `${KILN_NAME}` / `${KILN_NAME:-default}` expansion in the few recipe
//! fields that name hosts (`parentImage`, `oci.registry`), so one recipe works
//! whatever port the local registry got. Only `KILN_*` variables expand.

/// Expands `${KILN_…}` references; other `$` text is an error.
pub fn expand_env(input: &str) -> Result<String, String> {
    expand_with(input, |k| std::env::var(k).ok())
}

/// [`expand_env`] with a custom lookup (tests).
pub fn expand_with(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(body) = after.strip_prefix('{') else {
            return Err("`$` must start a `${KILN_NAME}` reference".into());
        };
        let end = body.find('}').ok_or("unterminated `${`")?;
        let inner = &body[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let valid = name.starts_with("KILN_")
            && name.len() > 5
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(format!("only `KILN_*` variables can be used, not `{name}`"));
        }
        match lookup(name)
            .filter(|v| !v.is_empty())
            .or(default.map(str::to_string))
        {
            Some(v) => out.push_str(&v),
            None => {
                return Err(format!(
                    "environment variable `{name}` is not set and has no default"
                ));
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_kiln_variables_only() {
        let look = |k: &str| (k == "KILN_REGISTRY").then(|| "127.0.0.1:5001".to_string());
        assert_eq!(
            expand_with("${KILN_REGISTRY:-127.0.0.1:5000}/kiln/base:1", look).unwrap(),
            "127.0.0.1:5001/kiln/base:1"
        );
        assert_eq!(expand_with("${KILN_OTHER:-x}/y", look).unwrap(), "x/y");
        assert!(expand_with("${HOME}/y", look).is_err());
        assert!(expand_with("${KILN_OTHER}", look).is_err());
        assert!(expand_with("$KILN_REGISTRY", look).is_err());
    }
}
