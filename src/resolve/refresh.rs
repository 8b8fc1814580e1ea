//! HEAD first: is a locked reference still where the lock says? One shared
//! `HEAD` of the tag decides when the registry's `Docker-Content-Digest`
//! equals the locked digest (the index digest for a multi-platform parent):
//! the locked pin, GET-verified when it was locked, stays. Only a reference
//! that moved, is not locked, or whose registry's `HEAD` carries no digest
//! is pinned again with `GET`s (shared too, see `registry::lookup`).

use crate::digest::Digest;
use crate::reference::ImageReference;
use crate::registry::{LookupScope, Platform, RegistryClient, RegistryError};

use super::lock::LockEntry;
use super::pin::PinnedImage;

/// How a reference compares with its lock entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// It points where the lock says.
    Unchanged,
    /// It moved away from this locked digest.
    Moved {
        /// The locked digest.
        old: Digest,
    },
    /// No usable lock entry (none, or locked for another platform).
    Unlocked,
}

/// A reference checked against its lock entry, with its current pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refreshed {
    /// The pin to use now (the locked one when unchanged).
    pub image: PinnedImage,
    /// How it compares with the lock.
    pub drift: Drift,
}

/// Checks `reference` against `locked` (already filtered to `platform`):
/// one shared `HEAD` when nothing moved, `GET`s only when it did, when it is
/// not locked, or when the `HEAD` carried no digest.
pub async fn refresh(
    client: &RegistryClient,
    reference: &ImageReference,
    locked: Option<&LockEntry>,
    platform: &Platform,
    scope: &LookupScope,
) -> Result<Refreshed, RegistryError> {
    if let Some(entry) = locked {
        let head = client.lookup_head(reference, scope).await?;
        if head.is_some_and(|h| h.digest == entry.digest) {
            return Ok(Refreshed {
                image: entry.image(reference),
                drift: Drift::Unchanged,
            });
        }
    }
    let r = client.lookup_pin(reference, platform, scope).await?;
    let image = PinnedImage {
        written: reference.clone(),
        pinned: reference.pinned(r.manifest_digest.clone()),
        index_digest: r.index_digest,
        manifest_digest: r.manifest_digest,
        platform: platform.clone(),
    };
    let drift = match locked {
        None => Drift::Unlocked,
        Some(e) if *image.digest() == e.digest => Drift::Unchanged,
        Some(e) => Drift::Moved {
            old: e.digest.clone(),
        },
    };
    Ok(Refreshed { image, drift })
}
