//! Where a request may go after the registry points elsewhere: upload
//! `Location`s and HTTP redirects. The rule (go-containerregistry's, for the
//! same reason): credentials only go to the registry's own origin (scheme,
//! host, port); any other origin gets the request without `Authorization`;
//! plain HTTP only where [`scheme_for`] allows it (loopback, configured
//! insecure), so a registry cannot downgrade kiln to HTTP.

use reqwest::Url;

use super::config::{RegistryConfig, Scheme, scheme_for};
use super::error::RegistryError;

/// `host[:port]` of `url` as [`scheme_for`] expects it (port only when given).
fn host_port(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

/// Whether plain HTTP may be used to reach `url`'s host.
fn plain_http_allowed(url: &Url, config: &RegistryConfig) -> bool {
    scheme_for(&host_port(url), config) == Scheme::Http
}

/// Whether `url` has the same origin as `base` (the registry's API URL):
/// only then may the registry's credentials go with it.
pub(crate) fn same_origin(url: &str, base: &str) -> bool {
    match (Url::parse(url), Url::parse(base)) {
        (Ok(u), Ok(b)) => u.origin() == b.origin(),
        _ => false,
    }
}

/// The URL without its query and fragment (they may carry signatures), for
/// messages.
pub(crate) fn redacted(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => url.split(['?', '#']).next().unwrap_or_default().to_string(),
    }
}

/// Resolves a `Location` value against the registry's `base` URL (relative
/// paths stay on the registry) and checks the scheme rule.
pub(crate) fn resolve(
    registry: &str,
    what: &'static str,
    base: &str,
    location: &str,
    config: &RegistryConfig,
) -> Result<String, RegistryError> {
    let refused = |reason| RegistryError::RefusedLocation {
        registry: registry.to_string(),
        what,
        location: redacted(location),
        reason,
    };
    let base = Url::parse(base).map_err(|_| refused("the registry URL does not parse"))?;
    let url = base
        .join(location)
        .map_err(|_| refused("not a URL or path"))?;
    match url.scheme() {
        "https" => Ok(url.to_string()),
        "http" if plain_http_allowed(&url, config) => Ok(url.to_string()),
        "http" => Err(refused(
            "plain http to a host that is neither loopback nor configured insecure",
        )),
        _ => Err(refused("only http and https locations are followed")),
    }
}

/// The redirect policy of every client: at most 10 hops, never to plain HTTP
/// where [`scheme_for`] says HTTPS. (reqwest itself drops `Authorization`
/// when a redirect leaves the origin.)
pub(crate) fn redirect_policy(config: &RegistryConfig) -> reqwest::redirect::Policy {
    let config = config.clone();
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 10 {
            attempt.error("more than 10 redirects")
        } else if attempt.url().scheme() == "https"
            || (attempt.url().scheme() == "http" && plain_http_allowed(attempt.url(), &config))
        {
            attempt.follow()
        } else {
            attempt.error("redirect to plain http refused (registry::scheme_for)")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_default(base: &str, location: &str) -> Result<String, RegistryError> {
        resolve(
            "r",
            "blob upload",
            base,
            location,
            &RegistryConfig::default(),
        )
    }

    #[test]
    fn relative_locations_stay_on_the_registry() {
        let got = resolve_default("https://reg.io", "/v2/a/blobs/uploads/u?_state=x").unwrap();
        assert_eq!(got, "https://reg.io/v2/a/blobs/uploads/u?_state=x");
        assert!(same_origin(&got, "https://reg.io"));
    }

    #[test]
    fn credentials_only_for_the_same_origin() {
        assert!(same_origin("https://reg.io:443/v2/x", "https://reg.io"));
        assert!(!same_origin("https://other.io/v2/x", "https://reg.io"));
        assert!(!same_origin("http://reg.io/v2/x", "https://reg.io"));
        assert!(!same_origin(
            "http://127.0.0.1:5001/v2/x",
            "http://127.0.0.1:5000"
        ));
        assert!(!same_origin("not a url", "https://reg.io"));
    }

    #[test]
    fn downgrades_to_plain_http_are_refused() {
        for bad in [
            "http://reg.io/v2/u",
            "http://evil.example/u",
            "ftp://reg.io/u",
        ] {
            let e = resolve_default("https://reg.io", bad).unwrap_err();
            assert!(matches!(e, RegistryError::RefusedLocation { .. }), "{bad}");
        }
        // Loopback is plain HTTP by the same rule as the registry itself.
        assert!(resolve_default("https://reg.io", "http://127.0.0.1:9/u").is_ok());
        assert!(resolve_default("http://127.0.0.1:5000", "https://cdn.example/u").is_ok());
    }

    #[test]
    fn messages_drop_signed_queries() {
        let e = resolve_default("https://reg.io", "http://evil.example/u?sig=SECRET").unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }
}
