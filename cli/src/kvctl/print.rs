//! etcdctl 3.4's printers (`-w simple|json|table|fields|protobuf`) as pure functions from a
//! response to the bytes etcdctl would write to stdout and stderr, including its
//! "not supported as output format" refusals.

use std::io::Write as _;

use prost::Message;
use store::proto::etcdserverpb::response_op::Response;
use store::proto::etcdserverpb::{
    DeleteRangeResponse, MemberListResponse, PutResponse, RangeResponse, ResponseHeader,
    StatusResponse, TxnResponse,
};
use store::proto::mvccpb::KeyValue;

use super::failure::Failure;
use super::{golang, json, table};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Simple,
    Json,
    Table,
    Fields,
    Protobuf,
}

impl Format {
    pub fn parse(name: &str) -> Result<Format, Failure> {
        match name {
            "simple" => Ok(Format::Simple),
            "json" => Ok(Format::Json),
            "table" => Ok(Format::Table),
            "fields" => Ok(Format::Fields),
            "protobuf" => Ok(Format::Protobuf),
            _ => Err(Failure::bad_feature("unsupported output format")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Simple => "simple",
            Format::Json => "json",
            Format::Table => "table",
            Format::Fields => "fields",
            Format::Protobuf => "protobuf",
        }
    }

    pub(crate) fn unsupported(self) -> Failure {
        Failure::bad_feature(format!("{} not supported as output format", self.name()))
    }
}

/// What a command prints; written out only once the whole output is known.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    fn stdout(bytes: Vec<u8>) -> Self {
        Output { stdout: bytes, stderr: Vec::new() }
    }

    fn line(text: String) -> Self {
        Self::stdout(format!("{text}\n").into_bytes())
    }

    /// Writes the output at once, for long-running commands that print as they go.
    pub fn write_now(&self) {
        // A closed pipe is not worth an error (as in `main`).
        let _ = std::io::stderr().write_all(&self.stderr);
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(&self.stdout).and_then(|()| stdout.flush());
    }
}

/// One endpoint's answer to `endpoint status` (etcdctl's `epStatus`).
#[derive(Debug, Clone)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub response: StatusResponse,
}

/// One endpoint's `endpoint health` result (etcdctl's `epHealth`); `took` is a Go duration.
#[derive(Debug, Clone)]
pub struct EndpointHealth {
    pub endpoint: String,
    pub healthy: bool,
    pub took: String,
    pub error: String,
}

#[derive(Clone, Copy, Debug)]
pub struct Printer {
    pub format: Format,
    /// `--hex`: keys and values as `\x66\x6f\x6f` in the simple format.
    pub hex: bool,
}

impl Printer {
    pub fn get(&self, response: &RangeResponse, value_only: bool) -> Result<Output, Failure> {
        match self.format {
            Format::Simple => {
                let mut out = Vec::new();
                self.key_values(&mut out, &response.kvs, value_only);
                Ok(Output::stdout(out))
            }
            Format::Json => Ok(Output::line(json::range_response(response))),
            Format::Fields => Ok(Output::stdout(fields::range_response(response).into_bytes())),
            Format::Protobuf => Ok(Output::stdout(response.encode_to_vec())),
            Format::Table => Err(self.format.unsupported()),
        }
    }

    pub fn put(&self, response: &PutResponse) -> Result<Output, Failure> {
        match self.format {
            Format::Simple => {
                let mut out = b"OK\n".to_vec();
                self.key_values(&mut out, response.prev_kv.as_slice(), false);
                Ok(Output::stdout(out))
            }
            Format::Json => Ok(Output::line(json::put_response(response))),
            Format::Fields => Ok(Output::stdout(fields::put_response(response).into_bytes())),
            Format::Protobuf => Ok(Output::stdout(response.encode_to_vec())),
            Format::Table => Err(self.format.unsupported()),
        }
    }

    pub fn del(&self, response: &DeleteRangeResponse) -> Result<Output, Failure> {
        match self.format {
            Format::Simple => {
                let mut out = format!("{}\n", response.deleted).into_bytes();
                self.key_values(&mut out, &response.prev_kvs, false);
                Ok(Output::stdout(out))
            }
            Format::Json => Ok(Output::line(json::delete_range_response(response))),
            Format::Fields => Ok(Output::stdout(fields::delete_response(response).into_bytes())),
            Format::Protobuf => Ok(Output::stdout(response.encode_to_vec())),
            Format::Table => Err(self.format.unsupported()),
        }
    }

    pub fn txn(&self, response: &TxnResponse) -> Result<Output, Failure> {
        match self.format {
            Format::Simple => Ok(Output::stdout(self.simple_txn(response))),
            Format::Json => Ok(Output::line(json::txn_response(response))),
            Format::Fields => Ok(Output::stdout(fields::txn_response(response).into_bytes())),
            Format::Protobuf => Ok(Output::stdout(response.encode_to_vec())),
            Format::Table => Err(self.format.unsupported()),
        }
    }

    pub fn member_list(&self, response: &MemberListResponse) -> Result<Output, Failure> {
        let (header, rows) = member_rows(response);
        match self.format {
            Format::Simple => Ok(Output::stdout(simple_rows(&rows))),
            Format::Json => Ok(Output::line(json::member_list_response(response))),
            Format::Table => Ok(Output::stdout(table::render(&header, &rows).into_bytes())),
            Format::Fields => Ok(Output::stdout(fields::member_list(response).into_bytes())),
            Format::Protobuf => Ok(Output::stdout(response.encode_to_vec())),
        }
    }

    pub fn endpoint_status(&self, statuses: &[EndpointStatus]) -> Result<Output, Failure> {
        let (header, rows) = endpoint_status_rows(statuses);
        match self.format {
            Format::Simple => Ok(Output::stdout(simple_rows(&rows))),
            Format::Json => Ok(Output::line(json::endpoint_statuses(statuses))),
            Format::Table => Ok(Output::stdout(table::render(&header, &rows).into_bytes())),
            Format::Fields => Ok(Output::stdout(fields::endpoint_statuses(statuses).into_bytes())),
            Format::Protobuf => Err(self.format.unsupported()),
        }
    }

    pub fn endpoint_health(&self, healths: &[EndpointHealth]) -> Result<Output, Failure> {
        match self.format {
            Format::Simple => {
                // etcdctl writes health reports to stderr, not stdout.
                let lines: String = healths.iter().map(simple_health).collect();
                Ok(Output { stdout: Vec::new(), stderr: lines.into_bytes() })
            }
            Format::Json => Ok(Output::line(json::endpoint_healths(healths))),
            Format::Table => {
                let header = ["endpoint", "health", "took", "error"];
                let rows: Vec<Vec<String>> = healths
                    .iter()
                    .map(|h| {
                        let healthy = h.healthy.to_string();
                        vec![h.endpoint.clone(), healthy, h.took.clone(), h.error.clone()]
                    })
                    .collect();
                Ok(Output::stdout(table::render(&header, &rows).into_bytes()))
            }
            Format::Fields => Ok(Output::stdout(fields::endpoint_healths(healths).into_bytes())),
            Format::Protobuf => Err(self.format.unsupported()),
        }
    }

    /// etcdctl's `printKV`: the key line (unless `value_only`), then the value line, raw bytes.
    fn key_values(&self, out: &mut Vec<u8>, kvs: &[KeyValue], value_only: bool) {
        for kv in kvs {
            if !value_only {
                self.write_bytes(out, &kv.key);
            }
            self.write_bytes(out, &kv.value);
        }
    }

    pub(crate) fn write_bytes(&self, out: &mut Vec<u8>, bytes: &[u8]) {
        if self.hex {
            for byte in bytes {
                let _ = write!(out, "\\x{byte:02x}");
            }
        } else {
            out.extend_from_slice(bytes);
        }
        out.push(b'\n');
    }

    fn simple_txn(&self, response: &TxnResponse) -> Vec<u8> {
        let mut out =
            if response.succeeded { b"SUCCESS\n".to_vec() } else { b"FAILURE\n".to_vec() };
        for op in &response.responses {
            out.push(b'\n');
            let printed = match &op.response {
                Some(Response::ResponseRange(r)) => self.get(r, false),
                Some(Response::ResponsePut(r)) => self.put(r),
                Some(Response::ResponseDeleteRange(r)) => self.del(r),
                other => Ok(Output::line(format!("unexpected response {other:?}"))),
            };
            // The simple format supports every nested response, so printing cannot fail.
            if let Ok(printed) = printed {
                out.extend_from_slice(&printed.stdout);
            }
        }
        out
    }
}

fn simple_rows(rows: &[Vec<String>]) -> Vec<u8> {
    rows.iter().map(|row| format!("{}\n", row.join(", "))).collect::<String>().into_bytes()
}

fn simple_health(health: &EndpointHealth) -> String {
    if health.error.is_empty() {
        let took = &health.took;
        format!("{} is healthy: successfully committed proposal: took = {took}\n", health.endpoint)
    } else {
        let error = &health.error;
        format!("{} is unhealthy: failed to commit proposal: {error}\n", health.endpoint)
    }
}

/// etcdctl's `makeMemberListTable`: a member without a name has not started yet.
fn member_rows(response: &MemberListResponse) -> ([&'static str; 6], Vec<Vec<String>>) {
    let header = ["ID", "Status", "Name", "Peer Addrs", "Client Addrs", "Is Learner"];
    let rows = response
        .members
        .iter()
        .map(|member| {
            let status = if member.name.is_empty() { "unstarted" } else { "started" };
            vec![
                format!("{:x}", member.id),
                status.to_string(),
                member.name.clone(),
                member.peer_ur_ls.join(","),
                member.client_ur_ls.join(","),
                member.is_learner.to_string(),
            ]
        })
        .collect();
    (header, rows)
}

/// etcdctl's `makeEndpointStatusTable`.
fn endpoint_status_rows(statuses: &[EndpointStatus]) -> ([&'static str; 10], Vec<Vec<String>>) {
    let header = [
        "endpoint",
        "ID",
        "version",
        "db size",
        "is leader",
        "is learner",
        "raft term",
        "raft index",
        "raft applied index",
        "errors",
    ];
    let rows = statuses
        .iter()
        .map(|status| {
            let response = &status.response;
            let member_id = response.header.as_ref().map_or(0, |h| h.member_id);
            vec![
                status.endpoint.clone(),
                format!("{member_id:x}"),
                response.version.clone(),
                golang::humanize_bytes(u64::try_from(response.db_size).unwrap_or(0)),
                (response.leader == member_id).to_string(),
                response.is_learner.to_string(),
                response.raft_term.to_string(),
                response.raft_index.to_string(),
                response.raft_applied_index.to_string(),
                response.errors.join(", "),
            ]
        })
        .collect();
    (header, rows)
}

/// etcdctl's `fields` printer: one `"Name" : value` line per field, Go `%q` for byte strings.
mod fields {
    use super::*;

    fn header(out: &mut String, header: &Option<ResponseHeader>) {
        let h = header.unwrap_or_default();
        out.push_str(&format!(
            "\"ClusterID\" : {}\n\"MemberID\" : {}\n",
            h.cluster_id, h.member_id
        ));
        out.push_str(&format!("\"Revision\" : {}\n\"RaftTerm\" : {}\n", h.revision, h.raft_term));
    }

    fn key_value(out: &mut String, prefix: &str, kv: &KeyValue) {
        let quote = golang::quote;
        out.push_str(&format!("\"{prefix}Key\" : {}\n", quote(&kv.key)));
        out.push_str(&format!("\"{prefix}CreateRevision\" : {}\n", kv.create_revision));
        out.push_str(&format!("\"{prefix}ModRevision\" : {}\n", kv.mod_revision));
        out.push_str(&format!("\"{prefix}Version\" : {}\n", kv.version));
        out.push_str(&format!("\"{prefix}Value\" : {}\n", quote(&kv.value)));
        out.push_str(&format!("\"{prefix}Lease\" : {}\n", kv.lease));
    }

    pub fn range_response(response: &RangeResponse) -> String {
        let mut out = String::new();
        header(&mut out, &response.header);
        for kv in &response.kvs {
            key_value(&mut out, "", kv);
        }
        out.push_str(&format!("\"More\" : {}\n\"Count\" : {}\n", response.more, response.count));
        out
    }

    pub fn put_response(response: &PutResponse) -> String {
        let mut out = String::new();
        header(&mut out, &response.header);
        if let Some(kv) = &response.prev_kv {
            key_value(&mut out, "Prev", kv);
        }
        out
    }

    pub fn delete_response(response: &DeleteRangeResponse) -> String {
        let mut out = String::new();
        header(&mut out, &response.header);
        out.push_str(&format!("\"Deleted\" : {}\n", response.deleted));
        for kv in &response.prev_kvs {
            key_value(&mut out, "Prev", kv);
        }
        out
    }

    pub fn txn_response(response: &TxnResponse) -> String {
        let mut out = String::new();
        header(&mut out, &response.header);
        out.push_str(&format!("\"Succeeded\" : {}\n", response.succeeded));
        for op in &response.responses {
            match &op.response {
                Some(Response::ResponseRange(r)) => out.push_str(&range_response(r)),
                Some(Response::ResponsePut(r)) => out.push_str(&put_response(r)),
                Some(Response::ResponseDeleteRange(r)) => out.push_str(&delete_response(r)),
                other => {
                    let text = format!("{other:?}");
                    out.push_str(&format!("\"Unknown\" : {}\n", golang::quote(text.as_bytes())));
                }
            }
        }
        out
    }

    pub fn member_list(response: &MemberListResponse) -> String {
        let mut out = String::new();
        header(&mut out, &response.header);
        for member in &response.members {
            out.push_str(&format!("\"ID\" : {}\n", member.id));
            out.push_str(&format!("\"Name\" : {}\n", golang::quote(member.name.as_bytes())));
            for url in &member.peer_ur_ls {
                out.push_str(&format!("\"PeerURL\" : {}\n", golang::quote(url.as_bytes())));
            }
            for url in &member.client_ur_ls {
                out.push_str(&format!("\"ClientURL\" : {}\n", golang::quote(url.as_bytes())));
            }
            out.push_str(&format!("\"IsLearner\" : {}\n\n", member.is_learner));
        }
        out
    }

    pub fn endpoint_statuses(statuses: &[EndpointStatus]) -> String {
        let mut out = String::new();
        for status in statuses {
            let r = &status.response;
            header(&mut out, &r.header);
            out.push_str(&format!("\"Version\" : {}\n", golang::quote(r.version.as_bytes())));
            out.push_str(&format!("\"DBSize\" : {}\n\"Leader\" : {}\n", r.db_size, r.leader));
            out.push_str(&format!("\"IsLearner\" : {}\n", r.is_learner));
            out.push_str(&format!(
                "\"RaftIndex\" : {}\n\"RaftTerm\" : {}\n",
                r.raft_index, r.raft_term
            ));
            out.push_str(&format!("\"RaftAppliedIndex\" : {}\n", r.raft_applied_index));
            // Go prints a []string as `[a b]`.
            out.push_str(&format!("\"Errors\" : [{}]\n", r.errors.join(" ")));
            let endpoint = golang::quote(status.endpoint.as_bytes());
            out.push_str(&format!("\"Endpoint\" : {endpoint}\n\n"));
        }
        out
    }

    pub fn endpoint_healths(healths: &[EndpointHealth]) -> String {
        let mut out = String::new();
        for health in healths {
            let endpoint = golang::quote(health.endpoint.as_bytes());
            out.push_str(&format!("\"Endpoint\" : {endpoint}\n\"Health\" : {}\n", health.healthy));
            out.push_str(&format!("\"Took\" : {}\n\"Error\" : {}\n\n", health.took, health.error));
        }
        out
    }
}

#[cfg(test)]
mod tests;
