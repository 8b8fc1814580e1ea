//! Who is looking at a page: the API's `Authorization: Bearer` header, or
//! the token the login form stored in the `kiln_token` cookie (HttpOnly,
//! SameSite=Strict, Path=/, Secure when the daemon speaks TLS; the value is
//! the token base64url-encoded so any token text is a valid cookie value).
//!
//! CSRF: every state-changing form carries the value of the `kiln_csrf`
//! cookie (random, set on the first page view) in a hidden `csrf` field; a
//! POST authenticated by cookie is refused unless the two match and the
//! browser does not call the request cross-site (`Sec-Fetch-Site`). A POST
//! authenticated by the `Authorization` header needs neither: browsers never
//! attach that header on their own.

use axum::http::{HeaderMap, HeaderValue, Method, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::daemon::DaemonState;
use crate::daemon::auth::{self, AuthError, Principal, Role};

/// The cookie holding the token.
pub const TOKEN_COOKIE: &str = "kiln_token";
/// The cookie holding the CSRF value forms echo.
pub const CSRF_COOKIE: &str = "kiln_csrf";
/// How long the token cookie lives (seconds).
pub const TOKEN_MAX_AGE: u32 = 8 * 3600;

/// How cookies are set: `secure` adds the `Secure` attribute (TLS daemons).
#[derive(Debug, Clone, Copy)]
pub struct CookiePolicy {
    /// The daemon serves HTTPS.
    pub secure: bool,
}

impl CookiePolicy {
    fn cookie(self, name: &str, value: &str, max_age: u32) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let text =
            format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
        HeaderValue::from_str(&text).expect("cookie values are base64url or hex")
    }

    /// `Set-Cookie` storing `token`.
    pub fn token(self, token: &str) -> HeaderValue {
        self.cookie(TOKEN_COOKIE, &URL_SAFE_NO_PAD.encode(token), TOKEN_MAX_AGE)
    }

    /// `Set-Cookie` removing the token.
    pub fn clear_token(self) -> HeaderValue {
        self.cookie(TOKEN_COOKIE, "", 0)
    }

    /// `Set-Cookie` storing a CSRF value (lives as long as the token).
    pub fn csrf(self, value: &str) -> HeaderValue {
        self.cookie(CSRF_COOKIE, value, TOKEN_MAX_AGE)
    }
}

/// A fresh CSRF value: 128 random bits in hex.
pub fn new_csrf() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// The value of cookie `name`, if the request has it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The token in the `kiln_token` cookie, decoded.
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    let raw = cookie(headers, TOKEN_COOKIE).filter(|v| !v.is_empty())?;
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    String::from_utf8(bytes).ok()
}

/// How a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `Authorization: Bearer …`.
    Header,
    /// The login cookie.
    Cookie,
}

/// Why a page request was refused.
#[derive(Debug)]
pub enum Denied {
    /// No credentials at all: send the browser to the login form.
    Anonymous,
    /// A credential that does not (or no longer) match a configured token.
    Invalid(Via),
    /// A valid token whose role is too low.
    Forbidden(AuthError),
}

/// The `Authorization` value to check for a request: the header when
/// present, else the login cookie as a bearer credential.
pub fn credential(headers: &HeaderMap) -> Option<(String, Via)> {
    if let Some(h) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return Some((h.to_string(), Via::Header));
    }
    cookie_token(headers).map(|t| (format!("Bearer {t}"), Via::Cookie))
}

/// Whether `method` reads only (the API accepts the cookie for these, so a
/// page's `EventSource` can follow a log).
pub fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Authenticates a page request for `needs`.
pub fn viewer(
    state: &DaemonState,
    headers: &HeaderMap,
    needs: Role,
) -> Result<(Principal, Via), Denied> {
    let (presented, via) = credential(headers).ok_or(Denied::Anonymous)?;
    match auth::authorize(&state.config().tokens, Some(&presented), needs) {
        Ok(p) => Ok((p, via)),
        Err(AuthError::Missing | AuthError::Invalid) => Err(Denied::Invalid(via)),
        Err(e @ AuthError::Forbidden { .. }) => Err(Denied::Forbidden(e)),
    }
}

/// Why a state-changing form was refused before it was looked at.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    /// The browser says the form came from another site.
    #[error("cross-site form submission refused")]
    CrossSite,
    /// The hidden field does not match the cookie (or either is missing).
    #[error("the form has expired or did not come from this page; reload the page and try again")]
    Mismatch,
}

/// Checks a cookie-authenticated form: same-site, and `field` equal to the
/// `kiln_csrf` cookie.
pub fn check_csrf(headers: &HeaderMap, field: &str) -> Result<(), CsrfError> {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(site, Some(s) if s != "same-origin" && s != "none") {
        return Err(CsrfError::CrossSite);
    }
    let expected = cookie(headers, CSRF_COOKIE).unwrap_or("");
    if expected.is_empty() || !auth::constant_time_eq(expected.as_bytes(), field.as_bytes()) {
        return Err(CsrfError::Mismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cookies_round_trip_any_token_text() {
        let p = CookiePolicy { secure: true };
        let set = p.token("a b;c=d");
        let text = set.to_str().unwrap();
        assert!(text.contains("HttpOnly") && text.contains("SameSite=Strict"));
        assert!(text.ends_with("; Secure"));
        let value = text.split(';').next().unwrap();
        let h = headers(&[("cookie", &format!("x=1; {value}"))]);
        assert_eq!(cookie_token(&h).as_deref(), Some("a b;c=d"));
        let plain = CookiePolicy { secure: false }.token("t");
        assert!(!plain.to_str().unwrap().contains("Secure"));
    }

    #[test]
    fn the_header_wins_over_the_cookie() {
        let h = headers(&[
            ("authorization", "Bearer h"),
            (
                "cookie",
                &format!("{TOKEN_COOKIE}={}", URL_SAFE_NO_PAD.encode("c")),
            ),
        ]);
        assert_eq!(credential(&h), Some(("Bearer h".into(), Via::Header)));
    }

    #[test]
    fn csrf_needs_the_matching_cookie_and_a_same_site_request() {
        let ok = headers(&[
            ("cookie", "kiln_csrf=abc"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(check_csrf(&ok, "abc"), Ok(()));
        assert_eq!(check_csrf(&ok, "abd"), Err(CsrfError::Mismatch));
        assert_eq!(check_csrf(&ok, ""), Err(CsrfError::Mismatch));
        let none = headers(&[]);
        assert_eq!(check_csrf(&none, ""), Err(CsrfError::Mismatch));
        let cross = headers(&[
            ("cookie", "kiln_csrf=abc"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert_eq!(check_csrf(&cross, "abc"), Err(CsrfError::CrossSite));
    }
}
