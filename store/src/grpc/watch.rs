//! `etcdserverpb.Watch`: one bidirectional stream carries many watchers.
//!
//! A stream task owns the stream's watchers: it registers them with the member's
//! [`crate::watch::WatchHub`], turns hub notifications into `WatchResponse`s and forwards them
//! to the client. The client's pace is the only thing that slows it; the hub never waits for it
//! (a full stream moves its watchers to the unsynced set).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use crate::error::StoreError;
use crate::limits;
use crate::mvcc::{Event, EventKind};
use crate::node::Store;
use crate::proto::etcdserverpb as pb;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::mvccpb;
use crate::watch::{Notification, WatchHub, WatchSpec, WatcherId};

pub struct WatchService {
    store: Store,
}

impl WatchService {
    pub fn new(store: Store) -> WatchService {
        WatchService { store }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        // etcd clients ask, with `hasleader`, to be refused rather than served by a member cut
        // off from the leader.
        let requires_leader =
            request.metadata().get("hasleader").is_some_and(|v| v.as_bytes() == b"true");
        if requires_leader && !self.store.has_leader() {
            return Err(StoreError::NoLeader.into());
        }
        let (responses, receiver) = mpsc::channel(limits::WATCH_STREAM_BUFFER_LEN);
        let stream = WatchStream::new(self.store.clone(), responses);
        tokio::spawn(stream.run(request.into_inner()));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

struct ClientWatcher {
    hub_id: WatcherId,
    fragment: bool,
    progress_notify: bool,
}

struct WatchStream {
    store: Store,
    hub: Arc<WatchHub>,
    responses: mpsc::Sender<Result<pb::WatchResponse, Status>>,
    notifications: mpsc::Sender<Notification>,
    notified: Option<mpsc::Receiver<Notification>>,
    watchers: HashMap<i64, ClientWatcher>,
    by_hub_id: HashMap<WatcherId, i64>,
    next_auto_id: i64,
}

/// Why a stream ends: the client went away or closed its side.
struct Closed;

impl WatchStream {
    fn new(store: Store, responses: mpsc::Sender<Result<pb::WatchResponse, Status>>) -> Self {
        let (notifications, notified) = mpsc::channel(limits::WATCH_STREAM_BUFFER_LEN);
        let hub = store.watch_hub().clone();
        WatchStream {
            store,
            hub,
            responses,
            notifications,
            notified: Some(notified),
            watchers: HashMap::new(),
            by_hub_id: HashMap::new(),
            next_auto_id: 0,
        }
    }

    async fn run(mut self, mut requests: Streaming<pb::WatchRequest>) {
        let mut notified = self.notified.take().expect("taken once");
        let period = Duration::from_millis(limits::WATCH_PROGRESS_NOTIFY_INTERVAL_MS);
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            let step = tokio::select! {
                request = requests.message() => match request {
                    Ok(Some(request)) => self.handle(request).await,
                    Ok(None) | Err(_) => Err(Closed),
                },
                Some(notification) = notified.recv() => self.forward(notification).await,
                _ = progress.tick() => self.notify_progress().await,
            };
            if step.is_err() {
                break;
            }
        }
        for watcher in self.watchers.values() {
            self.hub.cancel(watcher.hub_id);
        }
    }

    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        convert::header(self.store.header(revision))
    }

    async fn send(&self, response: pb::WatchResponse) -> Result<(), Closed> {
        self.responses.send(Ok(response)).await.map_err(|_| Closed)
    }

    async fn handle(&mut self, request: pb::WatchRequest) -> Result<(), Closed> {
        use pb::watch_request::RequestUnion;
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(RequestUnion::CancelRequest(cancel)) => self.cancel(cancel.watch_id).await,
            Some(RequestUnion::ProgressRequest(_)) => self.progress_all().await,
            None => Ok(()),
        }
    }

    fn take_auto_id(&mut self) -> i64 {
        while self.watchers.contains_key(&self.next_auto_id) {
            self.next_auto_id += 1;
        }
        let id = self.next_auto_id;
        self.next_auto_id += 1;
        id
    }

    async fn create(&mut self, create: pb::WatchCreateRequest) -> Result<(), Closed> {
        let current = self.hub.current_revision();
        let requested = create.watch_id;
        let refused = (requested != 0 && self.watchers.contains_key(&requested))
            || self.watchers.len() >= limits::WATCHERS_PER_STREAM_MAX;
        if refused {
            // etcd answers a duplicate id with a created-and-cancelled response for id -1.
            let response = pb::WatchResponse {
                header: self.header(current),
                watch_id: -1,
                created: true,
                canceled: true,
                ..Default::default()
            };
            return self.send(response).await;
        }
        let id = if requested != 0 { requested } else { self.take_auto_id() };
        let filters = create.filters();
        let no_put = filters.clone().any(|f| f == pb::watch_create_request::FilterType::Noput);
        let no_delete =
            filters.into_iter().any(|f| f == pb::watch_create_request::FilterType::Nodelete);
        let spec = WatchSpec {
            key: create.key,
            range_end: create.range_end,
            start_revision: create.start_revision,
            prev_kv: create.prev_kv,
            no_put,
            no_delete,
            progress_notify: create.progress_notify,
        };
        // The created response goes out before any event: register after sending it, from the
        // revision the response names, so nothing is missed in between.
        let response = pb::WatchResponse {
            header: self.header(current),
            watch_id: id,
            created: true,
            ..Default::default()
        };
        self.send(response).await?;
        let spec = WatchSpec {
            start_revision: if spec.start_revision > 0 { spec.start_revision } else { current + 1 },
            ..spec
        };
        let progress_notify = spec.progress_notify;
        let hub_id = self.hub.watch(spec, self.notifications.clone());
        self.watchers
            .insert(id, ClientWatcher { hub_id, fragment: create.fragment, progress_notify });
        self.by_hub_id.insert(hub_id, id);
        Ok(())
    }

    async fn cancel(&mut self, id: i64) -> Result<(), Closed> {
        let Some(watcher) = self.watchers.remove(&id) else { return Ok(()) };
        self.hub.cancel(watcher.hub_id);
        self.by_hub_id.remove(&watcher.hub_id);
        let current = self.hub.current_revision();
        let response = pb::WatchResponse {
            header: self.header(current),
            watch_id: id,
            canceled: true,
            ..Default::default()
        };
        self.send(response).await
    }

    /// A progress request is answered (watch id -1) only when every watcher of the stream is
    /// synced, as etcd does: otherwise the revision would claim events not yet sent.
    async fn progress_all(&mut self) -> Result<(), Closed> {
        if !self.watchers.values().all(|w| self.hub.is_synced(w.hub_id)) {
            return Ok(());
        }
        let current = self.hub.current_revision();
        let response =
            pb::WatchResponse { header: self.header(current), watch_id: -1, ..Default::default() };
        self.send(response).await
    }

    async fn notify_progress(&mut self) -> Result<(), Closed> {
        let current = self.hub.current_revision();
        let due: Vec<i64> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.progress_notify && self.hub.is_synced(w.hub_id))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let response = pb::WatchResponse {
                header: self.header(current),
                watch_id: id,
                ..Default::default()
            };
            self.send(response).await?;
        }
        Ok(())
    }

    async fn forward(&mut self, notification: Notification) -> Result<(), Closed> {
        match notification {
            Notification::Events { watcher, events, revision } => {
                let Some(&id) = self.by_hub_id.get(&watcher) else { return Ok(()) };
                let fragment = self.watchers.get(&id).is_some_and(|w| w.fragment);
                let events: Vec<mvccpb::Event> = events.into_iter().map(event).collect();
                self.store.metrics().watch_events_sent_total.inc_by(events.len() as u64);
                for response in fragments(self.header(revision), id, events, fragment) {
                    self.send(response).await?;
                }
                Ok(())
            }
            Notification::Compacted { watcher, compact_revision } => {
                let Some(id) = self.by_hub_id.remove(&watcher) else { return Ok(()) };
                self.watchers.remove(&id);
                let response = pb::WatchResponse {
                    header: self.header(self.hub.current_revision()),
                    watch_id: id,
                    canceled: true,
                    compact_revision,
                    cancel_reason: "etcdserver: mvcc: required revision has been compacted".into(),
                    ..Default::default()
                };
                self.send(response).await
            }
        }
    }
}

fn event(event: Event) -> mvccpb::Event {
    let kind = match event.kind {
        EventKind::Put => mvccpb::event::EventType::Put,
        EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event {
        r#type: kind as i32,
        kv: Some(convert::key_value(event.kv)),
        prev_kv: event.prev_kv.map(convert::key_value),
    }
}

/// One response, or — when the watcher allows fragments and the response is too large —
/// several, all but the last marked `fragment`. Events are never split across responses.
fn fragments(
    header: Option<pb::ResponseHeader>,
    watch_id: i64,
    events: Vec<mvccpb::Event>,
    fragment: bool,
) -> Vec<pb::WatchResponse> {
    let whole = pb::WatchResponse { header, watch_id, events, ..Default::default() };
    if !fragment || whole.encoded_len() <= limits::WATCH_RESPONSE_BYTES_MAX {
        return vec![whole];
    }
    let mut parts = Vec::new();
    let mut current = pb::WatchResponse { header, watch_id, ..Default::default() };
    for event in whole.events {
        let next_len = current.encoded_len() + event.encoded_len() + 8;
        if !current.events.is_empty() && next_len > limits::WATCH_RESPONSE_BYTES_MAX {
            let full = std::mem::replace(
                &mut current,
                pb::WatchResponse { header, watch_id, ..Default::default() },
            );
            parts.push(pb::WatchResponse { fragment: true, ..full });
        }
        current.events.push(event);
    }
    parts.push(current);
    parts
}
