//! The one table from store errors to etcd's gRPC status codes and exact messages
//! (shared/etcd/grpc-errors-v3.4.23.txt), so etcd clients recognise them.

use tonic::{Code, Status};

use crate::error::StoreError;
use crate::mvcc::MvccError;

pub fn to_status(error: &StoreError) -> Status {
    let (code, message): (Code, &str) = match error {
        StoreError::Mvcc(mvcc) => match mvcc {
            MvccError::Compacted => {
                (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted")
            }
            MvccError::FutureRevision => {
                (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision")
            }
            MvccError::EmptyKey => (Code::InvalidArgument, "etcdserver: key is not provided"),
            MvccError::TooManyOps => {
                (Code::InvalidArgument, "etcdserver: too many operations in txn request")
            }
            MvccError::DuplicateKey => {
                (Code::InvalidArgument, "etcdserver: duplicate key given in txn request")
            }
            MvccError::KeyNotFound => (Code::InvalidArgument, "etcdserver: key not found"),
            MvccError::ValueProvided => (Code::InvalidArgument, "etcdserver: value is provided"),
            MvccError::LeaseProvided => (Code::InvalidArgument, "etcdserver: lease is provided"),
            other => return Status::internal(format!("etcdserver: {other}")),
        },
        StoreError::RequestTooLarge => (Code::InvalidArgument, "etcdserver: request is too large"),
        StoreError::TooManyRequests => (Code::ResourceExhausted, "etcdserver: too many requests"),
        StoreError::NoLeader => (Code::Unavailable, "etcdserver: no leader"),
        StoreError::NotLeader => (Code::FailedPrecondition, "etcdserver: not leader"),
        StoreError::LeaderChanged => (Code::Unavailable, "etcdserver: leader changed"),
        StoreError::Timeout => (Code::Unavailable, "etcdserver: request timed out"),
        StoreError::Stopped => (Code::Unavailable, "etcdserver: server stopped"),
        StoreError::NotImplemented(what) => {
            return Status::unimplemented(format!("skiff: {what} is not implemented yet"))
        }
        StoreError::Internal(reason) => return Status::internal(format!("skiff: {reason}")),
    };
    Status::new(code, message)
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Status {
        to_status(&error)
    }
}
