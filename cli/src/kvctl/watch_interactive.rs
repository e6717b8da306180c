//! `kvctl watch -i`, as etcdctl 3.4's interactive watch: commands read line by line from
//! standard input (`watch [options] <key or prefix> [range_end]`, `progress`), every watch on
//! one stream, each watcher's events printed as `watch` prints them, until standard input ends
//! (which, as in etcdctl, is an error: exit status 3).

use std::io::BufRead;

use store::proto::etcdserverpb::{
    watch_request, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use tokio::sync::mpsc;

use super::client::Client;
use super::failure::Failure;
use super::golang;
use super::print::{Output, Printer};
use super::request::prefix_range_end;
use super::txn::argify;
use super::watch::{open_stream, render};

/// Standard input lines read ahead of the watch loop at most.
const INPUT_LINES_QUEUED_MAX: usize = 16;

/// One line of input, understood.
#[derive(Debug, PartialEq)]
enum Line {
    Watch(WatchCreateRequest),
    Progress,
    /// Rejected with this message on stderr; the next line is read.
    Invalid(String),
}

pub async fn run(client: &Client, printer: Printer) -> Result<Output, Failure> {
    let channel = client.dial().await?;
    let mut lines = read_lines();
    let mut stream: Option<Stream> = None;
    // Live watchers in creation order: a progress response is meant for each.
    let mut watchers: Vec<i64> = Vec::new();
    loop {
        tokio::select! {
            line = lines.recv() => {
                let line = match line {
                    Some(Ok(line)) => line,
                    Some(Err(error)) => return Err(read_error(&error)),
                    None => return Err(read_error("EOF")),
                };
                let request = match parse_line(&line)? {
                    Line::Invalid(message) => {
                        eprintln!("{message}");
                        continue;
                    }
                    Line::Progress => {
                        let progress = WatchProgressRequest {};
                        watch_request::RequestUnion::ProgressRequest(progress)
                    }
                    Line::Watch(create) => watch_request::RequestUnion::CreateRequest(create),
                };
                send(&channel, &mut stream, request).await?;
            }
            response = next_response(&mut stream) => {
                let response = response?;
                handle(printer, &response, &mut watchers).write_now();
            }
        }
    }
}

fn read_error(error: &str) -> Failure {
    Failure::invalid_input(format!("Error reading watch request line: {error}"))
}

/// The stream all watchers share, opened by the first `watch`.
struct Stream {
    requests: mpsc::Sender<WatchRequest>,
    responses: tonic::Streaming<WatchResponse>,
}

async fn send(
    channel: &tonic::transport::Channel,
    stream: &mut Option<Stream>,
    request: watch_request::RequestUnion,
) -> Result<(), Failure> {
    match (stream.as_ref(), request) {
        (Some(open), request) => {
            let request = WatchRequest { request_union: Some(request) };
            // A closed stream shows up as the end of its responses.
            let _ = open.requests.send(request).await;
        }
        (None, watch_request::RequestUnion::CreateRequest(create)) => {
            let (requests, responses) = open_stream(channel.clone(), create).await?;
            *stream = Some(Stream { requests, responses });
        }
        // With no watcher there is nobody to tell about progress.
        (None, _) => {}
    }
    Ok(())
}

async fn next_response(stream: &mut Option<Stream>) -> Result<WatchResponse, Failure> {
    let Some(open) = stream else {
        return std::future::pending().await;
    };
    match open.responses.message().await {
        Ok(Some(response)) => Ok(response),
        Ok(None) => Err(Failure::new(
            super::failure::ExitStatus::Interrupted,
            "watch is canceled by the server",
        )),
        Err(status) => Err(Failure::from_status(&status)),
    }
}

/// What one response prints, keeping the set of live watchers up to date. A response for
/// watch id -1 that creates nothing is a progress notification for every watcher, as
/// clientv3 broadcasts it.
fn handle(printer: Printer, response: &WatchResponse, watchers: &mut Vec<i64>) -> Output {
    if response.created && !response.canceled {
        watchers.push(response.watch_id);
    }
    if response.created && response.events.is_empty() && !response.canceled {
        return Output::default();
    }
    if response.canceled {
        watchers.retain(|&id| id != response.watch_id);
    }
    let broadcast = response.watch_id == -1 && !response.created && !response.canceled;
    let copies = if broadcast { watchers.len() } else { 1 };
    let one = render(printer, response);
    let mut output = Output::default();
    for _ in 0..copies {
        output.stdout.extend_from_slice(&one.stdout);
        output.stderr.extend_from_slice(&one.stderr);
    }
    output
}

/// Reads standard input on a thread of its own, line by line as Go's
/// `bufio.Reader.ReadString('\n')`: a last line without a newline is an error (EOF).
fn read_lines() -> mpsc::Receiver<Result<Vec<u8>, String>> {
    let (lines, received) = mpsc::channel(INPUT_LINES_QUEUED_MAX);
    std::thread::spawn(move || {
        let mut input = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            let read = match input.read_until(b'\n', &mut line) {
                Ok(_) if line.last() == Some(&b'\n') => {
                    line.pop();
                    Ok(line)
                }
                Ok(_) => Err("EOF".to_string()),
                Err(error) => Err(error.to_string()),
            };
            let last = read.is_err();
            if lines.blocking_send(read).is_err() || last {
                return;
            }
        }
    });
    received
}

/// Understands one input line as etcdctl's `watchInteractiveFunc`. Errors are fatal there
/// (bad flags, a missing key, `--` with nothing after it); `Line::Invalid` is not.
fn parse_line(line: &[u8]) -> Result<Line, Failure> {
    let text = String::from_utf8_lossy(line);
    let words = argify(line)?;
    let Some(command) = words.first() else {
        return Ok(Line::Invalid(format!(
            "Invalid command: {text} (watch and progress supported)"
        )));
    };
    match command.as_slice() {
        b"watch" => {}
        b"progress" => return Ok(Line::Progress),
        _ => return Ok(Line::Invalid(format!("Invalid command {text} (only support watch)"))),
    }
    if words.len() < 2 {
        return Ok(Line::Invalid(format!(
            "Invalid command {text} (command type or key is not provided)"
        )));
    }
    let flags = parse_flags(&words[1..])?;
    if flags.command {
        return Ok(Line::Invalid(format!(
            "Invalid command {text} (kvctl runs no command on watch events)"
        )));
    }
    let (key, range_end) = match flags.positional.as_slice() {
        [] => return Err(Failure::bad_args("bad number of arguments")),
        [key] => (key.clone(), Vec::new()),
        [_, _] if flags.prefix => {
            return Ok(Line::Invalid(format!(
                "Invalid command {text} (`range_end` and `--prefix` are mutually exclusive)"
            )))
        }
        [key, end] => (key.clone(), end.clone()),
        // etcdctl watches the key alone when given more words than a range.
        [key, ..] => (key.clone(), Vec::new()),
    };
    let range_end = if flags.prefix { prefix_range_end(&key) } else { range_end };
    Ok(Line::Watch(WatchCreateRequest {
        key,
        range_end,
        start_revision: flags.rev,
        prev_kv: flags.prev_kv,
        ..WatchCreateRequest::default()
    }))
}

/// The flags of one `watch` line, parsed as pflag parses etcdctl's watch flags.
#[derive(Debug, Default)]
struct LineFlags {
    prefix: bool,
    prev_kv: bool,
    rev: i64,
    positional: Vec<Vec<u8>>,
    /// `-- command ...` follows.
    command: bool,
}

fn parse_flags(words: &[Vec<u8>]) -> Result<LineFlags, Failure> {
    let mut flags = LineFlags::default();
    let mut index = 0;
    while index < words.len() {
        let word = String::from_utf8_lossy(&words[index]).into_owned();
        index += 1;
        if word == "--" {
            if index == words.len() {
                return Err(Failure::bad_args(
                    "bad number of arguments (found separator --, but no commands)",
                ));
            }
            flags.command = true;
            break;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (long, None),
            };
            match name {
                "prefix" => flags.prefix = parse_bool(name, value)?,
                "prev-kv" => flags.prev_kv = parse_bool(name, value)?,
                "interactive" => {
                    parse_bool(name, value)?;
                }
                "rev" => {
                    let value = match value {
                        Some(value) => value,
                        None if index < words.len() => {
                            index += 1;
                            String::from_utf8_lossy(&words[index - 1]).into_owned()
                        }
                        None => {
                            return Err(Failure::bad_args("flag needs an argument: --rev"));
                        }
                    };
                    flags.rev = golang::parse_int(&value, 10).map_err(|error| {
                        Failure::bad_args(format!(
                            "invalid argument {} for \"--rev\" flag: {error}",
                            golang::quote(value.as_bytes())
                        ))
                    })?;
                }
                _ => return Err(Failure::bad_args(format!("unknown flag: --{name}"))),
            }
        } else if word.len() > 1 && word.starts_with('-') {
            // Shorthands: only `-i` exists.
            for shorthand in word[1..].chars() {
                if shorthand != 'i' {
                    return Err(Failure::bad_args(format!(
                        "unknown shorthand flag: '{shorthand}' in {word}"
                    )));
                }
            }
        } else {
            flags.positional.push(words[index - 1].clone());
        }
    }
    Ok(flags)
}

/// pflag's boolean flag value: `--flag` alone is true; `--flag=<value>` takes Go's
/// `strconv.ParseBool` spellings.
fn parse_bool(name: &str, value: Option<String>) -> Result<bool, Failure> {
    let Some(value) = value else {
        return Ok(true);
    };
    match value.as_str() {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(Failure::bad_args(format!(
            "invalid argument {} for \"--{name}\" flag: strconv.ParseBool: parsing {}: invalid \
             syntax",
            golang::quote(value.as_bytes()),
            golang::quote(value.as_bytes())
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::proto::etcdserverpb::ResponseHeader;
    use store::proto::mvccpb;

    use crate::kvctl::print::Format;

    fn check(line: &str, expected: Result<Line, &str>) {
        let parsed = parse_line(line.as_bytes()).map_err(|failure| failure.to_string());
        assert_eq!(parsed, expected.map_err(str::to_string), "{line}");
    }

    fn watch(key: &str, range_end: &[u8], rev: i64, prev_kv: bool) -> Line {
        Line::Watch(WatchCreateRequest {
            key: key.into(),
            range_end: range_end.to_vec(),
            start_revision: rev,
            prev_kv,
            ..WatchCreateRequest::default()
        })
    }

    /// Messages as etcdctl 3.4.23 printed them for the same lines.
    #[test]
    fn lines_are_understood_as_etcdctl_does() {
        check("watch foo", Ok(watch("foo", b"", 0, false)));
        check("watch --prefix fo --prev-kv", Ok(watch("fo", b"fp", 0, true)));
        check("watch foo --rev 3", Ok(watch("foo", b"", 3, false)));
        check("watch a b c", Ok(watch("a", b"", 0, false)));
        check("watch \"q u\" z", Ok(watch("q u", b"z", 0, false)));
        check("progress", Ok(Line::Progress));
        check("progress x", Ok(Line::Progress));
        let invalid = |message: &str| Ok(Line::Invalid(message.to_string()));
        check("", invalid("Invalid command:  (watch and progress supported)"));
        check("bogus x", invalid("Invalid command bogus x (only support watch)"));
        check("watch", invalid("Invalid command watch (command type or key is not provided)"));
        check(
            "watch --prefix a b",
            invalid(
                "Invalid command watch --prefix a b (`range_end` and `--prefix` are mutually \
                 exclusive)",
            ),
        );
        check("watch --bogus a", Err("Error: unknown flag: --bogus"));
        check(
            "watch --rev=abc foo",
            Err("Error: invalid argument \"abc\" for \"--rev\" flag: strconv.ParseInt: parsing \
                 \"abc\": invalid syntax"),
        );
        check(
            "watch foo --",
            Err("Error: bad number of arguments (found separator --, but no commands)"),
        );
        check("watch --prefix", Err("Error: bad number of arguments"));
    }

    #[test]
    fn progress_is_printed_once_per_watcher() {
        let printer = Printer { format: Format::Simple, hex: false };
        let header = Some(ResponseHeader { revision: 7, ..ResponseHeader::default() });
        let mut watchers = Vec::new();
        for id in [0, 1] {
            let created =
                WatchResponse { header, watch_id: id, created: true, ..Default::default() };
            assert_eq!(handle(printer, &created, &mut watchers), Output::default());
        }
        let put = mvccpb::Event {
            r#type: 0,
            kv: Some(mvccpb::KeyValue {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            }),
            prev_kv: None,
        };
        let event = WatchResponse { header, watch_id: 1, events: vec![put], ..Default::default() };
        assert_eq!(handle(printer, &event, &mut watchers).stdout, b"PUT\nk\nv\n");
        let progress = WatchResponse { header, watch_id: -1, ..Default::default() };
        let printed = handle(printer, &progress, &mut watchers).stdout;
        assert_eq!(printed, b"progress notify: 7\nprogress notify: 7\n");
        let cancelled = WatchResponse {
            header,
            watch_id: 0,
            canceled: true,
            compact_revision: 3,
            ..Default::default()
        };
        let printed = handle(printer, &cancelled, &mut watchers);
        assert_eq!(
            printed.stderr,
            b"watch was canceled (etcdserver: mvcc: required revision has been compacted)\n"
        );
        assert_eq!(handle(printer, &progress, &mut watchers).stdout, b"progress notify: 7\n");
    }
}
