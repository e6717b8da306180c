//! [`Backend`]: the key-value operations the API server needs from its store (what
//! kube-apiserver needs from etcd), served by an embedded Skiff member or by any etcd v3
//! endpoint (a `skiff store` cluster or a real etcd) over gRPC.
//!
//! Requests are etcd's protobuf messages either way: the embedded member converts them with the
//! store's own gRPC conversions, so both paths answer identically.

use std::time::Duration;

use store::grpc::convert;
use store::mvcc::{WriteRequest, WriteResponse};
use store::proto::etcdserverpb as pb;
use store::proto::etcdserverpb::kv_client::KvClient;
use store::proto::etcdserverpb::lease_client::LeaseClient;
use store::proto::etcdserverpb::watch_client::WatchClient;
use store::proto::mvccpb;
use store::watch::{Notification, WatchSpec};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::limits;

/// Latency of the API server's store requests by operation, in the process's default
/// Prometheus registry (the API server's `/metrics` renders it).
fn request_seconds() -> &'static prometheus::HistogramVec {
    static HISTOGRAM: std::sync::OnceLock<prometheus::HistogramVec> = std::sync::OnceLock::new();
    HISTOGRAM.get_or_init(|| {
        let histogram = prometheus::HistogramVec::new(
            prometheus::HistogramOpts::new(
                "apiserver_storage_request_duration_seconds",
                "Latency of store requests made by the API server, by operation",
            )
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
            &["operation"],
        )
        .expect("valid metric");
        // Registering twice (several API servers in one test process) keeps the first.
        let _ = prometheus::register(Box::new(histogram.clone()));
        histogram
    })
}

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The revision asked for was compacted away (a watch or a paged list too old).
    #[error("required revision {requested} has been compacted (compacted at {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    /// The store could not be reached or did not answer in time.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refused the request or failed.
    #[error("store error: {0}")]
    Failed(String),
}

/// One key as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

impl From<mvccpb::KeyValue> for StoredKv {
    fn from(kv: mvccpb::KeyValue) -> StoredKv {
        StoredKv { key: kv.key, value: kv.value, mod_revision: kv.mod_revision }
    }
}

/// A page of a range read.
#[derive(Clone, Debug, Default)]
pub struct Page {
    pub kvs: Vec<StoredKv>,
    /// The store revision the page was read at.
    pub revision: i64,
    /// More keys follow the page in the range.
    pub more: bool,
}

/// The outcome of a compare-and-swap: done at a revision, or refused with the key's current
/// state (`None`: the key does not exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Swap {
    Done { revision: i64, previous: Option<StoredKv> },
    Refused { current: Option<StoredKv> },
}

/// The outcome of [`Backend::write_all`]: done at a revision, or refused with the current
/// state of each expected key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MultiSwap {
    Done { revision: i64 },
    Refused { current: Vec<Option<StoredKv>> },
}

/// A change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Put {
        kv: StoredKv,
        previous: Option<StoredKv>,
    },
    /// `previous` is the last value before the delete (watches ask for it).
    Delete {
        key: Vec<u8>,
        revision: i64,
        previous: Option<StoredKv>,
    },
}

/// What a backend watch delivers.
#[derive(Clone, Debug)]
pub enum WatchBatch {
    /// Changes in revision order; the store is known to be at `revision` or later.
    Changes { changes: Vec<Change>, revision: i64 },
    /// Progress only: nothing in the range changed up to `revision`.
    Progress { revision: i64 },
}

/// A running watch on a key range; dropping it cancels the watch.
pub struct BackendWatch {
    receiver: mpsc::Receiver<Result<WatchBatch, BackendError>>,
    progress: ProgressRequester,
    _task: AbortOnDrop,
}

impl BackendWatch {
    /// The next batch; `None` once the watch ended (store shut down or connection lost: the
    /// caller re-watches from its last revision).
    pub async fn next(&mut self) -> Option<Result<WatchBatch, BackendError>> {
        self.receiver.recv().await
    }

    /// A handle asking the store for a progress notification on this watch.
    pub fn progress_requester(&self) -> ProgressRequester {
        self.progress.clone()
    }
}

/// Asks a store watch to report how far it is (etcd's WatchProgressRequest), so a reader can
/// learn that a cache is current without waiting for a change in its range.
#[derive(Clone)]
pub enum ProgressRequester {
    Embedded(store::node::ProgressHandle),
    Remote(mpsc::Sender<pb::WatchRequest>),
}

impl ProgressRequester {
    /// Requests one progress notification; best effort (the answer arrives on the watch).
    pub fn request(&self) {
        match self {
            ProgressRequester::Embedded(handle) => {
                handle.request();
            }
            ProgressRequester::Remote(sender) => {
                use pb::watch_request::RequestUnion;
                let request = pb::WatchRequest {
                    request_union: Some(RequestUnion::ProgressRequest(pb::WatchProgressRequest {})),
                };
                let _ = sender.try_send(request);
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The store behind the API server.
#[derive(Clone)]
pub enum Backend {
    /// A member running in this process: no network hop.
    Embedded(store::Store),
    /// etcd v3 endpoints (Skiff or etcd), balanced over by tonic.
    Remote(Channel),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Embedded(_) => f.write_str("Backend::Embedded"),
            Backend::Remote(_) => f.write_str("Backend::Remote"),
        }
    }
}

fn unavailable(status: &tonic::Status) -> BackendError {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            BackendError::Unavailable(status.message().to_string())
        }
        _ if status.message().contains("compacted") => {
            BackendError::Compacted { requested: 0, compacted: 0 }
        }
        _ => BackendError::Failed(status.message().to_string()),
    }
}

fn store_error(error: store::StoreError) -> BackendError {
    match error {
        store::StoreError::Mvcc(store::mvcc::MvccError::Compacted) => {
            BackendError::Compacted { requested: 0, compacted: 0 }
        }
        error if error.is_safe_to_retry() => BackendError::Unavailable(error.to_string()),
        store::StoreError::Timeout | store::StoreError::LeaderChanged => {
            BackendError::Unavailable(error.to_string())
        }
        error => BackendError::Failed(error.to_string()),
    }
}

/// The end of the range holding every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Backend {
    /// Connects to etcd v3 endpoints (`http://host:port`, comma separated at the flag).
    pub fn remote(endpoints: &[String]) -> Result<Backend, BackendError> {
        let mut list = Vec::new();
        for endpoint in endpoints {
            let endpoint = Channel::from_shared(endpoint.clone())
                .map_err(|e| BackendError::Failed(format!("bad store endpoint {endpoint}: {e}")))?
                .connect_timeout(Duration::from_millis(limits::STORE_CONNECT_TIMEOUT_MS))
                .timeout(Duration::from_millis(limits::STORE_REQUEST_TIMEOUT_MS))
                .tcp_nodelay(true);
            list.push(endpoint);
        }
        if list.is_empty() {
            return Err(BackendError::Failed("no store endpoints given".into()));
        }
        Ok(Backend::Remote(Channel::balance_list(list.into_iter())))
    }

    async fn range(&self, request: pb::RangeRequest) -> Result<pb::RangeResponse, BackendError> {
        let _timer = request_seconds().with_label_values(&["range"]).start_timer();
        match self {
            Backend::Embedded(store) => {
                let response = store
                    .range(convert::range_request(request), false)
                    .await
                    .map_err(store_error)?;
                let header = store.header(response.header_revision);
                Ok(convert::range_response(response, header))
            }
            Backend::Remote(channel) => {
                let mut client =
                    KvClient::new(channel.clone()).max_decoding_message_size(usize::MAX);
                Ok(client.range(request).await.map_err(|s| unavailable(&s))?.into_inner())
            }
        }
    }

    async fn txn(&self, request: pb::TxnRequest) -> Result<pb::TxnResponse, BackendError> {
        let _timer = request_seconds().with_label_values(&["txn"]).start_timer();
        match self {
            Backend::Embedded(store) => {
                let request = convert::txn_request(request).map_err(BackendError::Failed)?;
                match store.write(WriteRequest::Txn(request)).await.map_err(store_error)? {
                    WriteResponse::Txn(response) => {
                        let header = store.header(response.header_revision);
                        Ok(convert::txn_response(response, header))
                    }
                    other => Err(BackendError::Failed(format!("unexpected answer {other:?}"))),
                }
            }
            Backend::Remote(channel) => {
                let mut client =
                    KvClient::new(channel.clone()).max_decoding_message_size(usize::MAX);
                Ok(client.txn(request).await.map_err(|s| unavailable(&s))?.into_inner())
            }
        }
    }

    /// One key, read linearizably; with the store revision of the read.
    pub async fn get(&self, key: &[u8]) -> Result<(Option<StoredKv>, i64), BackendError> {
        let response = self.range(pb::RangeRequest { key: key.to_vec(), ..Default::default() });
        let response = response.await?;
        let revision = response.header.map_or(0, |h| h.revision);
        Ok((response.kvs.into_iter().next().map(StoredKv::from), revision))
    }

    /// Keys in `[start, end)` in key order, at `revision` (0: the latest), at most `limit`
    /// (0: all). The page's revision is the one read at: `revision` when given (the store's
    /// header would name its current revision, which may be later), so paging a list page by
    /// page at the first page's revision reads one snapshot.
    pub async fn list(
        &self,
        start: &[u8],
        end: &[u8],
        revision: i64,
        limit: i64,
    ) -> Result<Page, BackendError> {
        let request = pb::RangeRequest {
            key: start.to_vec(),
            range_end: end.to_vec(),
            revision,
            limit,
            ..Default::default()
        };
        let response = self.range(request).await.map_err(|error| match error {
            BackendError::Compacted { .. } => {
                BackendError::Compacted { requested: revision, compacted: 0 }
            }
            other => other,
        })?;
        let current = response.header.map_or(0, |h| h.revision);
        Ok(Page {
            revision: if revision > 0 { revision } else { current },
            more: response.more,
            kvs: response.kvs.into_iter().map(StoredKv::from).collect(),
        })
    }

    /// The store's current revision (a linearizable read of nothing).
    pub async fn current_revision(&self) -> Result<i64, BackendError> {
        let request = pb::RangeRequest { key: vec![0], count_only: true, ..Default::default() };
        Ok(self.range(request).await?.header.map_or(0, |h| h.revision))
    }

    /// Creates `key` if it does not exist.
    pub async fn create(
        &self,
        key: &[u8],
        value: Vec<u8>,
        lease: i64,
    ) -> Result<Swap, BackendError> {
        self.swap(key, 0, Some(value), lease).await
    }

    /// Replaces `key` if its mod_revision is still `expected`.
    pub async fn update(
        &self,
        key: &[u8],
        expected: i64,
        value: Vec<u8>,
    ) -> Result<Swap, BackendError> {
        self.swap(key, expected, Some(value), 0).await
    }

    /// Deletes `key` if its mod_revision is still `expected`.
    pub async fn delete(&self, key: &[u8], expected: i64) -> Result<Swap, BackendError> {
        self.swap(key, expected, None, 0).await
    }

    /// The compare-and-swap txn kube-apiserver uses: if mod_revision(key) == expected then
    /// put (or delete) else get.
    async fn swap(
        &self,
        key: &[u8],
        expected: i64,
        value: Option<Vec<u8>>,
        lease: i64,
    ) -> Result<Swap, BackendError> {
        use pb::compare::{CompareResult, CompareTarget, TargetUnion};
        use pb::request_op::Request;
        let compare = pb::Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key: key.to_vec(),
            range_end: Vec::new(),
            target_union: Some(TargetUnion::ModRevision(expected)),
        };
        let write = match value {
            // An update keeps the key's lease (an Event keeps expiring after it is patched).
            Some(value) => Request::RequestPut(pb::PutRequest {
                key: key.to_vec(),
                value,
                lease,
                prev_kv: true,
                ignore_lease: expected != 0,
                ..Default::default()
            }),
            None => Request::RequestDeleteRange(pb::DeleteRangeRequest {
                key: key.to_vec(),
                prev_kv: true,
                ..Default::default()
            }),
        };
        let get =
            Request::RequestRange(pb::RangeRequest { key: key.to_vec(), ..Default::default() });
        let request = pb::TxnRequest {
            compare: vec![compare],
            success: vec![pb::RequestOp { request: Some(write) }],
            failure: vec![pb::RequestOp { request: Some(get) }],
        };
        let response = self.txn(request).await?;
        let revision = response.header.map_or(0, |h| h.revision);
        let answer = response.responses.into_iter().next().and_then(|r| r.response);
        use pb::response_op::Response;
        Ok(match (response.succeeded, answer) {
            (true, Some(Response::ResponsePut(put))) => {
                Swap::Done { revision, previous: put.prev_kv.map(StoredKv::from) }
            }
            (true, Some(Response::ResponseDeleteRange(deleted))) => Swap::Done {
                revision,
                previous: deleted.prev_kvs.into_iter().next().map(StoredKv::from),
            },
            (false, Some(Response::ResponseRange(range))) => {
                Swap::Refused { current: range.kvs.into_iter().next().map(StoredKv::from) }
            }
            (succeeded, other) => {
                return Err(BackendError::Failed(format!(
                    "unexpected txn answer (succeeded {succeeded}): {other:?}"
                )))
            }
        })
    }

    /// Several keys changed in one txn, all or nothing: when every key in `expected` still has
    /// its mod_revision (0: absent), `puts` and `deletes` are applied; otherwise nothing is
    /// written and the expected keys' current states come back, in the order of `expected`.
    /// (Service allocations write a Service and its range keys this way.)
    pub async fn write_all(
        &self,
        expected: &[(Vec<u8>, i64)],
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        deletes: Vec<Vec<u8>>,
    ) -> Result<MultiSwap, BackendError> {
        use pb::compare::{CompareResult, CompareTarget, TargetUnion};
        use pb::request_op::Request;
        let compare = expected
            .iter()
            .map(|(key, revision)| pb::Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Mod as i32,
                key: key.clone(),
                range_end: Vec::new(),
                target_union: Some(TargetUnion::ModRevision(*revision)),
            })
            .collect();
        let puts = puts.into_iter().map(|(key, value)| {
            Request::RequestPut(pb::PutRequest { key, value, ..Default::default() })
        });
        let deletes = deletes.into_iter().map(|key| {
            Request::RequestDeleteRange(pb::DeleteRangeRequest { key, ..Default::default() })
        });
        let gets = expected.iter().map(|(key, _)| {
            Request::RequestRange(pb::RangeRequest { key: key.clone(), ..Default::default() })
        });
        let op = |request| pb::RequestOp { request: Some(request) };
        let request = pb::TxnRequest {
            compare,
            success: puts.chain(deletes).map(op).collect(),
            failure: gets.map(op).collect(),
        };
        let response = self.txn(request).await?;
        if response.succeeded {
            return Ok(MultiSwap::Done { revision: response.header.map_or(0, |h| h.revision) });
        }
        use pb::response_op::Response;
        let current = response
            .responses
            .into_iter()
            .map(|answer| match answer.response {
                Some(Response::ResponseRange(range)) => {
                    range.kvs.into_iter().next().map(StoredKv::from)
                }
                _ => None,
            })
            .collect();
        Ok(MultiSwap::Refused { current })
    }

    /// Grants a lease of `ttl_seconds` (Events expire with one).
    pub async fn lease_grant(&self, ttl_seconds: i64) -> Result<i64, BackendError> {
        match self {
            Backend::Embedded(store) => {
                let granted = store.lease_grant(0, ttl_seconds).await.map_err(store_error)?;
                Ok(granted.id)
            }
            Backend::Remote(channel) => {
                let request = pb::LeaseGrantRequest { ttl: ttl_seconds, id: 0 };
                let response = LeaseClient::new(channel.clone()).lease_grant(request).await;
                Ok(response.map_err(|s| unavailable(&s))?.into_inner().id)
            }
        }
    }

    /// Watches every key starting with `prefix` from `start_revision`, with previous values.
    pub async fn watch(
        &self,
        prefix: &[u8],
        start_revision: i64,
    ) -> Result<BackendWatch, BackendError> {
        let (sender, receiver) = mpsc::channel(limits::STORE_WATCH_BUFFER_BATCHES);
        let (task, progress) = match self {
            Backend::Embedded(store) => {
                let spec = WatchSpec {
                    key: prefix.to_vec(),
                    range_end: prefix_end(prefix),
                    start_revision,
                    prev_kv: true,
                    no_put: false,
                    no_delete: false,
                    progress_notify: true,
                };
                let watch = store.watch(spec);
                let progress = ProgressRequester::Embedded(watch.progress_handle());
                (tokio::spawn(forward_embedded(watch, sender, start_revision)), progress)
            }
            Backend::Remote(channel) => {
                let request = pb::WatchCreateRequest {
                    key: prefix.to_vec(),
                    range_end: prefix_end(prefix),
                    start_revision,
                    prev_kv: true,
                    progress_notify: true,
                    ..Default::default()
                };
                // The request stream stays open for the watch's life (closing it would end the
                // watch) and carries progress requests.
                let (requests, outbound) = mpsc::channel::<pb::WatchRequest>(4);
                let progress = ProgressRequester::Remote(requests);
                (tokio::spawn(forward_remote(channel.clone(), request, outbound, sender)), progress)
            }
        };
        Ok(BackendWatch { receiver, progress, _task: AbortOnDrop(task) })
    }
}

fn change_from_event(event: store::mvcc::Event) -> Change {
    let previous = event.prev_kv.map(|kv| StoredKv::from(convert::key_value(kv)));
    match event.kind {
        store::mvcc::EventKind::Put => {
            Change::Put { kv: StoredKv::from(convert::key_value(event.kv)), previous }
        }
        store::mvcc::EventKind::Delete => {
            Change::Delete { key: event.kv.key, revision: event.kv.mod_revision, previous }
        }
    }
}

async fn forward_embedded(
    mut watch: store::node::Watch,
    sender: mpsc::Sender<Result<WatchBatch, BackendError>>,
    start_revision: i64,
) {
    while let Some(notification) = watch.next().await {
        let batch = match notification {
            Notification::Events { events, revision, .. } if events.is_empty() => {
                Ok(WatchBatch::Progress { revision })
            }
            Notification::Events { events, revision, .. } => Ok(WatchBatch::Changes {
                changes: events.into_iter().map(change_from_event).collect(),
                revision,
            }),
            Notification::Compacted { compact_revision, .. } => Err(BackendError::Compacted {
                requested: start_revision,
                compacted: compact_revision,
            }),
        };
        let stop = batch.is_err();
        if sender.send(batch).await.is_err() || stop {
            return;
        }
    }
}

async fn forward_remote(
    channel: Channel,
    request: pb::WatchCreateRequest,
    requests: mpsc::Receiver<pb::WatchRequest>,
    sender: mpsc::Sender<Result<WatchBatch, BackendError>>,
) {
    use pb::watch_request::RequestUnion;
    let start_revision = request.start_revision;
    let create = pb::WatchRequest { request_union: Some(RequestUnion::CreateRequest(request)) };
    let outbound = futures::stream::once(async move { create })
        .chain(tokio_stream::wrappers::ReceiverStream::new(requests));
    let mut client = WatchClient::new(channel).max_decoding_message_size(usize::MAX);
    let mut responses = match client.watch(outbound).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            let _ = sender.send(Err(unavailable(&status))).await;
            return;
        }
    };
    loop {
        let response = match responses.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return,
            Err(status) => {
                let _ = sender.send(Err(unavailable(&status))).await;
                return;
            }
        };
        let revision = response.header.as_ref().map_or(0, |h| h.revision);
        let batch = if response.compact_revision > 0 {
            Err(BackendError::Compacted {
                requested: start_revision,
                compacted: response.compact_revision,
            })
        } else if response.canceled {
            Err(BackendError::Failed(format!("watch cancelled: {}", response.cancel_reason)))
        } else if response.created && response.events.is_empty() {
            continue;
        } else if response.events.is_empty() {
            Ok(WatchBatch::Progress { revision })
        } else {
            let changes = response.events.into_iter().map(remote_change).collect();
            Ok(WatchBatch::Changes { changes, revision })
        };
        let stop = batch.is_err();
        if sender.send(batch).await.is_err() || stop {
            return;
        }
    }
}

fn remote_change(event: mvccpb::Event) -> Change {
    let kv = event.kv.unwrap_or_default();
    let previous = event.prev_kv.map(StoredKv::from);
    if event.r#type == mvccpb::event::EventType::Delete as i32 {
        Change::Delete { key: kv.key, revision: kv.mod_revision, previous }
    } else {
        Change::Put { kv: StoredKv::from(kv), previous }
    }
}

use futures::StreamExt as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_that_can_be() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
