//! PATCH bodies applied to stored objects, as kube-apiserver applies them: JSON merge patch
//! (RFC 7386), JSON patch (RFC 6902) and Kubernetes strategic merge patch. Pure functions over
//! `serde_json::Value`; the caller reads the object, calls [`apply_patch`], then validates and
//! stores the result.
//!
//! Server-side apply (`application/apply-patch+yaml`) is recognised by [`PatchType`] so the
//! caller can refuse it with 415; [`apply_patch`] refuses it too.

mod json;
mod merge;
pub mod schema;
mod strategic;

use serde_json::Value;

pub use schema::{strategy_for, Strategy};

/// kube-apiserver's bound on the operations in one JSON patch (`maxJSONPatchOperations`).
pub const JSON_PATCH_OPERATIONS_MAX: usize = 10_000;

/// The PATCH flavours Kubernetes accepts, named by the request's Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply; not supported yet).
    Apply,
}

impl PatchType {
    /// Every patch type, in the order kube-apiserver lists accepted patch media types.
    pub const ALL: [PatchType; 4] =
        [PatchType::Json, PatchType::Merge, PatchType::Strategic, PatchType::Apply];

    /// The patch type a Content-Type header names, ignoring parameters (`; charset=utf-8`)
    /// and case; `None` for anything else (kube-apiserver answers 415).
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        let media_type = media_type.to_ascii_lowercase();
        match media_type.as_str() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }

    /// The media type of this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Json => "application/json-patch+json",
            PatchType::Strategic => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Why a patch could not be applied. [`PatchError::status_code`] gives the HTTP status
/// kube-apiserver uses for each case.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The body is not JSON at all.
    #[error("invalid JSON in patch body: {0}")]
    InvalidJson(String),
    /// The body is JSON but not of the shape the patch type needs (an object for merge and
    /// strategic patches, an array of operations for JSON patch).
    #[error("{0}")]
    InvalidBody(String),
    /// A JSON patch with more operations than kube-apiserver allows.
    #[error("the allowed maximum operations in a JSON patch is {max}, got {count}")]
    TooManyOperations { count: usize, max: usize },
    /// A JSON patch operation is malformed or does not apply to the object (missing path,
    /// index out of range, bad JSON pointer, unknown op).
    #[error("{0}")]
    OperationFailed(String),
    /// A JSON patch `test` operation found a different value.
    #[error("test operation failed: the value at {path:?} is not the expected value")]
    TestFailed { path: String },
    /// A strategic merge patch directive is malformed (`$patch`, `$retainKeys`,
    /// `$setElementOrder/...`, `$deleteFromPrimitiveList/...`).
    #[error("{0}")]
    InvalidDirective(String),
    /// A strategic merge patch is well formed but cannot merge with this object (an item
    /// without its merge key, mixed item types, lists of lists).
    #[error("{0}")]
    MergeFailed(String),
    /// The patched document is no longer a JSON object.
    #[error("the patched object is not a JSON object")]
    ResultNotAnObject,
    /// Server-side apply is not implemented.
    #[error("server-side apply (application/apply-patch+yaml) is not supported")]
    ApplyUnsupported,
}

impl PatchError {
    /// The HTTP status kube-apiserver answers with for this error: 400 for a malformed body
    /// or directive, 413 for too many operations, 415 for server-side apply and 422 for a
    /// patch that does not apply to the object.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::InvalidJson(_)
            | PatchError::InvalidBody(_)
            | PatchError::InvalidDirective(_) => 400,
            PatchError::TooManyOperations { .. } => 413,
            PatchError::ApplyUnsupported => 415,
            PatchError::OperationFailed(_)
            | PatchError::TestFailed { .. }
            | PatchError::MergeFailed(_)
            | PatchError::ResultNotAnObject => 422,
        }
    }
}

/// Applies `patch` (the raw request body) of `patch_type` to `original`, an object of `kind`
/// (the Kubernetes `Kind`, e.g. `"Deployment"`, which selects the strategic-merge metadata).
/// Returns the patched object; `original` is not modified.
pub fn apply_patch(
    kind: &str,
    original: &Value,
    patch_type: PatchType,
    patch: &[u8],
) -> Result<Value, PatchError> {
    let patched = match patch_type {
        PatchType::Merge => {
            let patch = parse_body(patch)?;
            if !patch.is_object() {
                return Err(PatchError::InvalidBody(
                    "a merge patch must be a JSON object".to_owned(),
                ));
            }
            merge::merge_patch(original.clone(), patch)
        }
        PatchType::Json => json::apply(original.clone(), parse_body(patch)?)?,
        PatchType::Strategic => {
            let Value::Object(patch) = parse_body(patch)? else {
                return Err(PatchError::InvalidBody(
                    "a strategic merge patch must be a JSON object".to_owned(),
                ));
            };
            let Value::Object(original) = original.clone() else {
                return Err(PatchError::ResultNotAnObject);
            };
            let root = schema::TypeNode::for_kind(kind);
            Value::Object(strategic::merge_map(original, patch, root)?)
        }
        PatchType::Apply => return Err(PatchError::ApplyUnsupported),
    };
    if !patched.is_object() {
        return Err(PatchError::ResultNotAnObject);
    }
    Ok(patched)
}

fn parse_body(body: &[u8]) -> Result<Value, PatchError> {
    serde_json::from_slice(body).map_err(|error| PatchError::InvalidJson(error.to_string()))
}

#[cfg(test)]
mod tests;
