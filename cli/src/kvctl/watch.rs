//! `kvctl watch [key or prefix] [range_end]`, as etcdctl 3.4 runs and prints it: events as
//! they come (simple: type, then prev key/value, then key/value; json: each response as
//! clientv3's `WatchResponse`), until interrupted or cancelled by the server.

use clap::{ArgAction, Args};
use store::proto::etcdserverpb::watch_client::WatchClient;
use store::proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest, WatchResponse};
use store::proto::mvccpb;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::client::{self, Client};
use super::failure::{ExitStatus, Failure};
use super::json::{self, Object};
use super::print::{Format, Output, Printer};
use super::request::prefix_range_end;

/// Watch requests (creates, progress requests) queued for the stream at most.
const WATCH_REQUESTS_QUEUED_MAX: usize = 16;

/// `watch [options] [key or prefix] [range_end]`
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Watch on a prefix if prefix is set
    #[arg(
        long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub prefix: bool,
    /// get the previous key-value pair before the event happens
    #[arg(
        long = "prev-kv", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub prev_kv: bool,
    /// Revision to start watching
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub rev: i64,
    /// Interactive mode: read `watch [options] <key or prefix> [range_end]` and `progress`
    /// lines from standard input
    #[arg(
        short, long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false
    )]
    pub interactive: bool,
    #[arg(value_name = "KEY")]
    pub args: Vec<String>,
}

fn create_request(args: &WatchArgs) -> Result<WatchCreateRequest, Failure> {
    let (key, range_end) = match args.args.as_slice() {
        [key] => (key.as_bytes().to_vec(), Vec::new()),
        [key, end] if !args.prefix => (key.as_bytes().to_vec(), end.as_bytes().to_vec()),
        [_, _] => {
            return Err(Failure::bad_args("`range_end` and `--prefix` are mutually exclusive"))
        }
        [] => return Err(Failure::bad_args("watch in non-interactive mode requires an argument")),
        _ => return Err(Failure::bad_args("too many arguments")),
    };
    let range_end = if args.prefix { prefix_range_end(&key) } else { range_end };
    Ok(WatchCreateRequest {
        key,
        range_end,
        start_revision: args.rev,
        prev_kv: args.prev_kv,
        ..Default::default()
    })
}

pub async fn run(client: &Client, printer: Printer, args: &WatchArgs) -> Result<Output, Failure> {
    if matches!(printer.format, Format::Table | Format::Fields | Format::Protobuf) {
        return Err(printer.format.unsupported());
    }
    if args.interactive {
        return super::watch_interactive::run(client, printer).await;
    }
    let create = create_request(args)?;
    let channel = client::connect(&client.targets, client.dial_timeout).await;
    let (_requests, mut responses) = open_stream(channel, create).await?;
    // `_requests` stays open for the whole watch: closing it would end the stream.
    loop {
        let response = match responses.message().await {
            Ok(Some(response)) => response,
            Ok(None) => {
                return Err(Failure::new(
                    ExitStatus::Interrupted,
                    "watch is canceled by the server",
                ))
            }
            Err(status) => return Err(Failure::from_status(&status)),
        };
        if response.created && response.events.is_empty() {
            continue;
        }
        render(printer, &response).write_now();
        if response.canceled {
            return Err(Failure::new(ExitStatus::Interrupted, "watch is canceled by the server"));
        }
    }
}

/// Opens a watch stream whose first request is `create`; returns the stream's request queue
/// (the stream ends when it is dropped) and its responses.
pub(super) async fn open_stream(
    channel: Channel,
    create: WatchCreateRequest,
) -> Result<(mpsc::Sender<WatchRequest>, tonic::Streaming<WatchResponse>), Failure> {
    // The create request goes in before the call: a server answers a stream's headers only
    // with its first response.
    let (requests, queue) = mpsc::channel(WATCH_REQUESTS_QUEUED_MAX);
    let request =
        WatchRequest { request_union: Some(watch_request::RequestUnion::CreateRequest(create)) };
    let _ = requests.send(request).await;
    let stream = tokio_stream::wrappers::ReceiverStream::new(queue);
    let responses = WatchClient::new(channel)
        .watch(stream)
        .await
        .map_err(|status| Failure::from_status(&status))?
        .into_inner();
    Ok((requests, responses))
}

/// Why a watch was cancelled, as clientv3's `WatchResponse.Err()` says it.
pub(super) fn cancel_reason(response: &WatchResponse) -> String {
    if response.compact_revision != 0 {
        "etcdserver: mvcc: required revision has been compacted".to_string()
    } else if response.cancel_reason.is_empty() {
        "etcdserver: mvcc: required revision is a future revision".to_string()
    } else {
        response.cancel_reason.clone()
    }
}

/// What etcdctl's `printWatchCh` prints for one response to one watcher: a cancellation on
/// stderr, a progress notification, then the events in the output format.
pub(super) fn render(printer: Printer, response: &WatchResponse) -> Output {
    let mut output = Output::default();
    if response.canceled {
        output.stderr = format!("watch was canceled ({})\n", cancel_reason(response)).into_bytes();
    }
    let revision = response.header.as_ref().map_or(0, |header| header.revision);
    let progress_notify = response.events.is_empty()
        && !response.canceled
        && !response.created
        && response.compact_revision == 0
        && revision != 0;
    if progress_notify {
        output.stdout = format!("progress notify: {revision}\n").into_bytes();
    }
    match printer.format {
        Format::Json => output.stdout.extend(format!("{}\n", json_response(response)).bytes()),
        _ => output.stdout.extend(simple_events(printer, &response.events)),
    }
    output
}

/// etcdctl's simple watch printer.
fn simple_events(printer: Printer, events: &[mvccpb::Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        let kind =
            if event.r#type == mvccpb::event::EventType::Delete as i32 { "DELETE" } else { "PUT" };
        out.extend_from_slice(kind.as_bytes());
        out.push(b'\n');
        for kv in event.prev_kv.iter().chain(event.kv.iter()) {
            printer.write_bytes(&mut out, &kv.key);
            printer.write_bytes(&mut out, &kv.value);
        }
    }
    out
}

/// clientv3's `WatchResponse` through Go's encoding/json: exported fields without tags, so
/// `CompactRevision`, `Canceled` and `Created` are always present; clientv3 always makes the
/// `Events` slice, so none is `[]`.
fn json_response(response: &WatchResponse) -> String {
    let header = json::header(&response.header).unwrap_or_else(|| "{}".into());
    let events = if response.events.is_empty() {
        "[]".to_string()
    } else {
        let items: Vec<String> = response
            .events
            .iter()
            .map(|e| {
                Object::new()
                    .int("type", e.r#type)
                    .object("kv", e.kv.as_ref().map(json::key_value))
                    .object("prev_kv", e.prev_kv.as_ref().map(json::key_value))
                    .finish()
            })
            .collect();
        format!("[{}]", items.join(","))
    };
    format!(
        "{{\"Header\":{header},\"Events\":{events},\"CompactRevision\":{},\"Canceled\":{},\
         \"Created\":{}}}",
        response.compact_revision, response.canceled, response.created
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::proto::etcdserverpb::ResponseHeader;

    fn kv(key: &str, value: &str, revision: i64) -> mvccpb::KeyValue {
        mvccpb::KeyValue {
            key: key.into(),
            value: value.into(),
            create_revision: 2,
            mod_revision: revision,
            version: 1,
            lease: 0,
        }
    }

    fn delete(key: &str, revision: i64, prev: mvccpb::KeyValue) -> mvccpb::Event {
        let tombstone =
            mvccpb::KeyValue { key: key.into(), mod_revision: revision, ..Default::default() };
        mvccpb::Event { r#type: 1, kv: Some(tombstone), prev_kv: Some(prev) }
    }

    fn check(actual: String, expected: &str) {
        assert_eq!(actual, expected);
    }

    #[test]
    fn prints_as_etcdctl() {
        let put = mvccpb::Event { r#type: 0, kv: Some(kv("foo", "2", 3)), prev_kv: None };
        let events = vec![put, delete("foo", 4, kv("foo", "2", 3))];
        let printer = Printer { format: Format::Simple, hex: false };
        let simple = String::from_utf8(simple_events(printer, &events)).expect("utf-8");
        check(simple, "PUT\nfoo\n2\nDELETE\nfoo\n2\nfoo\n\n");
        let header = ResponseHeader { cluster_id: 1, member_id: 2, revision: 4, raft_term: 3 };
        let response = WatchResponse { header: Some(header), events, ..Default::default() };
        check(
            json_response(&response),
            "{\"Header\":{\"cluster_id\":1,\"member_id\":2,\"revision\":4,\"raft_term\":3},\
             \"Events\":[{\"kv\":{\"key\":\"Zm9v\",\"create_revision\":2,\"mod_revision\":3,\
             \"version\":1,\"value\":\"Mg==\"}},{\"type\":1,\"kv\":{\"key\":\"Zm9v\",\
             \"mod_revision\":4},\"prev_kv\":{\"key\":\"Zm9v\",\"create_revision\":2,\
             \"mod_revision\":3,\"version\":1,\"value\":\"Mg==\"}}],\"CompactRevision\":0,\
             \"Canceled\":false,\"Created\":false}",
        );
    }
}
