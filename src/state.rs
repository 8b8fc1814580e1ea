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

/// `url` with any password replaced by `***`.
pub fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
