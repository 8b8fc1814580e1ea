//! The approval gate and promotion, after a run: an approver's decision on a
//! build awaiting approval is appended to the record chain (signed like
//! records), and an approval promotes the build to the `distribute.promote`
//! targets its record names — registry to registry, digest for digest
//! (`distribute::promote`) — each promotion appended as an event. Used by
//! `kiln approve`/`reject`/`promote` and by the daemon's approval endpoint.

use crate::digest::Digest;
use crate::distribute::{self, DistributeError, PromoteRequest};
use crate::load::Target;
use crate::record::{
    ChainedEvent, ChainedRecord, Decision, Event, EventKind, Promotion, RecordError, Records,
    Selector, Status,
};
use crate::reference::ImageReference;
use crate::registry::RegistryClient;

/// What approvals and promotions need: the record store (with the keys that
/// sign events and check what is read) and registries.
#[derive(Clone)]
pub struct Approvals {
    /// The record store, with the operator's keys.
    pub records: Records,
    /// Source and destination registries.
    pub registry: RegistryClient,
}

/// Why an approval or promotion failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApproveError {
    /// The record store refused or failed (unknown build, not awaiting
    /// approval, already decided, tampered record, …).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Only approved builds are promoted.
    #[error("build `{build}` is not approved ({why}); nothing was pushed")]
    NotApproved {
        /// `pipeline:version-build`.
        build: String,
        /// Why not.
        why: String,
    },
    /// `--to` names none of the build's promote targets.
    #[error(
        "build `{build}` has no promote target `{to}`; its record's distribute.promote lists: {known}"
    )]
    UnknownTarget {
        /// `pipeline:version-build`.
        build: String,
        /// What was asked for.
        to: String,
        /// The targets it has (`none` when empty).
        known: String,
    },
    /// A promotion failed (nothing tagged at that destination).
    #[error("promoting `{build}` to {to} failed")]
    Promote {
        /// `pipeline:version-build`.
        build: String,
        /// The destination's label.
        to: String,
        /// The push error.
        #[source]
        source: DistributeError,
    },
    /// Signing the promoted digest for its destination failed.
    #[error("signing build `{build}` at promote target `{to}` failed")]
    Sign {
        /// `pipeline:version-build`.
        build: String,
        /// The destination's label.
        to: String,
        /// Why.
        #[source]
        source: crate::sign::attach::SignError,
    },
}

/// One promotion's outcome.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromotionOutcome {
    /// The event recording it (the earlier one for a no-op re-promotion).
    pub event: ChainedEvent,
    /// What the copy did.
    pub copied: distribute::Promoted,
    /// Nothing was uploaded or tagged and an earlier event records it.
    pub no_op: bool,
}

/// A recorded decision and, for an approval, its promotions.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decided {
    /// The build's record.
    pub record: ChainedRecord,
    /// The decision event.
    pub decision: ChainedEvent,
    /// Promotions to the record's promote targets (approvals only).
    pub promotions: Vec<PromotionOutcome>,
}

/// `local:USER` for decisions made with the CLI on this machine.
pub fn local_user() -> String {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".into());
    format!("local:{user}")
}

impl Approvals {
    /// Records `decision` on `build` by `by`; an approval then promotes the
    /// build to every promote target of its record. The decision stays
    /// recorded when a promotion fails (`kiln promote` retries it).
    pub async fn decide(
        &self,
        build: Selector,
        decision: Decision,
        by: String,
        note: Option<String>,
    ) -> Result<Decided, ApproveError> {
        let (record, event) = self.records.decide(&build, decision, &by, note).await?;
        let promotions = match decision {
            Decision::Approve => self.promote_all(&record, &by).await?,
            Decision::Reject => Vec::new(),
        };
        Ok(Decided {
            record,
            decision: event,
            promotions,
        })
    }

    /// Promotes an approved `record` to every promote target it names.
    pub async fn promote_all(
        &self,
        record: &ChainedRecord,
        by: &str,
    ) -> Result<Vec<PromotionOutcome>, ApproveError> {
        let mut out = Vec::new();
        for target in &record.record.promote {
            out.push(self.promote_to(record, target, by).await?);
        }
        Ok(out)
    }

    /// `kiln promote BUILD --to TARGET`: the build must be approved and
    /// `to` one of its promote targets ([`Target::label`]).
    pub async fn promote(
        &self,
        build: Selector,
        to: &str,
        by: &str,
    ) -> Result<PromotionOutcome, ApproveError> {
        let record = self.records.get(&build).await?;
        let approved = not_approved_reason(&self.records, &record).await?;
        let label = record.record.build_id().to_string();
        if let Some(why) = approved {
            return Err(ApproveError::NotApproved { build: label, why });
        }
        let promote = &record.record.promote;
        let Some(target) = promote.iter().find(|t| t.label() == to) else {
            let known: Vec<String> = promote.iter().map(Target::label).collect();
            return Err(ApproveError::UnknownTarget {
                build: label,
                to: to.to_string(),
                known: if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                },
            });
        };
        self.promote_to(&record, target, by).await
    }

    async fn promote_to(
        &self,
        record: &ChainedRecord,
        target: &Target,
        by: &str,
    ) -> Result<PromotionOutcome, ApproveError> {
        let build = record.record.build_id().to_string();
        let fail = |source| ApproveError::Promote {
            build: build.clone(),
            to: target.label(),
            source,
        };
        let source = source_for(record, target).ok_or_else(|| ApproveError::NotApproved {
            build: build.clone(),
            why: "it has no verified push to copy from".into(),
        })?;
        // With the operator's key an OCI destination gets its own signature
        // (naming the destination); otherwise the source's is copied.
        let resign = self.records.keys().signer().cloned();
        let req = PromoteRequest {
            copy_signature: resign.is_none(),
            source: ImageReference {
                registry: source.registry.clone(),
                repository: source.repository.clone(),
                tag: None,
                digest: None,
            },
            digest: source.manifest_digest.clone(),
            to: target.clone(),
            tags: source.tags.clone(),
        };
        let mut copied = distribute::promote(&self.registry, &req)
            .await
            .map_err(fail)?;
        if let Some(key) = resign {
            self.sign_at(&key, record, target, &mut copied)
                .await
                .map_err(|source| ApproveError::Sign {
                    build: build.clone(),
                    to: target.label(),
                    source,
                })?;
        }
        let promotion = Promotion {
            source: source.pinned_reference(),
            target: target.clone(),
            registry: copied.registry.clone(),
            repository: copied.repository.clone(),
            tags: copied.tags.clone(),
            manifest_digest: copied.manifest_digest.clone(),
            attached: copied.attached.clone(),
            bytes_uploaded: copied.bytes_uploaded,
        };
        let untouched = copied.manifests_put == 0 && copied.bytes_uploaded == 0;
        let earlier = self.records.events_of(&record.record.id.0).await?;
        let earlier = earlier.into_iter().find(|e| {
            matches!(&e.event.kind, EventKind::Promotion(p)
                if same_place(p, &promotion.registry, &promotion.repository, &promotion.manifest_digest))
        });
        let (event, no_op) = match earlier {
            Some(e) if untouched => (e, true),
            _ => {
                let event = Event::new(
                    record.record.id.clone(),
                    record.record.build_id().to_string(),
                    by.to_string(),
                    EventKind::Promotion(promotion),
                );
                (self.records.append_event(&event).await?, false)
            }
        };
        Ok(PromotionOutcome {
            event,
            copied,
            no_op,
        })
    }
}

fn same_place(p: &Promotion, registry: &str, repository: &str, digest: &Digest) -> bool {
    p.registry == registry && p.repository == repository && &p.manifest_digest == digest
}

/// Why `record` is not approved now (`None`: it is).
async fn not_approved_reason(
    s: &Records,
    record: &ChainedRecord,
) -> Result<Option<String>, RecordError> {
    let status = record.record.status;
    if s.approval_state(record.clone()).await?.is_some() {
        return Ok(None);
    }
    if let Some(branch) = &record.record.branch {
        return Ok(Some(format!(
            "it was built on branch `{branch}`, and branch builds are never promoted"
        )));
    }
    Ok(Some(
        match (status, s.decision_of(&record.record.id.0).await?) {
            (Status::AwaitingApproval, None) => {
                "it awaits approval: `kiln approve` it first".into()
            }
            (Status::AwaitingApproval, Some(_)) => "it was rejected".into(),
            (Status::Passed, _) => "its tests or pushes did not all pass and verify".into(),
            (other, _) => format!("its run ended `{other}`, it never passed"),
        },
    ))
}

impl Approvals {
    /// Signs the promoted digest in its destination repository, as the sign
    /// stage signs a push (kept when kiln's signature is already there).
    async fn sign_at(
        &self,
        key: &crate::sign::SigningKey,
        record: &ChainedRecord,
        to: &Target,
        copied: &mut distribute::Promoted,
    ) -> Result<(), crate::sign::attach::SignError> {
        let r = &record.record;
        let optional = serde_json::json!({
            "dev.kiln.pipeline": r.pipeline,
            "dev.kiln.version": r.version.to_string(),
            "dev.kiln.build": r.build.to_string(),
        });
        let target = crate::sign::attach::SignTarget {
            target: to.clone(),
            digest: copied.manifest_digest.clone(),
        };
        let signed =
            crate::sign::attach::sign_target(&self.registry, key, &target, optional).await?;
        if signed.pushed {
            copied.manifests_put += 1;
        }
        copied.attached.insert(
            0,
            crate::sign::cosign::signature_tag(&copied.manifest_digest),
        );
        Ok(())
    }
}

/// The verified push to copy from: on the destination's host when there is
/// one (a mount), else the first OCI push, else any.
fn source_for<'a>(
    record: &'a ChainedRecord,
    to: &Target,
) -> Option<&'a crate::record::PushedTarget> {
    let pushed: Vec<_> = record
        .record
        .targets
        .iter()
        .filter(|t| t.verified)
        .collect();
    let oci = |t: &&&crate::record::PushedTarget| matches!(t.target, Target::Oci { .. });
    let same_host = |t: &&&crate::record::PushedTarget| match to {
        Target::Oci { registry, .. } => t.registry == *registry,
        Target::Ecr { .. } => false,
    };
    pushed
        .iter()
        .find(|t| oci(t) && same_host(t))
        .or_else(|| pushed.iter().find(oci))
        .or_else(|| pushed.first())
        .copied()
}
