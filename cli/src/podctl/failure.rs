//! Why a command failed, worded as kubectl words it: `Error from server (Reason): message` for
//! an API `Status`, `error: ...` for everything found on the client side.

use std::fmt;

use kube::core::Status;

/// A failed command. `message: None` means the details were already printed (several
/// errors in one run, as kubectl prints them) and only the exit status is left.
#[derive(Debug)]
pub struct Failure {
    pub message: Option<String>,
}

impl Failure {
    /// A client-side error: `error: <message>`.
    pub fn client(message: impl fmt::Display) -> Failure {
        Failure { message: Some(format!("error: {message}")) }
    }

    /// An error line printed verbatim.
    pub fn verbatim(message: impl Into<String>) -> Failure {
        Failure { message: Some(message.into()) }
    }

    /// The errors were printed already; the run still fails.
    pub fn reported() -> Failure {
        Failure { message: None }
    }

    /// kubectl's `StandardErrorMessage` for a `Status`; `context` is inserted before the
    /// message as kubectl does for files (`error when creating "STDIN": ...`).
    pub fn from_status(status: &Status, context: &str) -> Failure {
        Failure { message: Some(status_message(status, context)) }
    }

    /// Converts a kube client error, keeping the server's `Status` when there is one.
    pub fn from_kube(error: kube::Error, context: &str) -> Failure {
        match error {
            kube::Error::Api(status) => Failure::from_status(&status, context),
            other => Failure::client(format!("{context}{}", describe_client_error(&other))),
        }
    }

    /// Whether this is the server saying NotFound (404).
    pub fn is_not_found(error: &kube::Error) -> bool {
        matches!(error, kube::Error::Api(status) if status.code == 404)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message.as_deref().unwrap_or(""))
    }
}

/// The line kubectl prints for an API error.
pub fn status_message(status: &Status, context: &str) -> String {
    if status.code == 401 || status.reason == "Unauthorized" {
        let message = if status.message.is_empty() { "Unauthorized" } else { &status.message };
        return format!("error: You must be logged in to the server ({context}{message})");
    }
    if status.reason.is_empty() {
        format!("Error from server: {context}{}", status.message)
    } else {
        format!("Error from server ({}): {context}{}", status.reason, status.message)
    }
}

/// Transport errors in words a user can act on.
fn describe_client_error(error: &kube::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        let line = inner.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> Status {
        Status { code, reason: reason.into(), message: message.into(), ..Status::default() }
    }

    #[test]
    fn api_errors_are_worded_as_kubectl_words_them() {
        let not_found = status(404, "NotFound", "pods \"x\" not found");
        assert_eq!(
            status_message(&not_found, ""),
            "Error from server (NotFound): pods \"x\" not found"
        );
        let exists = status(409, "AlreadyExists", "pods \"p1\" already exists");
        assert_eq!(
            status_message(&exists, "error when creating \"STDIN\": "),
            "Error from server (AlreadyExists): error when creating \"STDIN\": pods \"p1\" \
             already exists"
        );
        let unauthorized = status(401, "Unauthorized", "Unauthorized");
        assert_eq!(
            status_message(&unauthorized, ""),
            "error: You must be logged in to the server (Unauthorized)"
        );
        assert_eq!(status_message(&status(500, "", "boom"), ""), "Error from server: boom");
    }
}
