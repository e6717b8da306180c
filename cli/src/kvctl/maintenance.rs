//! `kvctl`'s maintenance commands as etcdctl 3.4 spells and prints them: `endpoint hashkv`,
//! `defrag` and `move-leader` (drivers, flags and pure printers). Snapshots are in `snapshot`.

use std::ffi::OsString;

use clap::{ArgAction, Args};
use store::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use store::proto::etcdserverpb::{
    DefragmentRequest, HashKvRequest, HashKvResponse, MoveLeaderRequest, StatusRequest,
};
use tonic::transport::Channel;

use super::args::GlobalFlags;
use super::client::{Client, Target};
use super::command::{endpoint_targets, Report};
use super::failure::Failure;
use super::print::{Format, Output, Printer};
use super::{golang, json, table};

/// `endpoint hashkv [--rev R]`
#[derive(Args, Debug)]
pub struct HashKvArgs {
    /// maximum revision to hash (default: all revisions)
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub rev: i64,
    /// use all endpoints from the cluster member list
    #[arg(
        long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub cluster: bool,
}

/// `defrag [--cluster]`
#[derive(Args, Debug)]
pub struct DefragArgs {
    /// defragment all endpoints from the cluster member list
    #[arg(
        long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub cluster: bool,
}

/// `move-leader <transferee-member-id>`
#[derive(Args, Debug)]
pub struct MoveLeaderArgs {
    /// <transferee-member-id> (hexadecimal, as `member list` shows it)
    #[arg(value_name = "TRANSFEREE_MEMBER_ID")]
    pub args: Vec<OsString>,
}

/// etcdctl accepts responses up to 2 GiB, as for ranges.
pub fn maintenance(channel: Channel) -> MaintenanceClient<Channel> {
    MaintenanceClient::new(channel).max_decoding_message_size(usize::MAX)
}

/// One endpoint's HashKV answer (etcdctl's `epHashKV`).
#[derive(Debug, Clone)]
pub struct EndpointHash {
    pub endpoint: String,
    pub response: HashKvResponse,
}

/// etcdctl's `endpoint hashkv`: every endpoint in turn; failures are named on stderr, the
/// others printed, and the last failure is the command's error.
pub async fn endpoint_hashkv(
    client: &Client,
    printer: Printer,
    global: &GlobalFlags,
    args: &HashKvArgs,
) -> Report {
    let targets = match endpoint_targets(client, global, args.cluster).await {
        Ok(targets) => targets,
        Err(failure) => return Err(failure).into(),
    };
    let mut hashes = Vec::new();
    let mut stderr = String::new();
    let mut last_failure = None;
    for target in targets {
        let request = HashKvRequest { revision: args.rev };
        let hashed = client
            .call_on(std::slice::from_ref(&target), |channel| async move {
                maintenance(channel).hash_kv(request).await
            })
            .await;
        match hashed {
            Ok(response) => hashes.push(EndpointHash { endpoint: target.name, response }),
            Err(failure) => {
                let name = &target.name;
                stderr.push_str(&format!(
                    "Failed to get the hash of endpoint {name} ({})\n",
                    failure.message
                ));
                last_failure = Some(failure);
            }
        }
    }
    let mut report = Report::from(print_hashes(printer, &hashes));
    let mut failures = stderr.into_bytes();
    failures.append(&mut report.output.stderr);
    report.output.stderr = failures;
    if report.failure.is_none() {
        report.failure = last_failure;
    }
    report
}

pub fn print_hashes(printer: Printer, hashes: &[EndpointHash]) -> Result<Output, Failure> {
    let rows: Vec<Vec<String>> =
        hashes.iter().map(|h| vec![h.endpoint.clone(), h.response.hash.to_string()]).collect();
    let stdout = match printer.format {
        Format::Simple => rows.iter().map(|row| format!("{}\n", row.join(", "))).collect(),
        Format::Json => format!("{}\n", json::endpoint_hashes(hashes)),
        Format::Table => table::render(&["endpoint", "hash"], &rows),
        Format::Fields => hashes.iter().map(fields_hash).collect(),
        Format::Protobuf => {
            return Err(Failure::bad_feature("protobuf not supported as output format"))
        }
    };
    Ok(Output { stdout: stdout.into_bytes(), stderr: Vec::new() })
}

fn fields_hash(hash: &EndpointHash) -> String {
    let h = hash.response.header.unwrap_or_default();
    let endpoint = golang::quote(hash.endpoint.as_bytes());
    format!(
        "\"ClusterID\" : {}\n\"MemberID\" : {}\n\"Revision\" : {}\n\"RaftTerm\" : {}\n\
         \"Endpoint\" : {endpoint}\n\"Hash\" : {}\n\n",
        h.cluster_id, h.member_id, h.revision, h.raft_term, hash.response.hash
    )
}

/// etcdctl's `defrag`: each endpoint in turn, failures named on stderr, exit 1 if any failed.
pub async fn defrag(client: &Client, global: &GlobalFlags, args: &DefragArgs) -> Report {
    let targets = match endpoint_targets(client, global, args.cluster).await {
        Ok(targets) => targets,
        Err(failure) => return Err(failure).into(),
    };
    let mut output = Output::default();
    let mut failed = false;
    for target in targets {
        let defragmented = client
            .call_on(std::slice::from_ref(&target), |channel| async move {
                maintenance(channel).defragment(DefragmentRequest {}).await
            })
            .await;
        let name = &target.name;
        match defragmented {
            Ok(_) => output
                .stdout
                .extend(format!("Finished defragmenting etcd member[{name}]\n").into_bytes()),
            Err(failure) => {
                failed = true;
                let message = failure.message;
                let line = format!("Failed to defragment etcd member[{name}] ({message})\n");
                output.stderr.extend(line.into_bytes());
            }
        }
    }
    Report { output, failure: failed.then(Failure::silent) }
}

/// Go's `strconv.ParseUint(text, 16, 64)`, with its error text.
fn parse_member_id(text: &str) -> Result<u64, Failure> {
    u64::from_str_radix(text, 16).map_err(|error| {
        let reason = match error.kind() {
            std::num::IntErrorKind::PosOverflow => "value out of range",
            _ => "invalid syntax",
        };
        let quoted = golang::quote(text.as_bytes());
        Failure::bad_args(format!("strconv.ParseUint: parsing {quoted}: {reason}"))
    })
}

/// etcdctl's `move-leader`: finds the leader among the endpoints, asks it to transfer.
pub async fn move_leader(client: &Client, args: &MoveLeaderArgs) -> Result<Output, Failure> {
    let [target] = args.args.as_slice() else {
        return Err(Failure::bad_args("move-leader command needs 1 argument"));
    };
    let target = parse_member_id(&target.to_string_lossy())?;
    let mut leader: Option<(Target, u64)> = None;
    for endpoint in &client.targets {
        let status = client
            .call_on(std::slice::from_ref(endpoint), |channel| async move {
                maintenance(channel).status(StatusRequest {}).await
            })
            .await?;
        let member_id = status.header.map_or(0, |h| h.member_id);
        if member_id != 0 && member_id == status.leader {
            leader = Some((endpoint.clone(), status.leader));
            break;
        }
    }
    let Some((endpoint, leader_id)) = leader else {
        let names: Vec<&str> = client.targets.iter().map(|t| t.name.as_str()).collect();
        let message = format!("no leader endpoint given at [{}]", names.join(" "));
        return Err(Failure::bad_args(message));
    };
    let request = MoveLeaderRequest { target_id: target };
    client
        .call_on(std::slice::from_ref(&endpoint), |channel| async move {
            maintenance(channel).move_leader(request).await
        })
        .await?;
    let line = format!("Leadership transferred from {leader_id:x} to {target:x}\n");
    Ok(Output { stdout: line.into_bytes(), stderr: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::proto::etcdserverpb::ResponseHeader;

    fn hash(endpoint: &str, value: u32) -> EndpointHash {
        let header = ResponseHeader { cluster_id: 1, member_id: 2, revision: 3, raft_term: 4 };
        let response = HashKvResponse {
            header: Some(header),
            hash: value,
            compact_revision: -1,
            hash_revision: 3,
        };
        EndpointHash { endpoint: endpoint.to_string(), response }
    }

    fn check(format: Format, expected: &str) {
        let printer = Printer { format, hex: false };
        let hashes = [hash("127.0.0.1:2379", 2020292994), hash("127.0.0.2:2379", 7)];
        let output = print_hashes(printer, &hashes).expect("printable");
        assert_eq!(String::from_utf8(output.stdout).expect("utf-8"), expected);
    }

    #[test]
    fn hashes_print_as_etcdctl_prints_them() {
        check(Format::Simple, "127.0.0.1:2379, 2020292994\n127.0.0.2:2379, 7\n");
        check(
            Format::Json,
            "[{\"Endpoint\":\"127.0.0.1:2379\",\"HashKV\":{\"header\":{\"cluster_id\":1,\
             \"member_id\":2,\"revision\":3,\"raft_term\":4},\"hash\":2020292994,\
             \"compact_revision\":-1}},{\"Endpoint\":\"127.0.0.2:2379\",\"HashKV\":{\"header\":\
             {\"cluster_id\":1,\"member_id\":2,\"revision\":3,\"raft_term\":4},\"hash\":7,\
             \"compact_revision\":-1}}]\n",
        );
        check(
            Format::Table,
            "+----------------+------------+\n\
             |    ENDPOINT    |    HASH    |\n\
             +----------------+------------+\n\
             | 127.0.0.1:2379 | 2020292994 |\n\
             | 127.0.0.2:2379 |          7 |\n\
             +----------------+------------+\n",
        );
        let one = print_hashes(Printer { format: Format::Fields, hex: false }, &[hash("e", 9)]);
        let text = String::from_utf8(one.expect("printable").stdout).expect("utf-8");
        assert_eq!(
            text,
            "\"ClusterID\" : 1\n\"MemberID\" : 2\n\"Revision\" : 3\n\"RaftTerm\" : 4\n\
             \"Endpoint\" : \"e\"\n\"Hash\" : 9\n\n"
        );
    }

    #[test]
    fn member_ids_parse_as_go_parses_them() {
        assert_eq!(parse_member_id("8e9e05c52164694d").ok(), Some(0x8e9e05c52164694d));
        let bad = parse_member_id("zz").expect_err("not hex");
        assert_eq!(bad.message, "strconv.ParseUint: parsing \"zz\": invalid syntax");
    }
}
