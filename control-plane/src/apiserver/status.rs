//! [`ApiError`]: every refusal the API server answers, as a `metav1.Status` with Kubernetes'
//! code, reason and message wording.

use serde_json::{json, Value};

use crate::storage::BackendError;

/// A request's failure, rendered as a Status object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    /// `details.name` and `details.kind` (the resource plural, as Kubernetes puts it).
    pub name: Option<String>,
    pub kind: Option<String>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into(), name: None, kind: None }
    }

    fn about(mut self, plural: &str, name: &str) -> ApiError {
        self.kind = Some(plural.to_string());
        self.name = Some(name.to_string());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// RBAC's denial, worded as kube-apiserver words it.
    pub fn forbidden(user: &str, verb: &str, resource: &str, group: &str, scope: &str) -> ApiError {
        // Kubernetes names the group even when it is the core group ("").
        let group = format!(" in API group \"{group}\"");
        ApiError::new(
            403,
            "Forbidden",
            format!(
                "{resource} is forbidden: User \"{user}\" cannot {verb} resource \
                 \"{resource}\"{group} {scope}"
            ),
        )
    }

    pub fn forbidden_message(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    pub fn not_found(plural: &str, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{plural} \"{name}\" not found")).about(plural, name)
    }

    pub fn path_not_found() -> ApiError {
        ApiError::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn method_not_allowed(method: &str) -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    pub fn already_exists(plural: &str, name: &str) -> ApiError {
        ApiError::new(409, "AlreadyExists", format!("{plural} \"{name}\" already exists"))
            .about(plural, name)
    }

    pub fn conflict(plural: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {plural} \"{name}\": the object has been \
                 modified; please apply your changes to the latest version and try again"
            ),
        )
        .about(plural, name)
    }

    pub fn conflict_message(plural: &str, name: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(409, "Conflict", message).about(plural, name)
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types \
                 include: application/json, application/yaml, application/merge-patch+json, \
                 application/json-patch+json, application/strategic-merge-patch+json (got \
                 {content_type:?})"
            ),
        )
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    /// A validation failure (Kubernetes' `Invalid`, 422).
    pub fn invalid(kind: &str, name: &str, causes: &[String]) -> ApiError {
        ApiError::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {}", causes.join(", ")),
        )
        .about(kind, name)
    }

    pub fn not_implemented(what: &str) -> ApiError {
        ApiError::new(501, "NotImplemented", format!("{what} is not implemented yet"))
    }

    /// Kubernetes' 504 `Timeout` (e.g. a watch from a resourceVersion not reached in time).
    pub fn timeout(message: impl Into<String>) -> ApiError {
        ApiError::new(504, "Timeout", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", format!("Internal error occurred: {}", message.into()))
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.name.is_some() || self.kind.is_some() {
            status["details"] = json!({"name": self.name, "kind": self.kind});
        }
        status
    }
}

impl From<BackendError> for ApiError {
    fn from(error: BackendError) -> ApiError {
        match error {
            BackendError::Compacted { .. } => ApiError::gone(format!(
                "The resourceVersion for the provided list is too old: {error}"
            )),
            BackendError::Unavailable(message) => ApiError::unavailable(message),
            BackendError::Failed(message) => ApiError::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_kubernetes_codes_reasons_and_details() {
        let status = ApiError::not_found("pods", "web").to_status();
        assert_eq!(status["code"], 404);
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["message"], "pods \"web\" not found");
        assert_eq!(status["details"]["kind"], "pods");
        let denied = ApiError::forbidden("bob", "list", "pods", "", "in the namespace \"dev\"");
        assert_eq!(
            denied.message,
            "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in \
             the namespace \"dev\""
        );
    }
}
