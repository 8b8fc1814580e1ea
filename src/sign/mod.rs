//! Signing: kiln's signing key (named by the operator config, outside every
//! project), the ECDSA P-256 key itself, and cosign-compatible image
//! signatures pushed after a verified distribute.
//!
//! **Invariant:** the private key never leaves the process: it is read from
//! the operator's key file, never from a project file, never logged, never
//! sent anywhere; only signatures and the public key leave.

pub mod attach;
pub mod attest;
pub mod cosign;
pub mod dsse;
pub mod key;
pub mod kms;
pub mod place;
pub mod public;
pub mod verify;

pub use key::{KeyError, SigningKey};
pub use public::{PublicKey, PublicKeyError};
