//! Removal of a branch's tags (`kiln cleanup --branch`), target by target.
//! Only tags ending in the branch's suffix and still pointing at the digest
//! the branch's record pushed are touched. OCI: `DELETE` by tag (OCI 1.1);
//! where the registry refuses that (distribution 2.x), `DELETE` by digest,
//! but only when no other tag of the repository points at the digest (a
//! branch build of unchanged inputs has the main build's digest — deleting
//! it would take the main tags too). ECR: `BatchDeleteImage` of the tag,
//! which removes the image only when no other tag names it.

use std::collections::BTreeMap;

use super::sink::Sink;
use crate::digest::Digest;
use crate::load::Target;
use crate::registry::RegistryClient;

/// One tag a branch build pushed.
#[derive(Debug, Clone)]
pub struct BranchTag {
    /// The target as the recipe configured it.
    pub target: Target,
    /// The tag.
    pub tag: String,
    /// The digest the branch build pushed under it.
    pub digest: Digest,
}

/// What a cleanup did, as `host/repository:tag`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removal {
    /// Removed now, or already gone.
    pub removed: Vec<String>,
    /// Left in place, with why.
    pub left: Vec<(String, String)>,
}

/// Removes `tags` (all must end in `suffix`), grouped by target and digest.
pub async fn remove_branch_tags(
    client: &RegistryClient,
    tags: &[BranchTag],
    suffix: &str,
) -> Removal {
    let mut groups: BTreeMap<(String, Digest), (Target, Vec<String>)> = BTreeMap::new();
    let mut out = Removal::default();
    for t in tags {
        if !t.tag.ends_with(suffix) {
            out.left.push((
                t.tag.clone(),
                format!("not a tag of this branch (no `{suffix}` suffix)"),
            ));
            continue;
        }
        let key = (format!("{:?}", t.target), t.digest.clone());
        let entry = groups
            .entry(key)
            .or_insert_with(|| (t.target.clone(), Vec::new()));
        if !entry.1.contains(&t.tag) {
            entry.1.push(t.tag.clone());
        }
    }
    for ((_, digest), (target, tags)) in groups {
        match Sink::open(&target, client).await {
            Ok(sink) => remove_group(&sink, &tags, &digest, &mut out).await,
            Err(e) => {
                let why = why(&e);
                out.left.extend(tags.into_iter().map(|t| (t, why.clone())));
            }
        }
    }
    out
}

/// The tags of one target that point at one digest.
async fn remove_group(sink: &Sink, tags: &[String], digest: &Digest, out: &mut Removal) {
    let name = |t: &str| format!("{}:{t}", sink.name());
    let mut pending = Vec::new();
    for tag in tags {
        match sink.tag(tag).await {
            Ok(None) => out.removed.push(name(tag)),
            Ok(Some(d)) if d != *digest => out.left.push((
                name(tag),
                format!("it now points at {d}, not the branch build's {digest}"),
            )),
            Ok(Some(_)) => pending.push(tag.clone()),
            Err(e) => out.left.push((name(tag), why(&e))),
        }
    }
    if pending.is_empty() {
        return;
    }
    let fresh = match sink.digest_held_elsewhere(digest, &pending).await {
        Ok(None) => true,
        Ok(Some(_)) => false,
        Err(e) => {
            let why = why(&e);
            out.left
                .extend(pending.iter().map(|t| (name(t), why.clone())));
            return;
        }
    };
    for tag in &pending {
        // A `DELETE` by digest for an earlier tag took this one too.
        if let Ok(None) = sink.tag(tag).await {
            out.removed.push(name(tag));
            continue;
        }
        match sink.untag(tag, digest, fresh).await {
            Ok(true) => out.removed.push(name(tag)),
            Ok(false) => out.left.push((
                name(tag),
                "the registry cannot delete a tag alone and another tag holds the digest".into(),
            )),
            Err(e) => out.left.push((name(tag), why(&e))),
        }
    }
}

/// An error and its causes, `: `-joined.
fn why(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
