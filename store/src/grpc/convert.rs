//! Explicit conversions between etcd's protobuf messages and the store's own types.

use crate::mvcc;
use crate::node::Header;
use crate::proto::etcdserverpb as pb;
use crate::proto::mvccpb;

pub fn header(h: Header) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        cluster_id: h.cluster_id,
        member_id: h.member_id,
        revision: h.revision,
        raft_term: h.raft_term,
    })
}

pub fn key_value(kv: mvcc::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn range_request(r: pb::RangeRequest) -> mvcc::RangeRequest {
    use pb::range_request::{SortOrder, SortTarget};
    mvcc::RangeRequest {
        sort_order: match r.sort_order() {
            SortOrder::None => mvcc::SortOrder::None,
            SortOrder::Ascend => mvcc::SortOrder::Ascend,
            SortOrder::Descend => mvcc::SortOrder::Descend,
        },
        sort_target: match r.sort_target() {
            SortTarget::Key => mvcc::SortTarget::Key,
            SortTarget::Version => mvcc::SortTarget::Version,
            SortTarget::Create => mvcc::SortTarget::Create,
            SortTarget::Mod => mvcc::SortTarget::Mod,
            SortTarget::Value => mvcc::SortTarget::Value,
        },
        key: r.key,
        range_end: r.range_end,
        limit: r.limit,
        revision: r.revision,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    }
}

pub fn range_response(r: mvcc::RangeResponse, h: Header) -> pb::RangeResponse {
    pb::RangeResponse {
        header: header(h),
        kvs: r.kvs.into_iter().map(key_value).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn put_request(r: pb::PutRequest) -> mvcc::PutRequest {
    mvcc::PutRequest {
        key: r.key,
        value: r.value,
        lease: r.lease,
        prev_kv: r.prev_kv,
        ignore_value: r.ignore_value,
        ignore_lease: r.ignore_lease,
    }
}

pub fn put_response(r: mvcc::PutResponse, h: Header) -> pb::PutResponse {
    pb::PutResponse { header: header(h), prev_kv: r.prev_kv.map(key_value) }
}

pub fn delete_request(r: pb::DeleteRangeRequest) -> mvcc::DeleteRangeRequest {
    mvcc::DeleteRangeRequest { key: r.key, range_end: r.range_end, prev_kv: r.prev_kv }
}

pub fn delete_response(r: mvcc::DeleteRangeResponse, h: Header) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: header(h),
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(key_value).collect(),
    }
}

fn compare(c: pb::Compare) -> Result<mvcc::Compare, String> {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let result = match c.result() {
        CompareResult::Equal => mvcc::CompareResult::Equal,
        CompareResult::Greater => mvcc::CompareResult::Greater,
        CompareResult::Less => mvcc::CompareResult::Less,
        CompareResult::NotEqual => mvcc::CompareResult::NotEqual,
    };
    let target = match (c.target(), c.target_union) {
        (CompareTarget::Version, Some(TargetUnion::Version(v))) => mvcc::CompareTarget::Version(v),
        (CompareTarget::Version, None) => mvcc::CompareTarget::Version(0),
        (CompareTarget::Create, Some(TargetUnion::CreateRevision(v))) => {
            mvcc::CompareTarget::Create(v)
        }
        (CompareTarget::Create, None) => mvcc::CompareTarget::Create(0),
        (CompareTarget::Mod, Some(TargetUnion::ModRevision(v))) => mvcc::CompareTarget::Mod(v),
        (CompareTarget::Mod, None) => mvcc::CompareTarget::Mod(0),
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => mvcc::CompareTarget::Value(v),
        (CompareTarget::Value, None) => mvcc::CompareTarget::Value(Vec::new()),
        (CompareTarget::Lease, Some(TargetUnion::Lease(v))) => mvcc::CompareTarget::Lease(v),
        (CompareTarget::Lease, None) => mvcc::CompareTarget::Lease(0),
        (target, Some(_)) => {
            return Err(format!("compare target {target:?} has a mismatched value"))
        }
    };
    Ok(mvcc::Compare { result, target, key: c.key, range_end: c.range_end })
}

fn request_op(op: pb::RequestOp) -> Result<mvcc::RequestOp, String> {
    use pb::request_op::Request;
    Ok(match op.request {
        Some(Request::RequestRange(r)) => mvcc::RequestOp::Range(range_request(r)),
        Some(Request::RequestPut(r)) => mvcc::RequestOp::Put(put_request(r)),
        Some(Request::RequestDeleteRange(r)) => mvcc::RequestOp::DeleteRange(delete_request(r)),
        Some(Request::RequestTxn(r)) => mvcc::RequestOp::Txn(txn_request(r)?),
        None => return Err("txn operation has no request".into()),
    })
}

/// Errors name the malformed part; the caller answers InvalidArgument.
pub fn txn_request(r: pb::TxnRequest) -> Result<mvcc::TxnRequest, String> {
    Ok(mvcc::TxnRequest {
        compare: r.compare.into_iter().map(compare).collect::<Result<_, _>>()?,
        success: r.success.into_iter().map(request_op).collect::<Result<_, _>>()?,
        failure: r.failure.into_iter().map(request_op).collect::<Result<_, _>>()?,
    })
}

/// etcd fills only the revision in the headers of responses nested in a txn.
fn nested(revision: i64) -> Header {
    Header { revision, ..Header::default() }
}

fn response_op(op: mvcc::ResponseOp) -> pb::ResponseOp {
    use pb::response_op::Response;
    let response = match op {
        mvcc::ResponseOp::Range(r) => {
            let h = nested(r.header_revision);
            Response::ResponseRange(range_response(r, h))
        }
        mvcc::ResponseOp::Put(r) => {
            let h = nested(r.header_revision);
            Response::ResponsePut(put_response(r, h))
        }
        mvcc::ResponseOp::DeleteRange(r) => {
            let h = nested(r.header_revision);
            Response::ResponseDeleteRange(delete_response(r, h))
        }
        mvcc::ResponseOp::Txn(r) => {
            let h = nested(r.header_revision);
            Response::ResponseTxn(txn_response(r, h))
        }
    };
    pb::ResponseOp { response: Some(response) }
}

pub fn txn_response(r: mvcc::TxnResponse, h: Header) -> pb::TxnResponse {
    pb::TxnResponse {
        header: header(h),
        succeeded: r.succeeded,
        responses: r.responses.into_iter().map(response_op).collect(),
    }
}
