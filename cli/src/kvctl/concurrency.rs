//! etcd's client-side concurrency recipes (clientv3/concurrency in etcd 3.4), which `lock` and
//! `elect` are built on: a session is a lease kept alive by a background task; a mutex or an
//! election candidate is the key `<name>/<session lease id in hex>`, and the candidate whose key
//! has the lowest create revision under `<name>/` holds the lock or leads. Waiting means
//! watching the key created just before ours until it is deleted, then looking again.
//!
//! Only the store's KV, Lease and Watch RPCs are used, so these work against etcd as well.

use std::time::{Duration, Instant};

use store::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use store::proto::etcdserverpb::kv_client::KvClient;
use store::proto::etcdserverpb::lease_client::LeaseClient;
use store::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use store::proto::etcdserverpb::request_op::Request;
use store::proto::etcdserverpb::response_op::Response;
use store::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest,
    PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest, TxnResponse,
    WatchCreateRequest, WatchRequest, WatchResponse,
};
use store::proto::mvccpb::event::EventType;
use store::proto::mvccpb::KeyValue;
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

use super::failure::Failure;
use super::request::prefix_range_end;

/// clientv3's `defaultSessionTTL`, used when no positive TTL is asked for.
pub const SESSION_TTL_SECONDS_DEFAULT: i64 = 60;
/// How long the keep-alive task waits before reopening a broken keep-alive stream (clientv3
/// retries after 500 ms too).
const KEEP_ALIVE_RETRY: Duration = Duration::from_millis(500);

/// A lease that a background task keeps alive until the session is closed or the lease is
/// lost (revoked, or not renewed for a whole TTL).
pub struct Session {
    pub channel: Channel,
    pub lease_id: i64,
    expired: watch::Receiver<bool>,
    keep_alive: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Grants a lease of `ttl_seconds` (the default TTL when not positive) and starts keeping
    /// it alive.
    pub async fn new(channel: Channel, ttl_seconds: i64) -> Result<Session, Failure> {
        let ttl = if ttl_seconds > 0 { ttl_seconds } else { SESSION_TTL_SECONDS_DEFAULT };
        let granted = LeaseClient::new(channel.clone())
            .lease_grant(LeaseGrantRequest { ttl, id: 0 })
            .await
            .map_err(|status| Failure::from_status(&status))?
            .into_inner();
        let (expired_sender, expired) = watch::channel(false);
        let renewing = keep_alive(channel.clone(), granted.id, granted.ttl, expired_sender);
        let keep_alive = tokio::spawn(renewing);
        Ok(Session { channel, lease_id: granted.id, expired, keep_alive })
    }

    /// Resolves once the lease is lost (clientv3's `Session.Done()`).
    pub async fn expired(&self) {
        let mut expired = self.expired.clone();
        // An error means the task ended, which it does only once the lease is lost.
        let _ = expired.wait_for(|expired| *expired).await;
    }

    /// The key a candidate of this session uses under `prefix` (which ends with `/`).
    pub fn key_under(&self, prefix: &[u8]) -> Vec<u8> {
        let mut key = prefix.to_vec();
        key.extend_from_slice(format!("{:x}", self.lease_id).as_bytes());
        key
    }

    /// Stops renewing and revokes the lease, deleting any key still attached to it.
    /// (etcdctl 3.4 leaves the lease to expire after its TTL; revoking frees it at once.)
    pub async fn close(self) -> Result<(), Failure> {
        self.keep_alive.abort();
        LeaseClient::new(self.channel)
            .lease_revoke(LeaseRevokeRequest { id: self.lease_id })
            .await
            .map(|_| ())
            .map_err(|status| Failure::from_status(&status))
    }
}

enum Renewal {
    /// The server says the lease is gone.
    Expired,
    /// The stream broke; the lease may still be alive.
    Broken,
}

/// clientv3's keep-alive loop: renew a third of the way through the TTL; reopen a broken
/// stream; give up once the server reports the lease gone or a whole TTL passed unrenewed.
async fn keep_alive(channel: Channel, id: i64, ttl_seconds: i64, expired: watch::Sender<bool>) {
    let ttl = Duration::from_secs(u64::try_from(ttl_seconds).unwrap_or(1));
    let mut renewed_at = Instant::now();
    loop {
        match renew_over_stream(&channel, id, ttl, &mut renewed_at).await {
            Renewal::Expired => break,
            Renewal::Broken if renewed_at.elapsed() >= ttl => break,
            Renewal::Broken => tokio::time::sleep(KEEP_ALIVE_RETRY).await,
        }
    }
    let _ = expired.send(true);
}

async fn renew_over_stream(
    channel: &Channel,
    id: i64,
    ttl: Duration,
    renewed_at: &mut Instant,
) -> Renewal {
    // The first request goes in before the call: a server answers a stream's headers only
    // with its first response.
    let (requests, queue) = mpsc::channel(1);
    if requests.send(LeaseKeepAliveRequest { id }).await.is_err() {
        return Renewal::Broken;
    }
    let stream = tokio_stream::wrappers::ReceiverStream::new(queue);
    let mut client = LeaseClient::new(channel.clone());
    let mut responses = match tokio::time::timeout(ttl, client.lease_keep_alive(stream)).await {
        Ok(Ok(responses)) => responses.into_inner(),
        _ => return Renewal::Broken,
    };
    loop {
        let response = match tokio::time::timeout(ttl, responses.message()).await {
            Ok(Ok(Some(response))) => response,
            _ => return Renewal::Broken,
        };
        if response.ttl <= 0 {
            return Renewal::Expired;
        }
        *renewed_at = Instant::now();
        let granted = Duration::from_secs(u64::try_from(response.ttl).unwrap_or(1));
        tokio::time::sleep(granted / 3).await;
        if requests.send(LeaseKeepAliveRequest { id }).await.is_err() {
            return Renewal::Broken;
        }
    }
}

/// A held lock (clientv3's `Mutex` after `Lock`).
pub struct Mutex {
    pub key: Vec<u8>,
    /// The header of the answer that made us the holder: `ETCD_LOCK_REV` is its revision.
    pub header: ResponseHeader,
}

/// Queues for the lock `name` and waits until this session holds it.
pub async fn lock(session: &Session, name: &str) -> Result<Mutex, Failure> {
    let prefix = format!("{name}/").into_bytes();
    let key = session.key_under(&prefix);
    let put = PutRequest { key: key.clone(), lease: session.lease_id, ..PutRequest::default() };
    let response = txn_if_absent(&session.channel, &key, put, Some(first_created(&prefix))).await?;
    let mut revision = header_of(&response).revision;
    if !response.succeeded {
        // Our key is there already (a retry): we keep our place in the queue.
        revision = range_of(&response, 0).kvs.first().map_or(revision, |kv| kv.create_revision);
    }
    let owner = range_of(&response, 1).kvs.first().map(|kv| kv.create_revision);
    if owner.is_none_or(|owner| owner == revision) {
        return Ok(Mutex { key, header: header_of(&response) });
    }
    let waited = async {
        wait_deletes(&session.channel, &prefix, revision - 1).await?;
        // Our key may have gone with the session while we waited.
        let ours = RangeRequest { key: key.clone(), ..RangeRequest::default() };
        let response = range(&session.channel, ours).await?;
        match response.kvs.is_empty() {
            true => Err(Failure::error("session expired")),
            false => Ok(header_or_default(&response.header)),
        }
    };
    match waited.await {
        Ok(header) => Ok(Mutex { key, header }),
        Err(failure) => {
            // Leave the queue, as clientv3 does, so that nobody waits behind us.
            let _ = delete(&session.channel, &key).await;
            Err(failure)
        }
    }
}

/// A candidate that won an election (clientv3's `Election` after `Campaign`).
pub struct Leadership {
    pub key: Vec<u8>,
    /// The create revision of our key; resigning deletes the key only while it is this one.
    pub create_revision: i64,
}

/// Campaigns in election `name` with `value` and waits until elected.
pub async fn campaign(session: &Session, name: &str, value: &[u8]) -> Result<Leadership, Failure> {
    let prefix = format!("{name}/").into_bytes();
    let key = session.key_under(&prefix);
    let put = PutRequest {
        key: key.clone(),
        value: value.to_vec(),
        lease: session.lease_id,
        ..PutRequest::default()
    };
    let response = txn_if_absent(&session.channel, &key, put.clone(), None).await?;
    let mut create_revision = header_of(&response).revision;
    if !response.succeeded {
        // Already a candidate through this session: keep the place, update the proposal.
        if let Some(kv) = range_of(&response, 0).kvs.first() {
            create_revision = kv.create_revision;
            if kv.value != value {
                proclaim(&session.channel, &key, create_revision, put).await?;
            }
        }
    }
    let leadership = Leadership { key, create_revision };
    if let Err(failure) = wait_deletes(&session.channel, &prefix, create_revision - 1).await {
        let _ = resign(&session.channel, &leadership).await;
        return Err(failure);
    }
    Ok(leadership)
}

async fn proclaim(
    channel: &Channel,
    key: &[u8],
    create_revision: i64,
    put: PutRequest,
) -> Result<(), Failure> {
    let compare = create_revision_is(key, create_revision);
    let request = TxnRequest {
        compare: vec![compare],
        success: vec![RequestOp { request: Some(Request::RequestPut(put)) }],
        failure: Vec::new(),
    };
    let response = kv(channel).txn(request).await.map_err(|s| Failure::from_status(&s))?;
    if !response.into_inner().succeeded {
        return Err(Failure::error("election: not leader"));
    }
    Ok(())
}

/// Gives up leadership (or candidacy): deletes our key if it is still the one we created.
pub async fn resign(channel: &Channel, leadership: &Leadership) -> Result<(), Failure> {
    let delete = DeleteRangeRequest { key: leadership.key.clone(), ..Default::default() };
    let request = TxnRequest {
        compare: vec![create_revision_is(&leadership.key, leadership.create_revision)],
        success: vec![RequestOp { request: Some(Request::RequestDeleteRange(delete)) }],
        failure: Vec::new(),
    };
    kv(channel).txn(request).await.map(|_| ()).map_err(|s| Failure::from_status(&s))
}

/// Follows the leader of election `name`, calling `leader` with a range response holding the
/// leader's key each time the leader (or its proposal) changes, as clientv3's `Observe`.
/// Runs until the store cannot be followed any more, or `leader` fails.
pub async fn observe(
    channel: &Channel,
    name: &str,
    mut leader: impl FnMut(&RangeResponse) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let prefix = format!("{name}/").into_bytes();
    loop {
        let mut response = range(channel, first_created(&prefix)).await?;
        let (header, current) = match response.kvs.first() {
            Some(kv) => {
                leader(&response)?;
                (header_or_default(&response.header), kv.clone())
            }
            None => {
                let header = header_or_default(&response.header);
                let (header, kv) = first_put(channel, &prefix, header).await?;
                let kvs = vec![kv.clone()];
                leader(&RangeResponse { header: Some(header), kvs, ..RangeResponse::default() })?;
                (header, kv)
            }
        };
        // Proclamations show up as puts on the leader's key; its deletion ends its term.
        let create = WatchCreateRequest {
            key: current.key.clone(),
            start_revision: header.revision + 1,
            ..WatchCreateRequest::default()
        };
        let mut responses = open_watch(channel, create).await?;
        'term: loop {
            let watched = next_events(&mut responses).await?;
            for event in watched.events {
                if event.r#type == EventType::Delete as i32 {
                    break 'term;
                }
                response.header = watched.header;
                response.kvs = event.kv.into_iter().collect();
                leader(&response)?;
            }
        }
    }
}

/// Waits for the first key put under `prefix` after `header`'s revision.
async fn first_put(
    channel: &Channel,
    prefix: &[u8],
    header: ResponseHeader,
) -> Result<(ResponseHeader, KeyValue), Failure> {
    let create = WatchCreateRequest {
        key: prefix.to_vec(),
        range_end: prefix_range_end(prefix),
        start_revision: header.revision,
        ..WatchCreateRequest::default()
    };
    let mut responses = open_watch(channel, create).await?;
    loop {
        let watched = next_events(&mut responses).await?;
        let put = watched.events.into_iter().find(|e| e.r#type == EventType::Put as i32);
        if let Some(kv) = put.and_then(|event| event.kv) {
            // A response may carry several revisions: the leader's is the put's own.
            let header =
                ResponseHeader { revision: kv.mod_revision, ..header_or_default(&watched.header) };
            return Ok((header, kv));
        }
    }
}

/// clientv3's `waitDeletes`: until no key under `prefix` created at or before
/// `max_create_revision` is left, wait for the newest of them to be deleted. Returns the header
/// of the read that found none.
async fn wait_deletes(
    channel: &Channel,
    prefix: &[u8],
    max_create_revision: i64,
) -> Result<ResponseHeader, Failure> {
    loop {
        let last_created = RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_range_end(prefix),
            sort_order: SortOrder::Descend as i32,
            sort_target: SortTarget::Create as i32,
            limit: 1,
            max_create_revision,
            ..RangeRequest::default()
        };
        let response = range(channel, last_created).await?;
        let header = header_or_default(&response.header);
        let Some(newest) = response.kvs.first() else {
            return Ok(header);
        };
        wait_delete(channel, &newest.key, header.revision).await?;
    }
}

/// Watches `key` from `revision` until it is deleted.
async fn wait_delete(channel: &Channel, key: &[u8], revision: i64) -> Result<(), Failure> {
    let create = WatchCreateRequest {
        key: key.to_vec(),
        start_revision: revision,
        ..WatchCreateRequest::default()
    };
    let mut responses = open_watch(channel, create).await?;
    loop {
        let watched = next_events(&mut responses).await?;
        if watched.events.iter().any(|event| event.r#type == EventType::Delete as i32) {
            return Ok(());
        }
    }
}

/// A watch stream with one watcher; the request sender is kept so the stream stays open.
struct WatchStream {
    _requests: mpsc::Sender<WatchRequest>,
    responses: tonic::Streaming<WatchResponse>,
}

async fn open_watch(channel: &Channel, create: WatchCreateRequest) -> Result<WatchStream, Failure> {
    let (requests, responses) = super::watch::open_stream(channel.clone(), create).await?;
    Ok(WatchStream { _requests: requests, responses })
}

/// The next response that is not the creation acknowledgement; a cancelled watch or a closed
/// stream is an error, in clientv3's words.
async fn next_events(stream: &mut WatchStream) -> Result<WatchResponse, Failure> {
    loop {
        let response = match stream.responses.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return Err(Failure::error("lost watcher waiting for delete")),
            Err(status) => return Err(Failure::from_status(&status)),
        };
        if response.canceled {
            return Err(Failure::error(super::watch::cancel_reason(&response)));
        }
        if !response.created || !response.events.is_empty() {
            return Ok(response);
        }
    }
}

fn kv(channel: &Channel) -> KvClient<Channel> {
    KvClient::new(channel.clone())
}

async fn range(channel: &Channel, request: RangeRequest) -> Result<RangeResponse, Failure> {
    kv(channel).range(request).await.map(|r| r.into_inner()).map_err(|s| Failure::from_status(&s))
}

/// Deletes one key (a candidate leaving the queue).
pub async fn delete(channel: &Channel, key: &[u8]) -> Result<(), Failure> {
    let request = DeleteRangeRequest { key: key.to_vec(), ..DeleteRangeRequest::default() };
    kv(channel).delete_range(request).await.map(|_| ()).map_err(|s| Failure::from_status(&s))
}

/// The oldest key under `prefix` (clientv3's `WithFirstCreate`): the holder or leader.
fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_range_end(prefix),
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        limit: 1,
        ..RangeRequest::default()
    }
}

fn create_revision_is(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
        range_end: Vec::new(),
    }
}

/// One round trip: put our key if it does not exist yet, else read it; then (if asked) read
/// `also`, so the uncontended case needs no second request.
async fn txn_if_absent(
    channel: &Channel,
    key: &[u8],
    put: PutRequest,
    also: Option<RangeRequest>,
) -> Result<TxnResponse, Failure> {
    let read_key = RangeRequest { key: key.to_vec(), ..RangeRequest::default() };
    let also = also.map(|range| RequestOp { request: Some(Request::RequestRange(range)) });
    let mut success = vec![RequestOp { request: Some(Request::RequestPut(put)) }];
    let mut failure = vec![RequestOp { request: Some(Request::RequestRange(read_key)) }];
    success.extend(also.clone());
    failure.extend(also);
    let request = TxnRequest { compare: vec![create_revision_is(key, 0)], success, failure };
    kv(channel).txn(request).await.map(|r| r.into_inner()).map_err(|s| Failure::from_status(&s))
}

fn header_or_default(header: &Option<ResponseHeader>) -> ResponseHeader {
    header.unwrap_or_default()
}

fn header_of(response: &TxnResponse) -> ResponseHeader {
    header_or_default(&response.header)
}

/// The `index`th response of a txn as a range response (empty if it is not one).
fn range_of(response: &TxnResponse, index: usize) -> RangeResponse {
    match response.responses.get(index).and_then(|op| op.response.as_ref()) {
        Some(Response::ResponseRange(range)) => range.clone(),
        _ => RangeResponse::default(),
    }
}
