//! `kubectl exec` on the agent: `/exec/{namespace}/{pod}/{container}?command=...&stdin=...`
//! upgraded to a WebSocket speaking Kubernetes' channel protocol (`v5.channel.k8s.io`, or
//! `v4.channel.k8s.io` for older clients such as the Python client). SPDY, the older
//! transport, is not served.
//!
//! The protocol: every binary message starts with a channel byte. 0 is stdin (client to
//! agent), 1 stdout, 2 stderr, 3 the outcome (a `metav1.Status` as JSON, sent once, last), 4
//! terminal resizes (`{"Width":w,"Height":h}`), and in v5, 255 closes a stream (`[255, 0]`:
//! the client's stdin ended). The process's exit code travels in the Status (reason
//! `NonZeroExitCode`, cause `ExitCode`), which is how kubectl exits with the same code.
//!
//! **Architecture invariant:** the pure parts (request parsing, protocol choice, framing, the
//! outcome Status) are separate from the pump, and tested on their own.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::limits::{EXEC_CHUNK_BYTES_MAX, EXEC_MESSAGE_BYTES_MAX, EXEC_OUTPUT_DRAIN_MS};
use crate::runtime::{ExecOutput, ExecRequest, ExecSession, RuntimeError, TerminalSize};

/// The WebSocket subprotocols served, most preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Messages to the client queued behind a slow connection.
const OUTGOING_BUFFERED: usize = 16;

/// The subprotocol to answer with, from a `Sec-WebSocket-Protocol` request header.
pub fn choose_protocol(offered: &str) -> Option<&'static str> {
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    PROTOCOLS.into_iter().find(|p| offered.contains(p))
}

/// The exec a query string asks for, or the message of a 400.
pub fn parse_request(query: &str) -> Result<ExecRequest, String> {
    let mut request =
        ExecRequest { command: Vec::new(), stdin: false, stdout: false, stderr: false, tty: false };
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let flag = || matches!(value.as_ref(), "true" | "1" | "True");
        match key.as_ref() {
            "command" => request.command.push(value.into_owned()),
            "stdin" => request.stdin = flag(),
            "stdout" => request.stdout = flag(),
            "stderr" => request.stderr = flag(),
            "tty" => request.tty = flag(),
            _ => {}
        }
    }
    if request.command.is_empty() {
        return Err("you must specify at least 1 command".into());
    }
    if !(request.stdin || request.stdout || request.stderr) {
        return Err("you must specify at least 1 of stdin, stdout, stderr".into());
    }
    // On a terminal stderr is stdout, as the kubelet has it.
    if request.tty {
        request.stderr = false;
    }
    Ok(request)
}

/// The outcome Status sent on channel 3.
pub fn outcome(exit: &Result<i32, RuntimeError>) -> Value {
    match exit {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(error) => json!({
            "metadata": {},
            "status": "Failure",
            "message": error.to_string(),
            "reason": "InternalError",
            "code": 500,
        }),
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

/// The last message: a normal closure (1000). Clients such as kubectl take any other
/// closure as an error of every stream, the outcome included.
fn normal_close() -> Message {
    Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))
}

/// The WebSocket limits of an exec connection.
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(EXEC_MESSAGE_BYTES_MAX))
        .max_frame_size(Some(EXEC_MESSAGE_BYTES_MAX))
}

/// Copies one output stream to the client as channel `channel` messages.
async fn forward(mut output: ExecOutput, channel: u8, outgoing: mpsc::Sender<Message>) {
    let mut buffer = vec![0u8; EXEC_CHUNK_BYTES_MAX];
    loop {
        match output.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if outgoing.send(frame(channel, &buffer[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs an exec over an upgraded connection until the process ends (its outcome sent) or
/// the client goes away (the session dropped, which ends the process for the process
/// runtime).
pub async fn pump<S>(socket: S, protocol: &'static str, started: Result<ExecSession, RuntimeError>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let websocket =
        WebSocketStream::from_raw_socket(socket, Role::Server, Some(websocket_config())).await;
    let (mut sink, mut incoming) = websocket.split();
    let (outgoing, mut queued) = mpsc::channel::<Message>(OUTGOING_BUFFERED);
    let writer = tokio::spawn(async move {
        while let Some(message) = queued.recv().await {
            let last = matches!(&message, Message::Close(_));
            if sink.send(message).await.is_err() || last {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut session = match started {
        Ok(session) => session,
        Err(error) => {
            let status = outcome(&Err(error));
            let _ = outgoing.send(frame(ERROR, status.to_string().as_bytes())).await;
            let _ = outgoing.send(normal_close()).await;
            drop(outgoing);
            let _ = writer.await;
            return;
        }
    };
    let mut forwarders = Vec::new();
    for (output, channel) in [(session.stdout.take(), STDOUT), (session.stderr.take(), STDERR)] {
        if let Some(output) = output {
            forwarders.push(tokio::spawn(forward(output, channel, outgoing.clone())));
        }
    }
    let mut stdin = session.stdin.take();
    let resize = session.resize.take();
    let supports_close = protocol == PROTOCOLS[0];
    let exit = session.exit;
    tokio::pin!(exit);
    let exited = loop {
        tokio::select! {
            exited = &mut exit => break Some(exited),
            message = incoming.next() => {
                let data = match message {
                    Some(Ok(Message::Binary(data))) => data.to_vec(),
                    Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                    Some(Ok(_)) => continue,
                };
                let Some((&channel, payload)) = data.split_first() else { continue };
                match channel {
                    STDIN => {
                        if let Some(writer) = stdin.as_mut() {
                            if writer.write_all(payload).await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    RESIZE => {
                        let size = serde_json::from_slice::<TerminalSize>(payload);
                        if let (Some(resize), Ok(size)) = (&resize, size) {
                            let _ = resize.try_send(size);
                        }
                    }
                    CLOSE if supports_close && payload.first() == Some(&STDIN) => {
                        if let Some(mut writer) = stdin.take() {
                            let _ = writer.shutdown().await;
                        }
                    }
                    _ => {}
                }
            }
        }
    };
    let Some(exited) = exited else {
        // The client went away: dropping the session ends the exec.
        for forwarder in forwarders {
            forwarder.abort();
        }
        writer.abort();
        return;
    };
    drop(stdin);
    // Output still in the pipes is delivered before the outcome (bounded: a background child
    // may hold them open).
    let drain = async {
        for forwarder in forwarders.iter_mut() {
            let _ = forwarder.await;
        }
    };
    if tokio::time::timeout(Duration::from_millis(EXEC_OUTPUT_DRAIN_MS), drain).await.is_err() {
        for forwarder in &forwarders {
            forwarder.abort();
        }
    }
    let status = outcome(&exited);
    let _ = outgoing.send(frame(ERROR, status.to_string().as_bytes())).await;
    let _ = outgoing.send(normal_close()).await;
    drop(outgoing);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_offered_channel_protocol_is_chosen() {
        let kubectl = "v5.channel.k8s.io, v4.channel.k8s.io, v3.channel.k8s.io, channel.k8s.io";
        assert_eq!(choose_protocol(kubectl), Some("v5.channel.k8s.io"));
        assert_eq!(choose_protocol("v4.channel.k8s.io"), Some("v4.channel.k8s.io"));
        assert_eq!(choose_protocol("channel.k8s.io,base64.channel.k8s.io"), None);
        assert_eq!(choose_protocol(""), None);
    }

    #[test]
    fn requests_need_a_command_and_a_stream_and_a_terminal_has_no_stderr() {
        let request =
            parse_request("command=sh&command=-c&command=echo+a%26b&stdout=true&stderr=1").unwrap();
        assert_eq!(request.command, ["sh", "-c", "echo a&b"]);
        assert!(request.stdout && request.stderr && !request.stdin && !request.tty);
        let tty = parse_request("command=sh&stdin=true&stdout=true&stderr=true&tty=true").unwrap();
        assert!(tty.tty && tty.stdin && !tty.stderr);
        assert_eq!(
            parse_request("stdout=true").unwrap_err(),
            "you must specify at least 1 command"
        );
        assert!(parse_request("command=ls").unwrap_err().contains("stdin, stdout, stderr"));
    }

    #[test]
    fn outcomes_carry_the_exit_code_as_kubectl_reads_it() {
        assert_eq!(outcome(&Ok(0))["status"], "Success");
        let failed = outcome(&Ok(3));
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0], json!({"reason": "ExitCode", "message": "3"}));
        let error = outcome(&Err(RuntimeError::NotFound("c1".into())));
        assert_eq!(error["reason"], "InternalError");
        assert_eq!(error["message"], "container c1 not found");
    }

    #[test]
    fn frames_lead_with_their_channel() {
        assert_eq!(frame(STDERR, b"x"), Message::Binary(vec![2, b'x'].into()));
    }
}
