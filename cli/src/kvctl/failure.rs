//! How `kvctl` fails: etcdctl's exit codes and its rendering of gRPC errors, so scripts written
//! against etcdctl see the same `Error: ...` line and status.

use std::fmt;

/// etcdctl's exit codes (`etcdctl/ctlv3/command/error.go`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Error = 1,
    BadConnection = 2,
    InvalidInput = 3,
    BadFeature = 4,
    Interrupted = 5,
    BadArgs = 128,
}

/// A command's failure: printed as `Error: <message>` on stderr, then exit with `status`.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub status: ExitStatus,
    pub message: String,
}

impl Failure {
    pub fn new(status: ExitStatus, message: impl Into<String>) -> Self {
        Failure { status, message: message.into() }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self::new(ExitStatus::Error, message)
    }

    pub fn bad_args(message: impl Into<String>) -> Self {
        Self::new(ExitStatus::BadArgs, message)
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ExitStatus::InvalidInput, message)
    }

    pub fn bad_feature(message: impl Into<String>) -> Self {
        Self::new(ExitStatus::BadFeature, message)
    }

    /// An exit with etcdctl's general error status and no `Error:` line, for when the
    /// output has already said what went wrong.
    pub fn silent() -> Self {
        Self::error("")
    }

    /// What Go's context reports when the command timeout passes.
    pub fn deadline_exceeded() -> Self {
        Self::error(DEADLINE_EXCEEDED)
    }

    /// The error as clientv3 reports it: etcd's own errors by their message alone, anything
    /// else in grpc-go's `rpc error: code = ... desc = ...` form.
    pub fn from_status(status: &tonic::Status) -> Self {
        Self::error(status_message(status))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Error: {}", self.message)
    }
}

pub const DEADLINE_EXCEEDED: &str = "context deadline exceeded";

/// The text etcdctl shows for a gRPC error status.
pub fn status_message(status: &tonic::Status) -> String {
    if ETCD_ERRORS.contains(&status.message()) {
        return status.message().to_string();
    }
    format!("rpc error: code = {} desc = {}", go_code_name(status.code()), status.message())
}

/// grpc-go's `codes.Code.String()` names.
fn go_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// etcd 3.4's server errors (`rpctypes`), which clientv3 turns into bare messages. Kept
/// exact rather than matching the `etcdserver:` prefix, so a store error etcd does not have
/// shows up here as it would in etcdctl.
const ETCD_ERRORS: &[&str] = &[
    "etcdserver: key is not provided",
    "etcdserver: key not found",
    "etcdserver: value is provided",
    "etcdserver: lease is provided",
    "etcdserver: too many operations in txn request",
    "etcdserver: duplicate key given in txn request",
    "etcdserver: mvcc: required revision has been compacted",
    "etcdserver: mvcc: required revision is a future revision",
    "etcdserver: mvcc: database space exceeded",
    "etcdserver: requested lease not found",
    "etcdserver: lease already exists",
    "etcdserver: too large lease TTL",
    "etcdserver: watch canceled",
    "etcdserver: member ID already exist",
    "etcdserver: Peer URLs already exists",
    "etcdserver: re-configuration failed due to not enough started members",
    "etcdserver: given member URLs are invalid",
    "etcdserver: member not found",
    "etcdserver: can only promote a learner member",
    "etcdserver: can only promote a learner member which is in sync with leader",
    "etcdserver: too many learner members in cluster",
    "etcdserver: request is too large",
    "etcdserver: too many requests",
    "etcdserver: root user does not exist",
    "etcdserver: root user does not have root role",
    "etcdserver: user name already exists",
    "etcdserver: user name is empty",
    "etcdserver: user name not found",
    "etcdserver: role name already exists",
    "etcdserver: role name not found",
    "etcdserver: role name is empty",
    "etcdserver: authentication failed, invalid user ID or password",
    "etcdserver: permission denied",
    "etcdserver: role is not granted to the user",
    "etcdserver: permission is not granted to the role",
    "etcdserver: authentication is not enabled",
    "etcdserver: invalid auth token",
    "etcdserver: invalid auth management",
    "etcdserver: revision of auth store is old",
    "etcdserver: no leader",
    "etcdserver: not leader",
    "etcdserver: leader changed",
    "etcdserver: not capable",
    "etcdserver: server stopped",
    "etcdserver: request timed out",
    "etcdserver: request timed out, possibly due to previous leader failure",
    "etcdserver: request timed out, possibly due to connection lost",
    "etcdserver: request timed out, waiting for the applied index took too long",
    "etcdserver: unhealthy cluster",
    "etcdserver: corrupt cluster",
    "etcdserver: bad leader transferee",
];

pub const PERMISSION_DENIED: &str = "etcdserver: permission denied";

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    fn check(status: Status, expected: &str) {
        assert_eq!(Failure::from_status(&status).to_string(), expected);
    }

    #[test]
    fn etcd_errors_print_bare_and_others_in_grpc_go_form() {
        check(
            Status::new(Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            "Error: etcdserver: mvcc: required revision has been compacted",
        );
        check(
            Status::new(Code::Unavailable, "connection refused"),
            "Error: rpc error: code = Unavailable desc = connection refused",
        );
        check(
            Status::new(Code::Unimplemented, "etcdserver: something new"),
            "Error: rpc error: code = Unimplemented desc = etcdserver: something new",
        );
    }
}
