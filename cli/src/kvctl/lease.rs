//! `kvctl lease grant|revoke|timetolive|list|keep-alive`, as etcdctl 3.4 spells and prints
//! them: the subcommands' arguments, their drivers, and pure printers for the simple, json,
//! fields and protobuf formats (etcdctl refuses `table` for leases, and so does kvctl).

use std::io::Write as _;
use std::time::Duration;

use base64::Engine as _;
use clap::{ArgAction, Args, Subcommand};
use prost::Message;
use store::proto::etcdserverpb::lease_client::LeaseClient;
use store::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, ResponseHeader,
};
use tonic::transport::Channel;

use super::client::{self, Client};
use super::failure::{ExitStatus, Failure};
use super::golang;
use super::print::{Format, Output, Printer};

#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Creates leases
    Grant(LeaseArgs),
    /// Revokes leases
    Revoke(LeaseArgs),
    /// Get lease information
    Timetolive(TimeToLiveArgs),
    /// List all active leases
    List(LeaseArgs),
    /// Keeps leases alive (renew)
    KeepAlive(KeepAliveArgs),
}

/// `lease grant <ttl>`, `lease revoke <leaseID>`, `lease list`
#[derive(Args, Debug)]
pub struct LeaseArgs {
    #[arg(value_name = "ARGS", allow_negative_numbers = true)]
    pub args: Vec<String>,
}

/// `lease timetolive <leaseID> [options]`
#[derive(Args, Debug)]
pub struct TimeToLiveArgs {
    /// Get keys attached to this lease
    #[arg(
        long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub keys: bool,
    #[arg(value_name = "LEASE_ID")]
    pub args: Vec<String>,
}

/// `lease keep-alive [options] <leaseID>`
#[derive(Args, Debug)]
pub struct KeepAliveArgs {
    /// Resets the keep-alive time to its original value and exits immediately
    #[arg(
        long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub once: bool,
    #[arg(value_name = "LEASE_ID")]
    pub args: Vec<String>,
}

fn lease(channel: Channel) -> LeaseClient<Channel> {
    LeaseClient::new(channel)
}

pub async fn run(
    client: &Client,
    printer: Printer,
    command: &LeaseCommand,
) -> Result<Output, Failure> {
    if printer.format == Format::Table {
        return Err(Failure::bad_feature("table not supported as output format"));
    }
    match command {
        LeaseCommand::Grant(args) => grant(client, printer, &args.args).await,
        LeaseCommand::Revoke(args) => revoke(client, printer, &args.args).await,
        LeaseCommand::Timetolive(args) => time_to_live(client, printer, args).await,
        LeaseCommand::List(_) => list(client, printer).await,
        LeaseCommand::KeepAlive(args) => keep_alive(client, printer, args).await,
    }
}

/// etcdctl reads lease ids as hexadecimal.
fn lease_id(arg: &str) -> Result<i64, Failure> {
    golang::parse_int(arg, 16).map_err(|error| {
        Failure::bad_args(format!("bad lease ID arg ({error}), expecting ID in Hex"))
    })
}

fn single<'a>(args: &'a [String], message: &str) -> Result<&'a str, Failure> {
    match args {
        [arg] => Ok(arg),
        _ => Err(Failure::bad_args(message)),
    }
}

async fn grant(client: &Client, printer: Printer, args: &[String]) -> Result<Output, Failure> {
    let ttl = single(args, "lease grant command needs TTL argument")?;
    let ttl =
        golang::parse_int(ttl, 10).map_err(|e| Failure::bad_args(format!("bad TTL ({e})")))?;
    let request = LeaseGrantRequest { ttl, id: 0 };
    let response = client
        .call(|channel| async move { lease(channel).lease_grant(request).await })
        .await
        .map_err(|f| Failure::error(format!("failed to grant lease ({})", f.message)))?;
    Ok(print_grant(printer.format, &response))
}

async fn revoke(client: &Client, printer: Printer, args: &[String]) -> Result<Output, Failure> {
    let id = lease_id(single(args, "lease revoke command needs 1 argument")?)?;
    let request = LeaseRevokeRequest { id };
    let response = client
        .call(|channel| async move { lease(channel).lease_revoke(request).await })
        .await
        .map_err(|f| Failure::error(format!("failed to revoke lease ({})", f.message)))?;
    Ok(print_revoke(printer.format, id, &response))
}

async fn time_to_live(
    client: &Client,
    printer: Printer,
    args: &TimeToLiveArgs,
) -> Result<Output, Failure> {
    let message = "lease timetolive command needs lease ID as argument";
    let id = lease_id(single(&args.args, message)?)?;
    let request = LeaseTimeToLiveRequest { id, keys: args.keys };
    let response = client
        .call(|channel| async move { lease(channel).lease_time_to_live(request).await })
        .await?;
    Ok(print_time_to_live(printer.format, &response, args.keys))
}

async fn list(client: &Client, printer: Printer) -> Result<Output, Failure> {
    let response = client
        .call(|channel| async move { lease(channel).lease_leases(LeaseLeasesRequest {}).await })
        .await
        .map_err(|f| {
            Failure::new(
                ExitStatus::BadConnection,
                format!("failed to list leases ({})", f.message),
            )
        })?;
    Ok(print_list(printer.format, &response))
}

async fn keep_alive(
    client: &Client,
    printer: Printer,
    args: &KeepAliveArgs,
) -> Result<Output, Failure> {
    let message = "lease keep-alive command needs lease ID as argument";
    let id = lease_id(single(&args.args, message)?)?;
    let channel = client::connect(&client.targets, client.dial_timeout).await;
    // The first request goes in before the call: etcd answers the stream's headers only with
    // its first response.
    let (requests, queue) = tokio::sync::mpsc::channel(1);
    let _ = requests.send(LeaseKeepAliveRequest { id }).await;
    let stream = tokio_stream::wrappers::ReceiverStream::new(queue);
    let bad_connection = |status: &tonic::Status| {
        Failure::new(ExitStatus::BadConnection, Failure::from_status(status).message)
    };
    let mut lease_client = lease(channel);
    let opened =
        tokio::time::timeout(client.command_timeout, lease_client.lease_keep_alive(stream));
    let mut responses = match opened.await {
        Ok(opened) => opened.map_err(|s| bad_connection(&s))?.into_inner(),
        Err(_elapsed) => return Err(Failure::deadline_exceeded()),
    };
    let not_found =
        || Failure::new(ExitStatus::BadConnection, "etcdserver: requested lease not found");
    loop {
        let response = match responses.message().await {
            Ok(Some(response)) => response,
            Ok(None) => break,
            Err(status) => return Err(bad_connection(&status)),
        };
        if response.ttl <= 0 {
            if args.once {
                return Err(not_found());
            }
            break;
        }
        let printed = print_keep_alive(printer.format, &response);
        if args.once {
            return Ok(printed);
        }
        // A long-running command: print as responses come, as etcdctl does.
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(&printed.stdout).and_then(|()| stdout.flush());
        drop(stdout);
        // clientv3 renews a third of the way through the TTL.
        let ttl_seconds = u64::try_from(response.ttl).unwrap_or(1);
        tokio::time::sleep(Duration::from_secs(ttl_seconds).div_f64(3.0)).await;
        if requests.send(LeaseKeepAliveRequest { id }).await.is_err() {
            break;
        }
    }
    let mut output = Output::default();
    if printer.format == Format::Simple {
        output.stdout = format!("lease {id:016x} expired or revoked.\n").into_bytes();
    }
    Ok(output)
}

fn lines(text: String) -> Output {
    Output { stdout: text.into_bytes(), stderr: Vec::new() }
}

fn protobuf(message: &impl Message) -> Output {
    Output { stdout: message.encode_to_vec(), stderr: Vec::new() }
}

/// clientv3's lease responses embed `*pb.ResponseHeader`: its (omitempty) fields come first
/// at the top level of the JSON object.
fn json_header(header: &Option<ResponseHeader>) -> String {
    let h = header.unwrap_or_default();
    let fields = [
        ("cluster_id", i128::from(h.cluster_id)),
        ("member_id", i128::from(h.member_id)),
        ("revision", i128::from(h.revision)),
        ("raft_term", i128::from(h.raft_term)),
    ];
    fields
        .iter()
        .filter(|(_, value)| *value != 0)
        .map(|(name, value)| format!("\"{name}\":{value},"))
        .collect()
}

fn fields_header(header: &Option<ResponseHeader>) -> String {
    let h = header.unwrap_or_default();
    format!(
        "\"ClusterID\" : {}\n\"MemberID\" : {}\n\"Revision\" : {}\n\"RaftTerm\" : {}\n",
        h.cluster_id, h.member_id, h.revision, h.raft_term
    )
}

pub fn print_grant(format: Format, r: &LeaseGrantResponse) -> Output {
    match format {
        Format::Json => lines(format!(
            "{{{}\"ID\":{},\"TTL\":{},\"Error\":{}}}\n",
            json_header(&r.header),
            r.id,
            r.ttl,
            super::json::string(&r.error)
        )),
        Format::Fields => {
            lines(format!("{}\"ID\" : {}\n\"TTL\" : {}\n", fields_header(&r.header), r.id, r.ttl))
        }
        Format::Protobuf => protobuf(r),
        Format::Simple | Format::Table => {
            lines(format!("lease {:016x} granted with TTL({}s)\n", r.id, r.ttl))
        }
    }
}

pub fn print_revoke(format: Format, id: i64, r: &LeaseRevokeResponse) -> Output {
    match format {
        Format::Json => {
            let header = json_header(&r.header);
            let header = header.strip_suffix(',').unwrap_or(&header);
            let object =
                if header.is_empty() { String::new() } else { format!("\"header\":{{{header}}}") };
            lines(format!("{{{object}}}\n"))
        }
        Format::Fields => lines(fields_header(&r.header)),
        Format::Protobuf => protobuf(r),
        Format::Simple | Format::Table => lines(format!("lease {id:016x} revoked\n")),
    }
}

pub fn print_time_to_live(format: Format, r: &LeaseTimeToLiveResponse, keys: bool) -> Output {
    match format {
        Format::Json => {
            let encoded: Vec<String> = r
                .keys
                .iter()
                .map(|k| format!("\"{}\"", base64::engine::general_purpose::STANDARD.encode(k)))
                .collect();
            let keys_json = if encoded.is_empty() {
                "null".to_string()
            } else {
                format!("[{}]", encoded.join(","))
            };
            lines(format!(
                "{{{}\"id\":{},\"ttl\":{},\"granted-ttl\":{},\"keys\":{keys_json}}}\n",
                json_header(&r.header),
                r.id,
                r.ttl,
                r.granted_ttl
            ))
        }
        Format::Fields => {
            let mut text = fields_header(&r.header);
            text.push_str(&format!("\"ID\" : {}\n\"TTL\" : {}\n", r.id, r.ttl));
            text.push_str(&format!("\"GrantedTTL\" : {}\n", r.granted_ttl));
            for key in &r.keys {
                text.push_str(&format!("\"Key\" : {}\n", golang::quote(key)));
            }
            lines(text)
        }
        Format::Protobuf => protobuf(r),
        Format::Simple | Format::Table => lines(simple_time_to_live(r, keys)),
    }
}

fn simple_time_to_live(r: &LeaseTimeToLiveResponse, keys: bool) -> String {
    if r.granted_ttl == 0 && r.ttl == -1 {
        return format!("lease {:016x} already expired\n", r.id);
    }
    let mut text =
        format!("lease {:016x} granted with TTL({}s), remaining({}s)", r.id, r.granted_ttl, r.ttl);
    if keys {
        let names: Vec<String> = r.keys.iter().map(|k| String::from_utf8_lossy(k).into()).collect();
        text.push_str(&format!(", attached keys([{}])", names.join(" ")));
    }
    text + "\n"
}

pub fn print_list(format: Format, r: &LeaseLeasesResponse) -> Output {
    match format {
        Format::Json => {
            let leases: Vec<String> =
                r.leases.iter().map(|l| format!("{{\"id\":{}}}", l.id)).collect();
            lines(format!("{{{}\"leases\":[{}]}}\n", json_header(&r.header), leases.join(",")))
        }
        Format::Fields => {
            let mut text = fields_header(&r.header);
            for l in &r.leases {
                text.push_str(&format!("\"ID\" : {}\n", l.id));
            }
            lines(text)
        }
        Format::Protobuf => protobuf(r),
        Format::Simple | Format::Table => {
            let mut text = format!("found {} leases\n", r.leases.len());
            for l in &r.leases {
                text.push_str(&format!("{:016x}\n", l.id));
            }
            lines(text)
        }
    }
}

pub fn print_keep_alive(format: Format, r: &LeaseKeepAliveResponse) -> Output {
    match format {
        Format::Json => {
            lines(format!("{{{}\"ID\":{},\"TTL\":{}}}\n", json_header(&r.header), r.id, r.ttl))
        }
        Format::Fields => {
            lines(format!("{}\"ID\" : {}\n\"TTL\" : {}\n", fields_header(&r.header), r.id, r.ttl))
        }
        Format::Protobuf => protobuf(r),
        Format::Simple | Format::Table => {
            lines(format!("lease {:016x} keepalived with TTL({})\n", r.id, r.ttl))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::proto::etcdserverpb::LeaseStatus;

    fn header() -> Option<ResponseHeader> {
        Some(ResponseHeader { cluster_id: 7, member_id: 8, revision: 3, raft_term: 2 })
    }

    fn text(output: Output) -> String {
        String::from_utf8(output.stdout).unwrap()
    }

    #[test]
    fn grant_prints_as_etcdctl() {
        let r = LeaseGrantResponse {
            header: header(),
            id: 0x0e43a20e86ab8505,
            ttl: 60,
            error: String::new(),
        };
        assert_eq!(
            text(print_grant(Format::Simple, &r)),
            "lease 0e43a20e86ab8505 granted with TTL(60s)\n"
        );
        assert_eq!(
            text(print_grant(Format::Json, &r)),
            "{\"cluster_id\":7,\"member_id\":8,\"revision\":3,\"raft_term\":2,\
             \"ID\":1027843323243234565,\"TTL\":60,\"Error\":\"\"}\n"
        );
        assert_eq!(
            text(print_grant(Format::Fields, &r)),
            "\"ClusterID\" : 7\n\"MemberID\" : 8\n\"Revision\" : 3\n\"RaftTerm\" : 2\n\
             \"ID\" : 1027843323243234565\n\"TTL\" : 60\n"
        );
    }

    #[test]
    fn time_to_live_prints_keys_and_expiry_as_etcdctl() {
        let mut r = LeaseTimeToLiveResponse {
            header: header(),
            id: 0x1234,
            ttl: 59,
            granted_ttl: 60,
            keys: vec![b"k1".to_vec(), b"k2".to_vec()],
        };
        assert_eq!(
            text(print_time_to_live(Format::Simple, &r, true)),
            "lease 0000000000001234 granted with TTL(60s), remaining(59s), attached keys([k1 k2])\n"
        );
        assert_eq!(
            text(print_time_to_live(Format::Json, &r, true)),
            "{\"cluster_id\":7,\"member_id\":8,\"revision\":3,\"raft_term\":2,\"id\":4660,\
             \"ttl\":59,\"granted-ttl\":60,\"keys\":[\"azE=\",\"azI=\"]}\n"
        );
        r = LeaseTimeToLiveResponse { header: header(), id: 0x1234, ttl: -1, ..Default::default() };
        assert_eq!(
            text(print_time_to_live(Format::Simple, &r, false)),
            "lease 0000000000001234 already expired\n"
        );
        assert!(text(print_time_to_live(Format::Json, &r, false))
            .ends_with("\"ttl\":-1,\"granted-ttl\":0,\"keys\":null}\n"));
    }

    #[test]
    fn list_revoke_and_keep_alive_print_as_etcdctl() {
        let r = LeaseLeasesResponse { header: header(), leases: vec![LeaseStatus { id: 10 }] };
        assert_eq!(text(print_list(Format::Simple, &r)), "found 1 leases\n000000000000000a\n");
        assert!(text(print_list(Format::Json, &r))
            .ends_with("\"raft_term\":2,\"leases\":[{\"id\":10}]}\n"));
        let empty = LeaseLeasesResponse { header: header(), leases: Vec::new() };
        assert!(text(print_list(Format::Json, &empty)).ends_with("\"leases\":[]}\n"));
        let revoked = LeaseRevokeResponse { header: header() };
        assert_eq!(
            text(print_revoke(Format::Simple, 10, &revoked)),
            "lease 000000000000000a revoked\n"
        );
        assert_eq!(
            text(print_revoke(Format::Json, 10, &revoked)),
            "{\"header\":{\"cluster_id\":7,\"member_id\":8,\"revision\":3,\"raft_term\":2}}\n"
        );
        let kept = LeaseKeepAliveResponse { header: header(), id: 10, ttl: 60 };
        assert_eq!(
            text(print_keep_alive(Format::Simple, &kept)),
            "lease 000000000000000a keepalived with TTL(60)\n"
        );
    }
}
