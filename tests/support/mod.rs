//! Shared setup for integration tests: the real services brought up by
//! `scripts/services up`. Tests fail (never skip) when they are missing.
#![allow(dead_code)]

use std::sync::Once;

/// Loads `<repo>/target/services.env` into the environment when
/// `DOCKER_HOST` is unset, once per test binary.
pub fn services() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("DOCKER_HOST").is_some() {
            return;
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/services.env");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "DOCKER_HOST is unset and {path} cannot be read ({e}); run `scripts/services up`"
            )
        });
        for line in text.lines() {
            let Some((k, v)) = line
                .trim()
                .strip_prefix("export ")
                .and_then(|l| l.split_once('='))
            else {
                continue;
            };
            if std::env::var_os(k).is_none() {
                // SAFETY: runs once, before any test in this binary reads the environment.
                unsafe { std::env::set_var(k, v.trim_matches('"')) };
            }
        }
    });
}
