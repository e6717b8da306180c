//! Events (core/v1) recorded by the control plane's components, as client-go's recorder does:
//! the first occurrence creates an Event, repeats of the same (object, type, reason, message)
//! bump its `count` and `lastTimestamp` instead of creating new ones. Recording is best effort:
//! a failure is logged and counted, never returned to the reconciler.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Resource;

use crate::limits::EVENT_DEDUPE_ENTRIES_MAX;

/// Normal or Warning, as Kubernetes types events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

type DedupeKey = (String, String, &'static str, String, String);

struct Seen {
    namespace: String,
    name: String,
    count: i32,
}

/// Records events for one component (`source.component`, e.g. `default-scheduler`).
pub struct Recorder {
    client: kube::Client,
    component: String,
    host: String,
    seen: Mutex<(HashMap<DedupeKey, Seen>, VecDeque<DedupeKey>)>,
    failures: prometheus::IntCounter,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("component", &self.component).finish()
    }
}

/// A reference to `object` for an event's `involvedObject`.
pub fn reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    let meta = object.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

impl Recorder {
    /// A recorder for `component` running on `host`; failures are counted in
    /// `skiff_event_record_failures_total{component}` on `registry`.
    pub fn new(
        client: kube::Client,
        component: &str,
        host: &str,
        registry: &prometheus::Registry,
    ) -> Recorder {
        let failures = prometheus::IntCounter::with_opts(
            prometheus::Opts::new(
                "skiff_event_record_failures_total",
                "Events a component could not record.",
            )
            .const_label("component", component),
        )
        .expect("valid metric");
        // A second recorder for the same component in one registry shares nothing; ignore the
        // duplicate registration rather than fail.
        let _ = registry.register(Box::new(failures.clone()));
        Recorder {
            client,
            component: component.to_string(),
            host: host.to_string(),
            seen: Mutex::new((HashMap::new(), VecDeque::new())),
            failures,
        }
    }

    /// Records an event about `object`; cluster-scoped objects' events go to `default`.
    pub async fn record(
        &self,
        object: &ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        if let Err(error) = self.try_record(object, kind, reason, message).await {
            self.failures.inc();
            tracing::warn!(component = %self.component, reason, %error, "cannot record event");
        }
    }

    async fn try_record(
        &self,
        object: &ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let namespace = object.namespace.clone().unwrap_or_else(|| "default".to_string());
        let key: DedupeKey = (
            object.uid.clone().unwrap_or_default(),
            object.name.clone().unwrap_or_default(),
            kind.as_str(),
            reason.to_string(),
            message.to_string(),
        );
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let repeat = {
            let mut seen = self.seen.lock().expect("event dedupe lock");
            seen.0.get_mut(&key).map(|entry| {
                entry.count += 1;
                (entry.namespace.clone(), entry.name.clone(), entry.count)
            })
        };
        if let Some((namespace, name, count)) = repeat {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
            let patch = serde_json::json!({"count": count, "lastTimestamp": now});
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(()),
                // Deleted meanwhile (events expire): create it afresh below.
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    self.seen.lock().expect("event dedupe lock").0.remove(&key);
                }
                Err(error) => return Err(error),
            }
        }
        let object_name = object.name.clone().unwrap_or_default();
        let name = format!("{object_name}.{:016x}", rand::random::<u64>());
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: object.clone(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(kind.as_str().to_string()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: Some(self.host.clone()),
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone()),
            ..Event::default()
        };
        api.create(&PostParams::default(), &event).await?;
        let mut seen = self.seen.lock().expect("event dedupe lock");
        let (entries, order) = &mut *seen;
        if entries.insert(key.clone(), Seen { namespace, name, count: 1 }).is_none() {
            order.push_back(key);
        }
        while order.len() > EVENT_DEDUPE_ENTRIES_MAX {
            if let Some(oldest) = order.pop_front() {
                entries.remove(&oldest);
            }
        }
        Ok(())
    }
}
