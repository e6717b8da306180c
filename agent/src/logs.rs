//! Container logs as `kubectl logs` wants them, read from the CRI-format files the runtime
//! writes (`<time> <stream> <F|P> <text>`): `tailLines`, `sinceSeconds`/`sinceTime`,
//! `timestamps`, `limitBytes`, and `follow`, which streams new lines until the container ends.

use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::limits::{LOG_FOLLOW_POLL_MS, LOG_RESPONSE_CHUNK_BYTES_MAX, LOG_TAIL_LINES_MAX};

/// The query of a log request (the kubelet's and `pods/log`'s parameters).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    pub since: Option<Timestamp>,
    pub limit_bytes: Option<usize>,
}

fn flag(value: &str) -> bool {
    matches!(value, "true" | "1" | "True")
}

impl LogQuery {
    /// Parses a query string; `now` anchors `sinceSeconds`.
    pub fn parse(query: &str, now: Timestamp) -> Result<LogQuery, String> {
        let mut parsed = LogQuery::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "follow" => parsed.follow = flag(&value),
                "previous" => parsed.previous = flag(&value),
                "timestamps" => parsed.timestamps = flag(&value),
                "tailLines" => {
                    let lines: i64 =
                        value.parse().map_err(|_| format!("invalid tailLines {value:?}"))?;
                    parsed.tail_lines = Some(lines.clamp(0, LOG_TAIL_LINES_MAX as i64) as usize);
                }
                "sinceSeconds" => {
                    let seconds: i64 =
                        value.parse().map_err(|_| format!("invalid sinceSeconds {value:?}"))?;
                    if seconds < 1 {
                        return Err("sinceSeconds must be greater than 0".into());
                    }
                    let since =
                        now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(seconds));
                    parsed.since = Some(since.unwrap_or(Timestamp::MIN));
                }
                "sinceTime" => {
                    parsed.since =
                        Some(value.parse().map_err(|_| format!("invalid sinceTime {value:?}"))?);
                }
                "limitBytes" => {
                    let bytes: i64 =
                        value.parse().map_err(|_| format!("invalid limitBytes {value:?}"))?;
                    if bytes < 1 {
                        return Err("limitBytes must be greater than 0".into());
                    }
                    parsed.limit_bytes = Some(bytes as usize);
                }
                _ => {}
            }
        }
        Ok(parsed)
    }
}

/// One record of a CRI log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub text: &'a [u8],
}

/// Parses one line (without its newline) of a CRI log file.
pub fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut fields = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(fields.next()?).ok()?;
    let stream = std::str::from_utf8(fields.next()?).ok()?;
    let tag = fields.next()?;
    let text = fields.next().unwrap_or(b"");
    Some(Record { time, stream, partial: tag == b"P", text })
}

/// Appends a record as `kubectl logs` shows it.
pub fn render(record: &Record, timestamps: bool, out: &mut Vec<u8>) {
    if timestamps {
        out.extend_from_slice(record.time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(record.text);
    if !record.partial {
        out.push(b'\n');
    }
}

fn selected(record: &Record, query: &LogQuery) -> bool {
    match query.since {
        None => true,
        Some(since) => record.time.parse::<Timestamp>().is_ok_and(|t| t >= since),
    }
}

/// Sends log output to `sender` in chunks, honouring `limitBytes`; false once the reader is
/// gone or the limit is reached.
struct Output {
    sender: mpsc::Sender<Vec<u8>>,
    chunk: Vec<u8>,
    budget: usize,
}

impl Output {
    async fn push(&mut self, mut bytes: Vec<u8>) -> bool {
        if bytes.len() > self.budget {
            bytes.truncate(self.budget);
        }
        self.budget -= bytes.len();
        self.chunk.extend_from_slice(&bytes);
        if self.chunk.len() >= LOG_RESPONSE_CHUNK_BYTES_MAX || self.budget == 0 {
            return self.flush().await && self.budget > 0;
        }
        true
    }

    async fn flush(&mut self) -> bool {
        if self.chunk.is_empty() {
            return true;
        }
        let chunk = std::mem::take(&mut self.chunk);
        self.sender.send(chunk).await.is_ok()
    }
}

/// Streams the log at `path` into `sender`; with `follow`, keeps reading until `ended`
/// resolves true at the end of the file (the container exited) or the reader hangs up.
pub async fn stream<F, Fut>(
    path: &Path,
    query: LogQuery,
    ended: F,
    sender: mpsc::Sender<Vec<u8>>,
) -> std::io::Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let file = tokio::fs::File::open(path).await?;
    let mut reader = tokio::io::BufReader::new(file);
    let mut output =
        Output { sender, chunk: Vec::new(), budget: query.limit_bytes.unwrap_or(usize::MAX) };
    let mut tail: VecDeque<Vec<u8>> = VecDeque::new();
    let mut line = Vec::new();
    // What is in the file now.
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 || line.last() != Some(&b'\n') {
            break;
        }
        let Some(record) = parse_record(&line[..line.len() - 1]) else { continue };
        if !selected(&record, &query) {
            continue;
        }
        let mut rendered = Vec::new();
        render(&record, query.timestamps, &mut rendered);
        match query.tail_lines {
            Some(0) => {}
            Some(lines) => {
                if tail.len() == lines {
                    tail.pop_front();
                }
                tail.push_back(rendered);
            }
            None => {
                if !output.push(rendered).await {
                    return Ok(());
                }
            }
        }
    }
    for rendered in tail {
        if !output.push(rendered).await {
            return Ok(());
        }
    }
    if !output.flush().await || !query.follow {
        return Ok(());
    }
    // New output as it comes; `line` may hold the start of a line still being written.
    let mut pending = std::mem::take(&mut line);
    loop {
        let read = reader.read_until(b'\n', &mut pending).await?;
        if read > 0 && pending.last() == Some(&b'\n') {
            if let Some(record) = parse_record(&pending[..pending.len() - 1]) {
                let mut rendered = Vec::new();
                render(&record, query.timestamps, &mut rendered);
                if !output.push(rendered).await || !output.flush().await {
                    return Ok(());
                }
            }
            pending.clear();
            continue;
        }
        if output.sender.is_closed() || ended().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(LOG_FOLLOW_POLL_MS)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_records_parse_and_render() {
        let record = parse_record(b"2024-01-02T03:04:05.123456789Z stdout F hello world").unwrap();
        assert_eq!(record.stream, "stdout");
        assert!(!record.partial);
        let mut out = Vec::new();
        render(&record, false, &mut out);
        assert_eq!(out, b"hello world\n");
        out.clear();
        render(&record, true, &mut out);
        assert_eq!(out, b"2024-01-02T03:04:05.123456789Z hello world\n");
        let partial = parse_record(b"2024-01-02T03:04:05Z stderr P abc").unwrap();
        out.clear();
        render(&partial, false, &mut out);
        assert_eq!(out, b"abc");
        assert_eq!(parse_record(b"2024-01-02T03:04:05Z stdout F").unwrap().text, b"");
    }

    #[test]
    fn queries_parse_as_the_kubelet_reads_them() {
        let now: Timestamp = "2024-01-01T00:01:00Z".parse().unwrap();
        let query =
            LogQuery::parse("follow=true&tailLines=5&sinceSeconds=60&timestamps=1", now).unwrap();
        assert!(query.follow && query.timestamps && !query.previous);
        assert_eq!(query.tail_lines, Some(5));
        assert_eq!(query.since, Some("2024-01-01T00:00:00Z".parse().unwrap()));
        assert!(LogQuery::parse("sinceSeconds=0", now).is_err());
        assert!(LogQuery::parse("tailLines=x", now).is_err());
    }

    #[tokio::test]
    async fn tails_filters_and_follows_until_the_container_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let lines = "2024-01-01T00:00:00Z stdout F one\n2024-01-01T00:00:10Z stdout F two\n\
                     2024-01-01T00:00:20Z stderr F three\n";
        std::fs::write(&path, lines).unwrap();
        let collect = |query: LogQuery| {
            let path = path.clone();
            async move {
                let (sender, mut receiver) = mpsc::channel(16);
                stream(&path, query, || async { true }, sender).await.unwrap();
                let mut all = Vec::new();
                while let Some(chunk) = receiver.recv().await {
                    all.extend(chunk);
                }
                String::from_utf8(all).unwrap()
            }
        };
        assert_eq!(collect(LogQuery::default()).await, "one\ntwo\nthree\n");
        let tail = LogQuery { tail_lines: Some(2), ..LogQuery::default() };
        assert_eq!(collect(tail).await, "two\nthree\n");
        let since =
            LogQuery { since: Some("2024-01-01T00:00:10Z".parse().unwrap()), ..Default::default() };
        assert_eq!(collect(since).await, "two\nthree\n");
        let limited = LogQuery { limit_bytes: Some(6), ..LogQuery::default() };
        assert_eq!(collect(limited).await, "one\ntw");
        let follow = LogQuery { follow: true, tail_lines: Some(0), ..LogQuery::default() };
        let (sender, mut receiver) = mpsc::channel(16);
        let writer_path = path.clone();
        let ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ended.clone();
        let reader = tokio::spawn(async move {
            stream(
                &writer_path,
                follow,
                || {
                    let flag = flag.clone();
                    async move { flag.load(std::sync::atomic::Ordering::SeqCst) }
                },
                sender,
            )
            .await
        });
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"2024-01-01T00:00:30Z stdout F fo").unwrap();
        file.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        file.write_all(b"ur\n").unwrap();
        assert_eq!(receiver.recv().await.unwrap(), b"four\n");
        ended.store(true, std::sync::atomic::Ordering::SeqCst);
        reader.await.unwrap().unwrap();
    }
}
