//! The structure tests' `metadataTest`: compares the image configuration
//! (env, unbound env, labels, exposed ports, volumes, entrypoint, cmd,
//! workdir, user) with what the file expects, as container-structure-test
//! does (ports by number, an empty workdir or user is not checked).

use std::collections::HashMap;
use std::time::Instant;

use bollard::models::ImageConfig;

use super::checks::{matches, result};
use super::report::{CheckKind, CheckResult};
use super::structure::MetadataTest;

/// The image's environment as a map.
pub(crate) fn image_env(c: &ImageConfig) -> HashMap<String, String> {
    c.env
        .iter()
        .flatten()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The `metadataTest` of structure-test file `file`.
pub(crate) fn check(c: &ImageConfig, m: &MetadataTest, file: &str) -> CheckResult {
    let start = Instant::now();
    let mut errors = Vec::new();
    let env = image_env(c);
    let labels = c.labels.clone().unwrap_or_default();
    for (what, want, have) in [
        ("env var", &m.env_vars, &env),
        ("label", &m.labels, &labels),
    ] {
        for e in want {
            match have.get(&e.key) {
                None => errors.push(format!("{what} {} not found in the image", e.key)),
                Some(v) if e.is_regex && !matches(&e.value, v) => {
                    errors.push(format!("{what} {}={v} does not match `{}`", e.key, e.value))
                }
                Some(v) if !e.is_regex && *v != e.value => {
                    errors.push(format!("{what} {}={v}, expected {}", e.key, e.value))
                }
                _ => {}
            }
        }
    }
    for e in &m.unbound_env_vars {
        if let Some(v) = env.get(&e.key) {
            errors.push(format!("env var {} is set ({v}) but must not be", e.key));
        }
    }
    // CST compares port numbers only (`8080`, whatever the protocol).
    let ports: Vec<String> = c.exposed_ports.clone().unwrap_or_default();
    let has_port = |p: &str| ports.iter().any(|x| x.split('/').next() == Some(p));
    for p in &m.exposed_ports {
        if !has_port(p) {
            let hint = if p.contains('/') {
                "; container-structure-test compares port numbers: write it without `/tcp`"
            } else {
                ""
            };
            errors.push(format!(
                "port {p} is not exposed (exposed: {ports:?}){hint}"
            ));
        }
    }
    for p in &m.unexposed_ports {
        if has_port(p) {
            errors.push(format!("port {p} is exposed"));
        }
    }
    let volumes: Vec<String> = c.volumes.clone().unwrap_or_default();
    for v in &m.volumes {
        if !volumes.contains(v) {
            errors.push(format!(
                "volume {v} is not declared (declared: {volumes:?})"
            ));
        }
    }
    for v in &m.unmounted_volumes {
        if volumes.contains(v) {
            errors.push(format!("volume {v} is declared"));
        }
    }
    let list = |x: &Option<Vec<String>>| x.clone().unwrap_or_default();
    if let Some(e) = &m.entrypoint
        && *e != list(&c.entrypoint)
    {
        errors.push(format!(
            "entrypoint is {:?}, expected {e:?}",
            list(&c.entrypoint)
        ));
    }
    if let Some(cmd) = &m.cmd
        && *cmd != list(&c.cmd)
    {
        errors.push(format!("cmd is {:?}, expected {cmd:?}", list(&c.cmd)));
    }
    let text = |x: &Option<String>| x.clone().unwrap_or_default();
    if let Some(w) = m.workdir.as_ref().filter(|w| !w.is_empty())
        && *w != text(&c.working_dir)
    {
        errors.push(format!(
            "workdir is `{}`, expected `{w}`",
            text(&c.working_dir)
        ));
    }
    if let Some(u) = m.user.as_ref().filter(|u| !u.is_empty())
        && *u != text(&c.user)
    {
        errors.push(format!("user is `{}`, expected `{u}`", text(&c.user)));
    }
    result(
        &format!("metadata ({file})"),
        CheckKind::Metadata,
        start,
        errors,
    )
}
