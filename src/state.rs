//! Where kiln keeps its state (issue 15): the records, the run queue and the
//! run log. `--state sqlite:PATH` (or nothing: the project's
//! `.kiln/state/kiln.db`) is one host's embedded database; `--state
//! postgres://USER@HOST:PORT/DB` is a cluster's shared database, which every
//! node and every reading command (`kiln records`, `kiln approved`) opens
//! alike. The records follow it (`record::Records::open`), and so does the
//! daemon's run queue (`daemon::queue::open`: SQLite, or the cluster's
//! queue in `daemon::cluster`).

use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The state store named by `--state` or the operator config's `state:`.
#[derive(Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// One SQLite file (the default: the project's record database).
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by a cluster's nodes; the URL may hold a
    /// password, so it is never printed as is ([`StateLocation::describe`]).
    Postgres(String),
}

/// Why a `--state` value is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{given}` is not a state store: use `sqlite:PATH` or `postgres://USER@HOST:PORT/DB`")]
pub struct StateLocationError {
    /// What was given (a password replaced by `***`).
    pub given: String,
}

impl StateLocation {
    /// The default: the SQLite record database of the project at `root`.
    pub fn project_default(root: &Path) -> StateLocation {
        StateLocation::Sqlite(crate::record::db_path(root))
    }

    /// For messages: the path, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            StateLocation::Sqlite(p) => format!("sqlite:{}", p.display()),
            StateLocation::Postgres(url) => redact_password(url),
        }
    }

    /// Whether this is a cluster's shared database.
    pub fn is_postgres(&self) -> bool {
        matches!(self, StateLocation::Postgres(_))
    }
}

impl std::fmt::Debug for StateLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl FromStr for StateLocation {
    type Err = StateLocationError;

    /// `sqlite:PATH` or `postgres://…` / `postgresql://…`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let refuse = || StateLocationError {
            given: redact_password(s),
        };
        if let Some(path) = s.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(refuse());
            }
            return Ok(StateLocation::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return match url::Url::parse(s) {
                Ok(u) if u.host_str().is_some_and(|h| !h.is_empty()) => {
                    Ok(StateLocation::Postgres(s.to_string()))
                }
                _ => Err(refuse()),
            };
        }
        Err(refuse())
    }
}

/// `url` with any password replaced by `***`: the user-info password, and
/// every `password=` value (query parameters, libpq `key=value` strings).
/// A value that does not parse as a URL (a typo in the port, an unescaped
/// `/` or `#` in the password) has all its user-info hidden.
pub fn redact_password(url: &str) -> String {
    let userinfo_hidden = match url::Url::parse(url) {
        Ok(mut u) if u.has_host() => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        _ => hide_userinfo(url),
    };
    hide_password_values(&userinfo_hidden)
}

/// `scheme://***@rest` for `scheme://anything@rest` (the last `@`; any
/// number of slashes after the scheme's `:`).
fn hide_userinfo(url: &str) -> String {
    let Some(colon) = url.find(':') else {
        return url.to_string();
    };
    let start = colon + 1 + url[colon + 1..].len() - url[colon + 1..].trim_start_matches('/').len();
    match url.rfind('@') {
        Some(at) if at >= start => format!("{}***{}", &url[..start], &url[at..]),
        _ => url.to_string(),
    }
}

/// Every `password=VALUE` (case-insensitive; the value runs to the next
/// `&`, space or end) with VALUE replaced by `***`.
fn hide_password_values(text: &str) -> String {
    const KEY: &str = "password=";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    while let Some(found) = lower[rest..].find(KEY) {
        let value = rest + found + KEY.len();
        out.push_str(&text[rest..value]);
        out.push_str("***");
        rest = text[value..]
            .find(|c: char| c == '&' || c.is_whitespace())
            .map_or(text.len(), |end| value + end);
    }
    out.push_str(&text[rest..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_even_in_urls_that_do_not_parse() {
        let cases = [
            (
                "postgres://kiln:hunter2@db:5432/kiln",
                "postgres://kiln:***@db:5432/kiln",
            ),
            (
                "postgres://kiln:hunter2@db:5433x/kiln",
                "postgres://***@db:5433x/kiln",
            ),
            ("postgres://kiln:a/b#c@db/kiln", "postgres://***@db/kiln"),
            (
                "postgres://db/kiln?user=k&password=hunter2&sslmode=disable",
                "postgres://db/kiln?user=k&password=***&sslmode=disable",
            ),
            (
                "host=db PASSWORD=hunter2 user=k",
                "host=db PASSWORD=*** user=k",
            ),
            ("postgres://kiln@db/kiln", "postgres://kiln@db/kiln"),
        ];
        for (given, want) in cases {
            let got = redact_password(given);
            assert_eq!(got, want, "{given}");
            assert!(!got.contains("hunter2"), "{got}");
        }
        assert_eq!(
            redact_password("postgres:/kiln:hunter2@db"),
            "postgres:/***@db"
        );
        let refused = "postgres:/kiln:hunter2@db"
            .parse::<StateLocation>()
            .unwrap_err();
        assert!(!refused.to_string().contains("hunter2"), "{refused}");
    }

    #[test]
    fn sqlite_and_postgres_locations_parse_and_others_are_refused() {
        assert_eq!(
            "sqlite:/var/lib/kiln/kiln.db".parse(),
            Ok(StateLocation::Sqlite("/var/lib/kiln/kiln.db".into()))
        );
        assert_eq!(
            "sqlite:rel/k.db".parse(),
            Ok(StateLocation::Sqlite("rel/k.db".into()))
        );
        let pg: StateLocation = "postgres://kiln:pw@127.0.0.1:5432/kiln".parse().unwrap();
        assert!(pg.is_postgres());
        assert_eq!(pg.describe(), "postgres://kiln:***@127.0.0.1:5432/kiln");
        assert!(!format!("{pg:?}").contains("pw"));
        for bad in ["", "sqlite:", "mysql://x/y", "/tmp/k.db", "postgres:///db"] {
            let e = bad.parse::<StateLocation>().unwrap_err();
            assert!(e.to_string().contains("sqlite:PATH"), "{bad}: {e}");
        }
        let e = "mysql://u:secret@h/db"
            .parse::<StateLocation>()
            .unwrap_err();
        assert!(!e.to_string().contains("secret"));
    }
}
