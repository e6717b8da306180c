//! JSON as etcdctl's `-w json` prints it: Go's `encoding/json` over etcd 3.4's Go protobuf
//! structs. Field names are their json tags, every field is `omitempty` (so zero values and
//! empty lists vanish), bytes are base64, 64-bit integers are plain numbers, a oneof is wrapped
//! in `{"Response":{"ResponsePut":...}}` and strings are escaped as Go escapes them.

use base64::Engine as _;
use std::fmt::Write as _;
use store::proto::etcdserverpb::response_op::Response;
use store::proto::etcdserverpb::{
    DeleteRangeResponse, Member, MemberListResponse, PutResponse, RangeResponse, ResponseHeader,
    ResponseOp, StatusResponse, TxnResponse,
};
use store::proto::mvccpb::KeyValue;

use super::print::{EndpointHealth, EndpointStatus};

/// A JSON object being written field by field, in Go struct order.
pub(crate) struct Object {
    out: String,
}

impl Object {
    pub(crate) fn new() -> Self {
        Object { out: String::from("{") }
    }

    fn field(&mut self, name: &str, value: &str) -> &mut Self {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        self.out.push_str(&string(name));
        self.out.push(':');
        self.out.push_str(value);
        self
    }

    pub(crate) fn int(&mut self, name: &str, value: impl Into<i128>) -> &mut Self {
        let value = value.into();
        if value == 0 {
            return self;
        }
        self.field(name, &value.to_string())
    }

    fn bool(&mut self, name: &str, value: bool) -> &mut Self {
        if !value {
            return self;
        }
        self.field(name, "true")
    }

    fn bytes(&mut self, name: &str, value: &[u8]) -> &mut Self {
        if value.is_empty() {
            return self;
        }
        let encoded = base64::engine::general_purpose::STANDARD.encode(value);
        self.field(name, &string(&encoded))
    }

    fn string(&mut self, name: &str, value: &str) -> &mut Self {
        if value.is_empty() {
            return self;
        }
        self.field(name, &string(value))
    }

    /// An `omitempty` pointer: left out when nil, `{}` when present but all zero.
    pub(crate) fn object(&mut self, name: &str, value: Option<String>) -> &mut Self {
        match value {
            Some(value) => self.field(name, &value),
            None => self,
        }
    }

    fn array(&mut self, name: &str, items: Vec<String>) -> &mut Self {
        if items.is_empty() {
            return self;
        }
        self.field(name, &format!("[{}]", items.join(",")))
    }

    pub(crate) fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.out);
        out.push('}');
        out
    }
}

/// A Go `encoding/json` string: HTML-sensitive characters and U+2028/2029 escaped too.
pub fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) fn header(header: &Option<ResponseHeader>) -> Option<String> {
    header.as_ref().map(|h| {
        Object::new()
            .int("cluster_id", h.cluster_id)
            .int("member_id", h.member_id)
            .int("revision", h.revision)
            .int("raft_term", h.raft_term)
            .finish()
    })
}

pub(crate) fn key_value(kv: &KeyValue) -> String {
    Object::new()
        .bytes("key", &kv.key)
        .int("create_revision", kv.create_revision)
        .int("mod_revision", kv.mod_revision)
        .int("version", kv.version)
        .bytes("value", &kv.value)
        .int("lease", kv.lease)
        .finish()
}

fn key_values(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter().map(key_value).collect()
}

pub fn range_response(response: &RangeResponse) -> String {
    Object::new()
        .object("header", header(&response.header))
        .array("kvs", key_values(&response.kvs))
        .bool("more", response.more)
        .int("count", response.count)
        .finish()
}

pub fn put_response(response: &PutResponse) -> String {
    Object::new()
        .object("header", header(&response.header))
        .object("prev_kv", response.prev_kv.as_ref().map(key_value))
        .finish()
}

pub fn delete_range_response(response: &DeleteRangeResponse) -> String {
    Object::new()
        .object("header", header(&response.header))
        .int("deleted", response.deleted)
        .array("prev_kvs", key_values(&response.prev_kvs))
        .finish()
}

pub fn txn_response(response: &TxnResponse) -> String {
    Object::new()
        .object("header", header(&response.header))
        .bool("succeeded", response.succeeded)
        .array("responses", response.responses.iter().map(response_op).collect())
        .finish()
}

/// The oneof wrapper has no json tag in Go, so its field and variant names show as written.
fn response_op(op: &ResponseOp) -> String {
    let inner = match &op.response {
        Some(Response::ResponseRange(r)) => {
            Object::new().field("ResponseRange", &range_response(r)).finish()
        }
        Some(Response::ResponsePut(r)) => {
            Object::new().field("ResponsePut", &put_response(r)).finish()
        }
        Some(Response::ResponseDeleteRange(r)) => {
            Object::new().field("ResponseDeleteRange", &delete_range_response(r)).finish()
        }
        Some(Response::ResponseTxn(r)) => {
            Object::new().field("ResponseTxn", &txn_response(r)).finish()
        }
        None => "null".to_string(),
    };
    Object::new().field("Response", &inner).finish()
}

pub(crate) fn member(member: &Member) -> String {
    let strings = |items: &[String]| items.iter().map(|item| string(item)).collect();
    Object::new()
        .int("ID", member.id)
        .string("name", &member.name)
        .array("peerURLs", strings(&member.peer_ur_ls))
        .array("clientURLs", strings(&member.client_ur_ls))
        .bool("isLearner", member.is_learner)
        .finish()
}

/// The `header`, `member` (if any) and `members` of a membership-change response.
pub fn member_change_response(
    response_header: &Option<ResponseHeader>,
    changed: Option<&Member>,
    members: &[Member],
) -> String {
    Object::new()
        .object("header", header(response_header))
        .object("member", changed.map(member))
        .array("members", members.iter().map(member).collect())
        .finish()
}

pub fn member_list_response(response: &MemberListResponse) -> String {
    Object::new()
        .object("header", header(&response.header))
        .array("members", response.members.iter().map(member).collect())
        .finish()
}

/// etcd 3.4's StatusResponse: later fields (storage version, quota, downgrade info) are not
/// in etcdctl 3.4's struct, so they are not printed.
fn status_response(response: &StatusResponse) -> String {
    let errors = response.errors.iter().map(|error| string(error)).collect();
    Object::new()
        .object("header", header(&response.header))
        .string("version", &response.version)
        .int("dbSize", response.db_size)
        .int("leader", response.leader)
        .int("raftIndex", response.raft_index)
        .int("raftTerm", response.raft_term)
        .int("raftAppliedIndex", response.raft_applied_index)
        .array("errors", errors)
        .int("dbSizeInUse", response.db_size_in_use)
        .bool("isLearner", response.is_learner)
        .finish()
}

/// etcdctl's `[]epStatus`, whose fields have no `omitempty`.
pub fn endpoint_statuses(statuses: &[EndpointStatus]) -> String {
    let items: Vec<String> = statuses
        .iter()
        .map(|status| {
            Object::new()
                .field("Endpoint", &string(&status.endpoint))
                .field("Status", &status_response(&status.response))
                .finish()
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// etcdctl's `[]epHealth`: only `error` is `omitempty`.
pub fn endpoint_healths(healths: &[EndpointHealth]) -> String {
    let items: Vec<String> = healths
        .iter()
        .map(|health| {
            Object::new()
                .field("endpoint", &string(&health.endpoint))
                .field("health", if health.healthy { "true" } else { "false" })
                .field("took", &string(&health.took))
                .string("error", &health.error)
                .finish()
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// etcdctl's `[]epHashKV`: `{"Endpoint":..., "HashKV":{header, hash, compact_revision}}`
/// (etcd 3.4's HashKVResponse has no `hash_revision`).
pub fn endpoint_hashes(hashes: &[super::maintenance::EndpointHash]) -> String {
    let items: Vec<String> = hashes
        .iter()
        .map(|hash| {
            let response = &hash.response;
            let hash_kv = Object::new()
                .object("header", header(&response.header))
                .int("hash", response.hash)
                .int("compact_revision", response.compact_revision)
                .finish();
            Object::new()
                .field("Endpoint", &string(&hash.endpoint))
                .field("HashKV", &hash_kv)
                .finish()
        })
        .collect();
    format!("[{}]", items.join(","))
}
