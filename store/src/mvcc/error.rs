//! [`MvccError`]: the MVCC layer's closed error set, with etcd's messages.
//!
//! The gRPC layer maps each variant to etcd's status code and adds the `etcdserver: ` prefix.
//! The error travels in Raft responses, hence serde.

use serde::{Deserialize, Serialize};

use crate::engine::EngineError;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MvccError {
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("key is not provided")]
    EmptyKey,
    #[error("too many operations in txn request")]
    TooManyOps,
    #[error("duplicate key given in txn request")]
    DuplicateKey,
    #[error("key not found")]
    KeyNotFound,
    /// `ignore_value` with a value given.
    #[error("value is provided")]
    ValueProvided,
    /// `ignore_lease` with a lease given.
    #[error("lease is provided")]
    LeaseProvided,
    /// A put names a lease that does not exist. The lease layer checks this around
    /// `apply` (it owns the lease records); the error is here because it is a write's result.
    #[error("requested lease not found")]
    LeaseNotFound,
    /// A write that needs space while a NOSPACE alarm is raised (or the quota is passed).
    #[error("mvcc: database space exceeded")]
    NoSpace,
    /// The storage backend failed; fatal to the request (and to the apply loop).
    #[error(transparent)]
    Engine(
        #[from]
        #[serde(with = "engine_error_serde")]
        EngineError,
    ),
    /// Stored bytes do not decode: the state is corrupt and must not be served.
    #[error("mvcc: corrupt state: {0}")]
    Corrupt(String),
}

/// Carries an [`EngineError`] through serde without making the engine layer serializable.
mod engine_error_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::engine::EngineError;

    #[derive(Serialize, Deserialize)]
    enum Wire {
        Backend(String),
        Open { path: String, reason: String },
    }

    pub fn serialize<S: Serializer>(error: &EngineError, serializer: S) -> Result<S::Ok, S::Error> {
        let wire = match error.clone() {
            EngineError::Backend(message) => Wire::Backend(message),
            EngineError::Open { path, reason } => Wire::Open { path, reason },
        };
        wire.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<EngineError, D::Error> {
        Ok(match Wire::deserialize(deserializer)? {
            Wire::Backend(message) => EngineError::Backend(message),
            Wire::Open { path, reason } => EngineError::Open { path, reason },
        })
    }
}
