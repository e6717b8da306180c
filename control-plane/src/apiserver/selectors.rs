//! Kubernetes label and field selectors: parsing the `labelSelector` / `fieldSelector` query
//! syntax, converting a `metav1.LabelSelector` document, and matching objects (Kubernetes
//! JSON as `serde_json::Value`). Pure; the list and watch handlers and the controllers call
//! it.
//!
//! Messages follow apimachinery's (`k8s.io/apimachinery/pkg/labels`, `pkg/fields`, and the
//! field-label conversions of `pkg/apis/core/v1`), which the API server returns in a 400
//! `Status`.

mod fields;
mod labels;
mod validation;

pub use fields::{field_value, FieldOperator, FieldRequirement, FieldSelector};
pub use labels::{LabelOperator, LabelRequirement, LabelSelector};

/// Why a selector was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector string that does not parse (unexpected token, bad key or value);
    /// the message names what was found and what was expected.
    #[error("{0}")]
    LabelSyntax(String),
    /// A `metav1.LabelSelector` document of the wrong shape, with an unknown operator, or
    /// with an invalid requirement.
    #[error("{0}")]
    InvalidLabelSelector(String),
    /// A field selector term without `=`, `==` or `!=`.
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    FieldSyntax { selector: String, term: String },
    /// A field selector value with a backslash escape other than `\\`, `\,` or `\=`.
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// A field selector value with an unescaped `,` or `=`.
    #[error("invalid field selector: unescaped character in value: {0:?}")]
    UnescapedCharacter(char),
    /// A field the kind does not support, for kinds with their own field list (Pod, Node,
    /// Namespace, Service, Event, Secret).
    #[error("field label not supported: {0}")]
    FieldNotSupported(String),
    /// A field other than `metadata.name` / `metadata.namespace` for the other kinds.
    #[error("{0:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")]
    UnknownField(String),
}
