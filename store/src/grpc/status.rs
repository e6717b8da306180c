//! The one table from store errors to etcd's gRPC status codes and exact messages
//! (shared/etcd/grpc-errors-v3.4.23.txt), so etcd clients recognise them.

use tonic::{Code, Status};

use crate::error::StoreError;
use crate::lease::LeaseError;
use crate::membership::MembershipError;
use crate::mvcc::MvccError;

const LEASE_NOT_FOUND: (Code, &str) = (Code::NotFound, "etcdserver: requested lease not found");
const NO_SPACE: (Code, &str) =
    (Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded");

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
            MvccError::LeaseNotFound => LEASE_NOT_FOUND,
            MvccError::NoSpace => NO_SPACE,
            other => return Status::internal(format!("etcdserver: {other}")),
        },
        StoreError::Lease(lease) => match lease {
            LeaseError::NotFound => LEASE_NOT_FOUND,
            LeaseError::Exists => (Code::FailedPrecondition, "etcdserver: lease already exists"),
            LeaseError::TtlTooLarge => (Code::OutOfRange, "etcdserver: too large lease TTL"),
            LeaseError::NoSpace => NO_SPACE,
        },
        StoreError::Membership(change) => match change {
            MembershipError::MemberExists => {
                (Code::FailedPrecondition, "etcdserver: member ID already exist")
            }
            MembershipError::PeerUrlExists => {
                (Code::FailedPrecondition, "etcdserver: Peer URLs already exists")
            }
            MembershipError::MemberNotFound => (Code::NotFound, "etcdserver: member not found"),
            MembershipError::NotLearner => {
                (Code::FailedPrecondition, "etcdserver: can only promote a learner member")
            }
            MembershipError::LearnerNotReady => (
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            MembershipError::BadUrls => {
                (Code::InvalidArgument, "etcdserver: given member URLs are invalid")
            }
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
