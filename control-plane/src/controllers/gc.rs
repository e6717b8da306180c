//! The garbage collector: deletes objects whose owners are gone and carries out foreground and
//! orphan deletion, as Kubernetes' garbage collector does.
//!
//! It watches every served kind (but Events) and keeps a graph of owner references by uid.
//! - **Dangling owners.** An object whose owners are all gone is deleted (in the background,
//!   or in the foreground when an owner is itself being deleted in the foreground and the
//!   object has dependents of its own). One with some owners left only loses the references to
//!   the gone ones. "Gone" is confirmed by a live GET, never taken from a cache that may lag.
//! - **Foreground deletion.** An owner being deleted with the `foregroundDeletion` finalizer
//!   has its dependents deleted. The finalizer is removed, letting the API server delete the
//!   owner, once no dependent with `blockOwnerDeletion` remains.
//! - **Orphan deletion.** An owner being deleted with the `orphan` finalizer has its
//!   references removed from every dependent. Then the finalizer is removed.
//!
//! Nothing is acted on until every kind's first list has loaded, so an owner not yet seen is
//! never mistaken for a gone one.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    Preconditions, PropagationPolicy,
};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::Context;
use crate::resources::{self, Resource, RESOURCES};

const NAME: &str = "garbagecollector";

/// One object in the graph.
#[derive(Clone, Debug)]
struct Item {
    resource: &'static Resource,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

/// What a watch reports to the collector.
enum Change {
    Upsert(String, Item),
    Remove(String),
    Loaded(&'static str),
}

#[derive(Default)]
struct Graph {
    items: HashMap<String, Item>,
    /// Owner uid to the uids of objects naming it.
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    fn upsert(&mut self, uid: String, item: Item) -> Vec<String> {
        let mut touched = vec![uid.clone()];
        if let Some(old) = self.items.get(&uid) {
            for owner in &old.owners {
                if let Some(set) = self.dependents.get_mut(&owner.uid) {
                    set.remove(&uid);
                    if set.is_empty() {
                        self.dependents.remove(&owner.uid);
                    }
                }
                // An owner whose dependent let go may now finish a foreground deletion.
                touched.push(owner.uid.clone());
            }
        }
        for owner in &item.owners {
            self.dependents.entry(owner.uid.clone()).or_default().insert(uid.clone());
            touched.push(owner.uid.clone());
        }
        if item.deleting {
            touched.extend(self.dependents.get(&uid).into_iter().flatten().cloned());
        }
        self.items.insert(uid, item);
        touched
    }

    fn remove(&mut self, uid: &str) -> Vec<String> {
        let mut touched: Vec<String> =
            self.dependents.get(uid).into_iter().flatten().cloned().collect();
        if let Some(old) = self.items.remove(uid) {
            for owner in &old.owners {
                if let Some(set) = self.dependents.get_mut(&owner.uid) {
                    set.remove(uid);
                    if set.is_empty() {
                        self.dependents.remove(&owner.uid);
                    }
                }
                touched.push(owner.uid.clone());
            }
        }
        touched
    }

    fn dependents_of(&self, uid: &str) -> Vec<(String, Item)> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.items.get(d).map(|item| (d.clone(), item.clone())))
            .collect()
    }
}

fn api_resource(resource: &Resource) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(resource.group, resource.version, resource.kind),
        resource.plural,
    )
}

fn api_for(
    client: &kube::Client,
    resource: &Resource,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let ar = api_resource(resource);
    match namespace {
        Some(ns) if resource.namespaced => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    }
}

fn item_of(resource: &'static Resource, object: &DynamicObject) -> Option<(String, Item)> {
    let meta = &object.metadata;
    Some((
        meta.uid.clone()?,
        Item {
            resource,
            namespace: meta.namespace.clone(),
            name: meta.name.clone()?,
            owners: meta.owner_references.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        },
    ))
}

/// Feeds one kind's watch into the collector.
async fn watch_kind(
    client: kube::Client,
    resource: &'static Resource,
    sender: mpsc::Sender<Change>,
) {
    let api = api_for(&client, resource, None);
    let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
    let mut listing: HashSet<String> = HashSet::new();
    let mut known: HashSet<String> = HashSet::new();
    while let Ok(Some(event)) = events.try_next().await {
        let changes = match event {
            watcher::Event::Apply(object) => item_of(resource, &object)
                .map(|(uid, item)| {
                    known.insert(uid.clone());
                    vec![Change::Upsert(uid, item)]
                })
                .unwrap_or_default(),
            watcher::Event::Delete(object) => object
                .metadata
                .uid
                .clone()
                .map(|uid| {
                    known.remove(&uid);
                    vec![Change::Remove(uid)]
                })
                .unwrap_or_default(),
            watcher::Event::Init => {
                listing.clear();
                Vec::new()
            }
            watcher::Event::InitApply(object) => item_of(resource, &object)
                .map(|(uid, item)| {
                    listing.insert(uid.clone());
                    vec![Change::Upsert(uid, item)]
                })
                .unwrap_or_default(),
            watcher::Event::InitDone => {
                // Objects gone while the watch was down.
                let gone: Vec<Change> =
                    known.difference(&listing).cloned().map(Change::Remove).collect();
                known = std::mem::take(&mut listing);
                gone.into_iter().chain([Change::Loaded(resource.plural)]).collect()
            }
        };
        for change in changes {
            if sender.send(change).await.is_err() {
                return;
            }
        }
    }
}

/// Runs the collector until `stop` turns true.
pub async fn run(context: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let kinds: Vec<&'static Resource> = RESOURCES.iter().filter(|r| r.plural != "events").collect();
    let (sender, mut changes) = mpsc::channel(crate::limits::GC_CHANGES_BUFFERED);
    let watches: Vec<_> = kinds
        .iter()
        .map(|resource| tokio::spawn(watch_kind(context.client.clone(), resource, sender.clone())))
        .collect();
    drop(sender);
    let mut graph = Graph::default();
    let mut loaded: BTreeSet<&'static str> = BTreeSet::new();
    let mut pending: BTreeSet<String> = BTreeSet::new();
    let mut retry = tokio::time::interval(Duration::from_secs(5));
    let started = Instant::now();
    let mut warned = false;
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Some(Change::Upsert(uid, item)) => pending.extend(graph.upsert(uid, item)),
                Some(Change::Remove(uid)) => pending.extend(graph.remove(&uid)),
                Some(Change::Loaded(plural)) => { loaded.insert(plural); }
                None => break,
            },
            _ = retry.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        // Drain what else is queued before acting, so a burst is handled once.
        while let Ok(change) = changes.try_recv() {
            match change {
                Change::Upsert(uid, item) => pending.extend(graph.upsert(uid, item)),
                Change::Remove(uid) => pending.extend(graph.remove(&uid)),
                Change::Loaded(plural) => {
                    loaded.insert(plural);
                }
            }
        }
        // Act once every kind has loaded, or after a bound even if some cannot be listed
        // (forbidden, say): acting never depends on the graph alone, since an owner missing
        // from it is looked up live before anything is deleted.
        if loaded.len() < kinds.len() {
            if started.elapsed() < Duration::from_millis(crate::limits::GC_SYNC_WAIT_MS) {
                continue;
            }
            if !warned {
                let missing: Vec<&str> =
                    kinds.iter().map(|k| k.plural).filter(|p| !loaded.contains(p)).collect();
                tracing::warn!(?missing, "garbage collector acting before every kind loaded");
                warned = true;
            }
        }
        let batch: Vec<String> = std::mem::take(&mut pending).into_iter().collect();
        let mut failed = Vec::new();
        for uid in batch {
            let started = Instant::now();
            let result = process(&context, &graph, &uid).await;
            context.metrics.observe(NAME, result.is_ok(), started.elapsed().as_secs_f64());
            if let Err(error) = result {
                tracing::debug!(%uid, %error, "garbage collection failed; will retry");
                failed.push(uid);
            }
        }
        pending.extend(failed);
    }
    for task in watches {
        task.abort();
    }
}

fn has_finalizer(item: &Item, finalizer: &str) -> bool {
    item.finalizers.iter().any(|f| f == finalizer)
}

/// Whether `owner` (a reference from `item`) exists as named: the graph says yes when it
/// holds that uid; otherwise a live GET decides.
async fn owner_exists(
    context: &Context,
    graph: &Graph,
    item: &Item,
    owner: &OwnerReference,
) -> Result<bool, kube::Error> {
    if graph.items.contains_key(&owner.uid) {
        return Ok(true);
    }
    let Some(resource) = resources::find_kind(&owner.api_version, &owner.kind) else {
        // A kind Skiff does not serve cannot exist here.
        return Ok(false);
    };
    let namespace = if resource.namespaced { item.namespace.as_deref() } else { None };
    let api = api_for(&context.client, resource, namespace);
    Ok(api
        .get_opt(&owner.name)
        .await?
        .is_some_and(|found| found.metadata.uid.as_deref() == Some(owner.uid.as_str())))
}

async fn process(context: &Context, graph: &Graph, uid: &str) -> Result<(), kube::Error> {
    let Some(item) = graph.items.get(uid) else { return Ok(()) };
    if item.deleting && has_finalizer(item, "orphan") {
        return orphan_dependents(context, graph, uid, item).await;
    }
    if item.deleting && has_finalizer(item, "foregroundDeletion") {
        foreground(context, graph, uid, item).await?;
    }
    if item.owners.is_empty() {
        return Ok(());
    }
    let mut solid = Vec::new();
    let mut dangling = Vec::new();
    let mut waiting = Vec::new();
    for owner in &item.owners {
        if !owner_exists(context, graph, item, owner).await? {
            dangling.push(owner.uid.clone());
            continue;
        }
        let owner_item = graph.items.get(&owner.uid);
        let owner_waits =
            owner_item.is_some_and(|o| o.deleting && has_finalizer(o, "foregroundDeletion"));
        if owner_waits && owner.block_owner_deletion == Some(true) {
            waiting.push(owner.uid.clone());
        } else {
            // Present (an owner deleted in the background counts until it is gone; its
            // removal brings this object back here).
            solid.push(owner.uid.clone());
        }
    }
    let api = api_for(&context.client, item.resource, item.namespace.as_deref());
    if !solid.is_empty() {
        if dangling.is_empty() && waiting.is_empty() {
            return Ok(());
        }
        let keep: Vec<&OwnerReference> =
            item.owners.iter().filter(|o| solid.contains(&o.uid)).collect();
        let patch = json!({"metadata": {"ownerReferences": keep}});
        tracing::info!(object = %item.name, "removing references to owners gone or going");
        return ignore_missing(
            api.patch(&item.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()),
        );
    }
    if item.deleting {
        return Ok(());
    }
    let policy = if !waiting.is_empty() && graph.dependents.contains_key(uid) {
        PropagationPolicy::Foreground
    } else if has_finalizer(item, "orphan") {
        PropagationPolicy::Orphan
    } else if has_finalizer(item, "foregroundDeletion") {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    };
    tracing::info!(kind = item.resource.kind, object = %item.name, ?policy,
        "deleting: its owners are gone");
    let params = DeleteParams {
        propagation_policy: Some(policy),
        preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }),
        ..DeleteParams::default()
    };
    ignore_missing(api.delete(&item.name, &params).await.map(|_| ()))
}

fn ignore_missing(result: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match result {
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        other => other,
    }
}

/// Deletes an owner's dependents; once none that blocks is left, removes the finalizer.
async fn foreground(
    context: &Context,
    graph: &Graph,
    uid: &str,
    item: &Item,
) -> Result<(), kube::Error> {
    let dependents = graph.dependents_of(uid);
    let blocking: Vec<&(String, Item)> = dependents
        .iter()
        .filter(|(_, d)| {
            d.owners.iter().any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
        })
        .collect();
    if blocking.is_empty() {
        return remove_finalizer(context, item, uid, "foregroundDeletion").await;
    }
    for (dependent_uid, dependent) in dependents.iter().filter(|(_, d)| !d.deleting) {
        let policy = if graph.dependents.contains_key(dependent_uid) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        let api = api_for(&context.client, dependent.resource, dependent.namespace.as_deref());
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(dependent_uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        ignore_missing(api.delete(&dependent.name, &params).await.map(|_| ()))?;
    }
    Ok(())
}

/// Removes references to an owner being orphan-deleted, then its `orphan` finalizer.
async fn orphan_dependents(
    context: &Context,
    graph: &Graph,
    uid: &str,
    item: &Item,
) -> Result<(), kube::Error> {
    for (_, dependent) in graph.dependents_of(uid) {
        let keep: Vec<&OwnerReference> = dependent.owners.iter().filter(|o| o.uid != uid).collect();
        let api = api_for(&context.client, dependent.resource, dependent.namespace.as_deref());
        let patch = json!({"metadata": {"ownerReferences": keep}});
        ignore_missing(
            api.patch(&dependent.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ()),
        )?;
    }
    remove_finalizer(context, item, uid, "orphan").await
}

async fn remove_finalizer(
    context: &Context,
    item: &Item,
    uid: &str,
    finalizer: &str,
) -> Result<(), kube::Error> {
    let api = api_for(&context.client, item.resource, item.namespace.as_deref());
    let Some(current) = api.get_opt(&item.name).await? else { return Ok(()) };
    if current.metadata.uid.as_deref() != Some(uid) {
        return Ok(());
    }
    let finalizers: Vec<String> = current
        .metadata
        .finalizers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != finalizer)
        .collect();
    let patch = json!({"metadata": {"finalizers": finalizers,
        "resourceVersion": current.metadata.resource_version}});
    tracing::info!(object = %item.name, finalizer, "dependents handled; removing finalizer");
    ignore_missing(
        api.patch(&item.name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(owners: &[&str], deleting: bool) -> Item {
        Item {
            resource: resources::find("", "v1", "pods").expect("pods"),
            namespace: Some("default".into()),
            name: "x".into(),
            owners: owners
                .iter()
                .map(|uid| OwnerReference { uid: uid.to_string(), ..OwnerReference::default() })
                .collect(),
            deleting,
            finalizers: Vec::new(),
        }
    }

    #[test]
    fn graph_tracks_dependents_and_what_to_revisit() {
        let mut graph = Graph::default();
        graph.upsert("rs".into(), item(&["d"], false));
        let touched = graph.upsert("p1".into(), item(&["rs"], false));
        assert!(touched.contains(&"p1".to_string()) && touched.contains(&"rs".to_string()));
        graph.upsert("p2".into(), item(&["rs"], false));
        assert_eq!(graph.dependents_of("rs").len(), 2);
        // The owner starts deleting: every dependent is revisited.
        let touched = graph.upsert("rs".into(), item(&["d"], true));
        assert!(touched.contains(&"p1".to_string()) && touched.contains(&"p2".to_string()));
        // A dependent changes owners: the old owner's set shrinks and it is revisited.
        let touched = graph.upsert("p2".into(), item(&[], false));
        assert!(touched.contains(&"rs".to_string()));
        assert_eq!(graph.dependents_of("rs").len(), 1);
        // Removing the owner revisits its remaining dependent.
        let touched = graph.remove("rs");
        assert!(touched.contains(&"p1".to_string()));
        assert!(!graph.dependents.get("d").is_some_and(|s| s.contains("rs")));
    }
}
