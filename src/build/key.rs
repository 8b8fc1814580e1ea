//! The build key: one sha256 over every named input that goes into an image.
//! Pure: no IO. Two builds with equal keys produce equivalent images, so a key
//! that already exists on the daemon means the build can be skipped; comparing
//! the named input maps of two keys says which input changed.

use crate::load::build_settings::Builder;
use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use super::context::{ContextEntry, ContextManifest};
use crate::digest::Digest;
use crate::reference::ImageReference;

/// Bumped whenever the key's meaning or kiln's build output changes, so old
/// keys stop matching.
pub const KEY_FORMAT_VERSION: &str = "kiln-build-key/1";

/// A component as it enters the build: its document digest and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInput {
    /// Component name.
    pub name: String,
    /// sha256 of the component document.
    pub document: Digest,
    /// Parameter values.
    pub parameters: BTreeMap<String, String>,
}

/// Everything the key is made from.
#[derive(Debug, Clone, Copy)]
pub struct KeyInputs<'a> {
    /// Rendered Dockerfile.
    pub dockerfile: &'a str,
    /// Base images as written and as used.
    pub base_images: &'a [(ImageReference, ImageReference)],
    /// The build context.
    pub context: &'a ContextManifest,
    /// Components in order.
    pub components: &'a [ComponentInput],
    /// Build args.
    pub build_args: &'a BTreeMap<String, String>,
    /// Target stage.
    pub target: Option<&'a str>,
    /// Platform.
    pub platform: Option<&'a str>,
    /// Labels that are inputs (not `created`, not the key itself).
    pub labels: &'a BTreeMap<String, String>,
    /// The builder; only BuildKit is an input, so classic keys stay as
    /// they were before there was a choice.
    pub builder: Builder,
    /// Build secrets: id → source (`env NAME`, `file PATH`, …), never a value.
    pub secrets: &'a BTreeMap<String, String>,
}

/// A build key and the named inputs it was made from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuildKey {
    /// The key.
    pub digest: Digest,
    /// Input name → digest, e.g. `dockerfile`, `base/…`, `context/app/main.js`,
    /// `component/01-hello-site`, `build-arg/NAME`, `label/…`.
    pub inputs: BTreeMap<String, Digest>,
}

/// How one named input differs between two keys.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "change", content = "input", rename_all = "lowercase")]
pub enum InputChange {
    /// New input.
    Added(String),
    /// Input gone.
    Removed(String),
    /// Same input, different digest.
    Changed(String),
}

impl std::fmt::Display for InputChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputChange::Added(n) => write!(f, "{n} (added)"),
            InputChange::Removed(n) => write!(f, "{n} (removed)"),
            InputChange::Changed(n) => write!(f, "{n} (changed)"),
        }
    }
}

/// Length-prefixed fields, so no two different field lists hash alike.
fn fields(parts: &[&str]) -> Digest {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    Digest::from_hasher(h)
}

fn context_input(e: &ContextEntry) -> (String, Digest) {
    (format!("context/{}", e.path), e.digest.clone())
}

/// Computes the key of `inputs`.
pub fn build_key(inputs: &KeyInputs<'_>) -> BuildKey {
    let mut map = BTreeMap::new();
    map.insert(
        "format".to_string(),
        Digest::of(KEY_FORMAT_VERSION.as_bytes()),
    );
    map.insert(
        "dockerfile".to_string(),
        Digest::of(inputs.dockerfile.as_bytes()),
    );
    for (written, used) in inputs.base_images {
        // A pinned base is its digest; an unpinned one only its name.
        let used_text = used.to_string();
        map.insert(format!("base/{written}"), fields(&["base", &used_text]));
    }
    map.extend(inputs.context.entries.iter().map(context_input));
    for (i, c) in inputs.components.iter().enumerate() {
        let doc = c.document.to_string();
        let mut parts = vec!["component", c.name.as_str(), doc.as_str()];
        for (k, v) in &c.parameters {
            parts.push(k);
            parts.push(v);
        }
        map.insert(format!("component/{:02}-{}", i + 1, c.name), fields(&parts));
    }
    for (k, v) in inputs.build_args {
        map.insert(format!("build-arg/{k}"), fields(&["build-arg", k, v]));
    }
    if let Some(t) = inputs.target {
        map.insert("target".to_string(), fields(&["target", t]));
    }
    if let Some(p) = inputs.platform {
        map.insert("platform".to_string(), fields(&["platform", p]));
    }
    for (k, v) in inputs.labels {
        map.insert(format!("label/{k}"), fields(&["label", k, v]));
    }
    if inputs.builder == Builder::Buildkit {
        map.insert("builder".to_string(), fields(&["builder", "buildkit"]));
    }
    for (id, source) in inputs.secrets {
        map.insert(format!("secret/{id}"), fields(&["secret", id, source]));
    }
    let mut h = Sha256::new();
    for (name, digest) in &map {
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update(digest.hex().as_bytes());
    }
    BuildKey {
        digest: Digest::from_hasher(h),
        inputs: map,
    }
}

impl BuildKey {
    /// The inputs that differ from `previous` (sorted by name).
    pub fn changes_since(&self, previous: &BTreeMap<String, Digest>) -> Vec<InputChange> {
        let mut out = Vec::new();
        for (name, d) in &self.inputs {
            match previous.get(name) {
                None => out.push(InputChange::Added(name.clone())),
                Some(p) if p != d => out.push(InputChange::Changed(name.clone())),
                Some(_) => {}
            }
        }
        for name in previous.keys() {
            if !self.inputs.contains_key(name) {
                out.push(InputChange::Removed(name.clone()));
            }
        }
        out.sort_by(|a, b| change_name(a).cmp(change_name(b)));
        out
    }
}

fn change_name(c: &InputChange) -> &str {
    match c {
        InputChange::Added(n) | InputChange::Removed(n) | InputChange::Changed(n) => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(df: &str, args: &BTreeMap<String, String>, params: &str) -> BuildKey {
        let base = ImageReference::parse("127.0.0.1:5000/kiln/base:1").unwrap();
        let pinned = base.pinned(Digest::of(b"base"));
        let bases = [(base, pinned)];
        let comps = [ComponentInput {
            name: "c".into(),
            document: Digest::of(b"doc"),
            parameters: [("Greeting".to_string(), params.to_string())].into(),
        }];
        let ctx = ContextManifest::default();
        let labels = BTreeMap::new();
        build_key(&KeyInputs {
            dockerfile: df,
            base_images: &bases,
            context: &ctx,
            components: &comps,
            build_args: args,
            target: None,
            platform: None,
            labels: &labels,
            builder: Builder::Classic,
            secrets: &BTreeMap::new(),
        })
    }

    #[test]
    fn same_inputs_same_key_and_changes_are_named() {
        let args = BTreeMap::new();
        let a = key("FROM x", &args, "Hi");
        assert_eq!(a, key("FROM x", &args, "Hi"));
        let b = key("FROM x", &args, "Hello");
        assert_ne!(a.digest, b.digest);
        assert_eq!(
            b.changes_since(&a.inputs),
            vec![InputChange::Changed("component/01-c".into())]
        );
        let args2 = [("A".to_string(), "1".to_string())].into();
        let c = key("FROM x", &args2, "Hi");
        assert_eq!(
            c.changes_since(&a.inputs),
            vec![InputChange::Added("build-arg/A".into())]
        );
    }
}
