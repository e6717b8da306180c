//! Kubernetes REST semantics of the API server, driven by the `kube` crate (the client the
//! scheduler, controllers and agent are built on) against an in-process `skiff master`
//! equivalent: an embedded store member and the API server on loopback.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::WatchParams;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent};
use serde_json::json;

mod common;

/// A master whose watch caches are small, so a watch from before the kept history is easy to
/// reach.
async fn start(ip: &str) -> common::Cluster {
    common::start_with_cache(ip, 10).await
}

fn config_map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let labels: BTreeMap<String, String> =
        labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"},
    }))
    .expect("a ConfigMap")
}

fn status_of(error: kube::Error) -> (u16, String, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason, status.message),
        other => panic!("expected a Status error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_compare_and_swap_on_resource_version() {
    let cluster = start("127.0.84.1").await;
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    let created = maps.create(&PostParams::default(), &config_map("a", &[])).await.expect("create");
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    let first_rv = meta.resource_version.clone().expect("resourceVersion");

    let duplicate = maps.create(&PostParams::default(), &config_map("a", &[])).await;
    let (code, reason, message) = status_of(duplicate.expect_err("exists"));
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(message, "configmaps \"a\" already exists");

    let mut changed = created.clone();
    changed.data = Some(BTreeMap::from([("k".into(), "w".into())]));
    let updated = maps.replace("a", &PostParams::default(), &changed).await.expect("update");
    assert_ne!(updated.metadata.resource_version.as_deref(), Some(first_rv.as_str()));
    // The same stale resourceVersion again: refused, nothing changes.
    let stale = maps.replace("a", &PostParams::default(), &changed).await;
    let (code, reason, _) = status_of(stale.expect_err("stale"));
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(maps.get("a").await.expect("get").data, updated.data);

    let missing = maps.get("nope").await;
    assert_eq!(status_of(missing.expect_err("missing")).0, 404);

    // generateName and a dry run.
    let mut generated = config_map("", &[]);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let made = maps.create(&PostParams::default(), &generated).await.expect("generateName");
    let name = made.metadata.name.expect("a generated name");
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    let dry = PostParams { dry_run: true, ..Default::default() };
    maps.create(&dry, &config_map("dry", &[])).await.expect("dry run");
    assert!(maps.get_opt("dry").await.expect("get").is_none(), "a dry run stores nothing");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_select_and_watches_resume_or_expire() {
    let cluster = start("127.0.84.2").await;
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    for i in 0..5 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        maps.create(&PostParams::default(), &config_map(&format!("m{i}"), &[("tier", tier)]))
            .await
            .expect("create");
    }
    // Pages of two: every object once, all at one resourceVersion, even when the store moves
    // on between pages (a write elsewhere: a later page still reports the first one's).
    let other: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "kube-system");
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut versions = Vec::new();
    loop {
        if token.is_some() {
            let name = format!("elsewhere-{}", versions.len());
            other.create(&PostParams::default(), &config_map(&name, &[])).await.expect("create");
        }
        let mut params = ListParams::default().limit(2);
        if let Some(token) = &token {
            params = params.continue_token(token);
        }
        let page = maps.list(&params).await.expect("page");
        versions.push(page.metadata.resource_version.clone());
        names.extend(page.items.iter().filter_map(|m| m.metadata.name.clone()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    assert_eq!(names, ["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(versions.len(), 3);
    assert!(versions.windows(2).all(|w| w[0] == w[1]), "{versions:?}");

    let even = maps.list(&ListParams::default().labels("tier=even")).await.expect("labels");
    assert_eq!(even.items.len(), 3);
    let one = maps.list(&ListParams::default().fields("metadata.name=m3")).await.expect("fields");
    assert_eq!(one.items.len(), 1);
    let bad = maps.list(&ListParams::default().fields("data.k=v")).await;
    assert_eq!(status_of(bad.expect_err("unsupported field")).0, 400);

    // A watch from the list's resourceVersion sees only later changes.
    let rv = versions[0].clone().expect("list resourceVersion");
    let mut watch = maps.watch(&WatchParams::default(), &rv).await.expect("watch").boxed();
    maps.delete("m0", &DeleteParams::default()).await.expect("delete");
    match watch.try_next().await.expect("event") {
        Some(WatchEvent::Deleted(map)) => assert_eq!(map.metadata.name.as_deref(), Some("m0")),
        other => panic!("expected m0's deletion, got {other:?}"),
    }
    // One from before the cache's history (10 changes here): 410 Gone, so the client re-lists.
    for i in 0..12 {
        let change = json!({"data": {"k": format!("v{i}")}});
        maps.patch("m2", &PatchParams::default(), &Patch::Merge(&change)).await.expect("patch");
    }
    let mut expired = maps.watch(&WatchParams::default(), &rv).await.expect("watch").boxed();
    match expired.try_next().await.expect("event") {
        Some(WatchEvent::Error(status)) => assert_eq!(status.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    // deletecollection with a selector.
    let gone = maps
        .delete_collection(&DeleteParams::default(), &ListParams::default().labels("tier=odd"))
        .await
        .expect("deletecollection");
    assert!(gone.is_left());
    let left: Vec<String> = maps
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|m| m.metadata.name)
        .collect();
    assert_eq!(left, ["m2", "m4"]);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_status_and_scale_follow_kubernetes() {
    let cluster = start("127.0.84.3").await;
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    let mut guarded = config_map("guarded", &[]);
    guarded.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    maps.create(&PostParams::default(), &guarded).await.expect("create");
    maps.delete("guarded", &DeleteParams::default()).await.expect("delete");
    let held = maps.get("guarded").await.expect("still there while a finalizer is pending");
    assert!(held.metadata.deletion_timestamp.is_some());
    let release = json!({"metadata": {"finalizers": null}});
    maps.patch("guarded", &PatchParams::default(), &Patch::Merge(&release)).await.expect("patch");
    assert!(maps.get_opt("guarded").await.expect("get").is_none(), "gone with its finalizer");

    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
    }))
    .expect("a Deployment");
    let created = deployments.create(&PostParams::default(), &deployment).await.expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    // Replacing it with the same manifest (defaults left out) is no spec change.
    let mut same = deployment.clone();
    same.metadata.resource_version = created.metadata.resource_version.clone();
    let replaced = deployments.replace("web", &PostParams::default(), &same).await.expect("put");
    assert_eq!(replaced.metadata.generation, Some(1));
    let strategy = replaced.spec.as_ref().and_then(|s| s.strategy.as_ref());
    assert_eq!(strategy.and_then(|s| s.type_.as_deref()), Some("RollingUpdate"));
    // Status changes only through /status; spec changes bump the generation.
    let status = json!({"status": {"replicas": 2, "readyReplicas": 1}});
    deployments
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status");
    let sneaky = json!({"spec": {"replicas": 3}, "status": {"replicas": 9}});
    let patched = deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&sneaky))
        .await
        .expect("patch");
    let patched_status = patched.status.expect("status");
    assert_eq!((patched_status.replicas, patched_status.ready_replicas), (Some(2), Some(1)));
    assert_eq!(patched.metadata.generation, Some(2));
    let scale = deployments.get_scale("web").await.expect("scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
    assert_eq!(scale.status.map(|s| s.selector), Some(Some("app=web".to_string())));
    let rescale = json!({"spec": {"replicas": 1}});
    deployments
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(&rescale))
        .await
        .expect("scale");
    let scaled = deployments.get("web").await.expect("get");
    assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(1));
    assert_eq!(scaled.metadata.generation, Some(3), "scaling changes the spec");

    // A pod bound once through pods/binding; a second binding conflicts.
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    .expect("a Pod");
    pods.create(&PostParams::default(), &pod).await.expect("create pod");
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
        "target": {"kind": "Node", "name": "n1"}});
    let request = |body: &serde_json::Value| {
        http::Request::post("/api/v1/namespaces/default/pods/p/binding")
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).expect("JSON"))
            .expect("request")
    };
    let bound: serde_json::Value = cluster.client.request(request(&binding)).await.expect("bind");
    assert_eq!(bound["status"], "Success");
    assert_eq!(
        pods.get("p").await.expect("pod").spec.and_then(|s| s.node_name).as_deref(),
        Some("n1")
    );
    let again = cluster.client.request::<serde_json::Value>(request(&binding)).await;
    assert_eq!(status_of(again.expect_err("already bound")).0, 409);
    cluster.stop().await;
}

/// A list at resourceVersion "" is consistent (it sees every write acknowledged before it)
/// and is served from the watch cache once the cache has caught up, not from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_lists_are_served_from_the_cache() {
    let cluster = start("127.0.84.4").await;
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "default");
    let metric = |text: &str, name: &str| -> f64 {
        let prefix = format!("{name}{{resource=\"configmaps\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let metrics = || async {
        let request = http::Request::get("/metrics").body(Vec::new()).expect("request");
        cluster.client.request_text(request).await.expect("metrics")
    };
    let before = metrics().await;
    for i in 0..20 {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("c{i}")},
            "data": {"i": i.to_string()}}))
        .expect("configmap");
        api.create(&PostParams::default(), &cm).await.expect("create");
        // Every acknowledged write is in the next list.
        let names: Vec<String> = api
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        assert!(names.contains(&format!("c{i}")), "c{i} missing from {names:?}");
    }
    // Paged consistent lists resume from the same revision.
    let page = api.list(&ListParams::default().limit(7)).await.expect("page");
    assert_eq!(page.items.len(), 7);
    let token = page.metadata.continue_.clone().expect("a continue token");
    let rest = api.list(&ListParams::default().limit(100).continue_token(&token)).await;
    assert_eq!(rest.expect("rest").items.len(), 13);
    let after = metrics().await;
    let from_cache = metric(&after, "apiserver_cache_list_total")
        - metric(&before, "apiserver_cache_list_total");
    let from_store = metric(&after, "apiserver_storage_list_total")
        - metric(&before, "apiserver_storage_list_total");
    assert_eq!(from_cache, 21.0, "20 lists and one first page from the cache");
    assert_eq!(from_store, 1.0, "only the continued page reads the store");
    cluster.stop().await;
}
