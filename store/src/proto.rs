//! Generated protobuf and gRPC code: etcd's v3 API (`etcdserverpb`, `mvccpb`, `authpb`) and
//! Skiff's peer transport (`skiff.peer`).
#![allow(clippy::all, missing_docs, unreachable_pub)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

pub mod authpb {
    tonic::include_proto!("authpb");
}

pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

pub mod peer {
    tonic::include_proto!("skiff.peer");
}
