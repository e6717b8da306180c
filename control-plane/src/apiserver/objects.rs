//! Resource requests: parsing Kubernetes REST paths, and get, list, watch, create, update,
//! patch, delete and deletecollection with Kubernetes' semantics over the store
//! (compare-and-swap on resourceVersion = mod_revision) and the watch caches.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::auth::User;
use super::patch::{self, PatchType};
use super::selectors::{FieldSelector, LabelSelector};
use super::server::{error_response, json_response, ApiServer};
use super::status::ApiError;
use super::table;
use crate::resources::{self, Resource};
use crate::storage::cache::{CacheEvent, Filter};
use crate::storage::Swap;

/// Largest request body accepted (kube-apiserver's limit is 3 MiB).
pub const REQUEST_BODY_BYTES_MAX: usize = 3 * 1024 * 1024;
/// Compare-and-swap retries of a patch or status update that lost a race.
const CONFLICT_RETRIES_MAX: usize = 5;
/// Bookmark interval of watches that allow them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);
/// Longest watch the server keeps open without `timeoutSeconds` (kube-apiserver picks a
/// random 30-60 min; clients re-watch).
const WATCH_TIMEOUT_MAX: Duration = Duration::from_secs(1800);

/// What a resource path names.
#[derive(Clone, Debug)]
pub struct Target {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<&'static str>,
}

/// Parses `/api/v1/...` and `/apis/<group>/<version>/...` resource paths.
pub fn parse_target(segments: &[&str]) -> Option<Target> {
    let (group, version, rest) = match segments {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let namespaced_in =
        |plural: &str| resources::find(group, version, plural).filter(|r| r.namespaced);
    let (namespace, rest) = match rest {
        ["namespaces", namespace, plural, tail @ ..] if namespaced_in(plural).is_some() => {
            (Some(namespace.to_string()), [&[*plural][..], tail].concat())
        }
        _ => (None, rest.to_vec()),
    };
    let resource = resources::find(group, version, rest.first()?)?;
    let name = rest.get(1).map(|n| n.to_string());
    let subresource = match rest.get(2) {
        None => None,
        Some(sub) => {
            let known = resource.subresources.iter().find(|s| s.name() == *sub)?;
            Some(known.name())
        }
    };
    if rest.len() > 3 {
        return None;
    }
    Some(Target { resource, namespace, name, subresource })
}

pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The RBAC verb of a request.
pub fn verb_of(method: &Method, target: &Target, query: &str) -> String {
    let pairs = query_pairs(query);
    let watching = matches!(query_value(&pairs, "watch"), Some("true" | "1"));
    // A WebSocket exec is a GET, but it may run anything: it needs `create`, as
    // kube-apiserver asks since 1.30.
    if target.subresource == Some("exec") {
        return "create".into();
    }
    match (method.as_str(), target.name.is_some()) {
        ("GET", true) => "get",
        ("GET", false) if watching => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
    .to_string()
}

/// Serves an authorized resource request.
pub async fn serve(
    server: Arc<ApiServer>,
    user: User,
    target: Target,
    request: Request<Incoming>,
) -> Response<Body> {
    match serve_inner(&server, &user, &target, request).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

async fn read_body(request: Request<Incoming>) -> Result<(hyper::HeaderMap, Vec<u8>), ApiError> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(Body::new(body), REQUEST_BODY_BYTES_MAX)
        .await
        .map_err(|_| ApiError::too_large(REQUEST_BODY_BYTES_MAX))?;
    Ok((parts.headers, bytes.to_vec()))
}

fn content_type(headers: &hyper::HeaderMap) -> String {
    headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// Decodes a JSON, YAML or Kubernetes protobuf body (kubectl's typed clients send protobuf:
/// `kubectl create deployment|service|secret|token ...`); a missing Content-Type is JSON (the
/// Python client sends none).
fn decode_body(headers: &hyper::HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let content_type = content_type(headers);
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "" | "application/json" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid YAML: {e}"))),
        super::protobuf::MEDIA_TYPE => super::protobuf::decode(body).map_err(|error| match error {
            super::protobuf::ProtobufError::ContentEncoding(_) => {
                let mut refused = ApiError::unsupported_media_type(&content_type);
                refused.message = error.to_string();
                refused
            }
            _ => ApiError::bad_request(error.to_string()),
        }),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

async fn serve_inner(
    server: &Arc<ApiServer>,
    user: &User,
    target: &Target,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let method = request.method().clone();
    let pairs = query_pairs(request.uri().query().unwrap_or(""));
    let accept =
        request.headers().get("accept").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let as_table = table::wants_table(&accept);
    match (method.as_str(), &target.name, target.subresource) {
        ("GET", Some(name), None) => {
            let object = get_object(server, target, name).await?.0;
            if as_table {
                let include = include_object(&pairs)?;
                let rv = object["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(target.resource, &[&object], include, true, &rv, now_seconds()),
                ));
            }
            Ok(json_response(StatusCode::OK, &object))
        }
        ("GET", Some(name), Some("status")) => {
            Ok(json_response(StatusCode::OK, &get_object(server, target, name).await?.0))
        }
        ("GET", Some(name), Some("scale")) => {
            let object = get_object(server, target, name).await?.0;
            Ok(json_response(StatusCode::OK, &scale_of(target.resource, &object)))
        }
        ("GET", Some(name), Some("log")) => {
            let pod = get_object(server, target, name).await?.0;
            super::pods::log(server, &pod, &pairs).await
        }
        ("GET" | "POST", Some(name), Some("exec")) => {
            let pod = get_object(server, target, name).await?.0;
            super::pods::exec(server, &pod, request).await
        }
        ("GET", None, None) => {
            if matches!(query_value(&pairs, "watch"), Some("true" | "1")) {
                watch(server, target, &pairs, as_table).await
            } else {
                list(server, target, &pairs, as_table).await
            }
        }
        ("POST", None, None) => {
            let (headers, body) = read_body(request).await?;
            let object = decode_body(&headers, &body)?;
            create(server, user, target, object, &pairs).await
        }
        ("POST", Some(name), Some("token")) => {
            let (headers, body) = read_body(request).await?;
            let token_request = decode_body(&headers, &body)?;
            issue_token(server, target, name, &token_request).await
        }
        ("POST", Some(name), Some("binding")) => {
            let (headers, body) = read_body(request).await?;
            let binding = decode_body(&headers, &body)?;
            bind(server, target, name, &binding).await
        }
        ("PUT", Some(name), sub) => {
            let (headers, body) = read_body(request).await?;
            let object = decode_body(&headers, &body)?;
            update(server, user, target, name, sub, Change::Replace(object), &pairs).await
        }
        ("PATCH", Some(name), sub) => {
            let (headers, body) = read_body(request).await?;
            let content_type = content_type(&headers);
            let patch_type = PatchType::from_content_type(&content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(&content_type))?;
            if patch_type == PatchType::Apply {
                return Err(ApiError::not_implemented(
                    "server-side apply (application/apply-patch+yaml)",
                ));
            }
            let change = Change::Patch(patch_type, body);
            update(server, user, target, name, sub, change, &pairs).await
        }
        ("DELETE", Some(name), None) => {
            let (headers, body) = read_body(request).await?;
            let options = if body.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                decode_body(&headers, &body)?
            };
            if target.resource.kind == "Pod" && user.is_in("system:nodes") {
                // NodeRestriction: a node deletes only pods bound to it.
                let current = get_object(server, target, name).await?.0;
                super::admission::restrict_node(user, target.resource, &current)?;
            }
            delete(server, target, name, &options, &pairs).await
        }
        ("DELETE", None, None) => delete_collection(server, target, &pairs).await,
        (method, _, _) => Err(ApiError::method_not_allowed(method)),
    }
}

fn include_object(pairs: &[(String, String)]) -> Result<table::IncludeObject, ApiError> {
    table::IncludeObject::parse(query_value(pairs, "includeObject")).map_err(ApiError::bad_request)
}

pub(crate) fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// RFC 3339 UTC timestamp with seconds, as Kubernetes writes `metav1.Time`.
pub(crate) fn timestamp() -> String {
    format_timestamp(now_seconds())
}

/// RFC 3339 UTC rendering of Unix seconds.
pub(crate) fn format_timestamp(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let rem = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn key(target: &Target, name: &str) -> String {
    target.resource.key(target.namespace.as_deref(), name)
}

/// Reads one object from the store (a consistent read); returns it with its mod_revision.
async fn get_object(
    server: &ApiServer,
    target: &Target,
    name: &str,
) -> Result<(Value, i64), ApiError> {
    let (kv, _) = server.backend.get(key(target, name).as_bytes()).await?;
    let kv = kv.ok_or_else(|| ApiError::not_found(target.resource.plural, name))?;
    let object: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object is not JSON: {e}")))?;
    Ok((crate::storage::cache::with_resource_version(&object, kv.mod_revision), kv.mod_revision))
}

fn list_kind(resource: &Resource) -> String {
    format!("{}List", resource.kind)
}

/// Label and field selectors of a list or watch.
fn selectors(resource: &Resource, pairs: &[(String, String)]) -> Result<Filter, ApiError> {
    let labels = LabelSelector::parse(query_value(pairs, "labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let fields =
        FieldSelector::parse(resource.kind, query_value(pairs, "fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Arc::new(move |object: &Value| labels.matches(object) && fields.matches(object)))
}

fn namespace_filter(target: &Target, inner: Filter) -> Filter {
    match (&target.namespace, target.resource.namespaced) {
        (Some(namespace), true) => {
            let namespace = namespace.clone();
            Arc::new(move |o: &Value| o["metadata"]["namespace"] == namespace.as_str() && inner(o))
        }
        _ => inner,
    }
}

async fn list(
    server: &ApiServer,
    target: &Target,
    pairs: &[(String, String)],
    as_table: bool,
) -> Result<Response<Body>, ApiError> {
    let filter = selectors(target.resource, pairs)?;
    let limit: i64 = query_value(pairs, "limit").and_then(|l| l.parse().ok()).unwrap_or(0).max(0);
    let continue_token = query_value(pairs, "continue").filter(|c| !c.is_empty());
    let resource_version = query_value(pairs, "resourceVersion").unwrap_or("");
    let prefix = target.resource.namespace_prefix(target.namespace.as_deref());
    let cache = server.cache(target.resource.plural);
    // "0": any recent state will do. "": the latest state, which the cache serves once it has
    // caught up with the store's current revision (as kube-apiserver's consistent reads from
    // cache); if it cannot within a bound, the store answers.
    let from_cache = continue_token.is_none()
        && match resource_version {
            "0" => true,
            "" => {
                let current = server.backend.current_revision().await?;
                cache.wait_for_current(current).await.is_ok()
            }
            _ => false,
        };
    let plural = target.resource.plural;
    let (items, revision, next) = if from_cache {
        server.metrics.cache_lists.with_label_values(&[plural]).inc();
        let snapshot = cache
            .snapshot(prefix.as_bytes())
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        // A limit pages a consistent list (a "0" list ignores it, as Kubernetes does): the
        // continue token resumes from the store at the snapshot's revision.
        let page_len = if resource_version.is_empty() && limit > 0 { limit as usize } else { 0 };
        let mut items = Vec::new();
        let mut next = None;
        for (index, (key, object)) in snapshot.objects.iter().enumerate() {
            if !filter(object) {
                continue;
            }
            items.push((**object).clone());
            if page_len > 0 && items.len() == page_len && index + 1 < snapshot.objects.len() {
                use base64::Engine as _;
                let mut start = key.clone();
                start.push(0);
                let token = json!({"rv": snapshot.revision,
                    "start": String::from_utf8_lossy(&start)});
                next = Some(
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string()),
                );
                break;
            }
        }
        (items, snapshot.revision, next)
    } else {
        server.metrics.storage_lists.with_label_values(&[plural]).inc();
        list_from_store(server, &prefix, &filter, limit, continue_token).await?
    };
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(next) = &next {
        metadata["continue"] = json!(next);
    }
    if as_table {
        let include = include_object(pairs)?;
        let refs: Vec<&Value> = items.iter().collect();
        let mut table = table::table(
            target.resource,
            &refs,
            include,
            true,
            &revision.to_string(),
            now_seconds(),
        );
        table["metadata"] = metadata;
        return Ok(json_response(StatusCode::OK, &table));
    }
    let list = json!({
        "kind": list_kind(target.resource),
        "apiVersion": target.resource.api_version(),
        "metadata": metadata,
        "items": items,
    });
    Ok(json_response(StatusCode::OK, &list))
}

/// A consistent (or paged) list read from the store: pages until `limit` matching items are
/// found. The continue token holds the revision and the next key, so pages are one snapshot.
async fn list_from_store(
    server: &ApiServer,
    prefix: &str,
    filter: &Filter,
    limit: i64,
    continue_token: Option<&str>,
) -> Result<(Vec<Value>, i64, Option<String>), ApiError> {
    use base64::Engine as _;
    let end = crate::storage::backend::prefix_end(prefix.as_bytes());
    let (mut start, mut revision) = match continue_token {
        Some(token) => {
            let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
            let start = decoded["start"].as_str().unwrap_or("").as_bytes().to_vec();
            let revision = decoded["rv"].as_i64().unwrap_or(0);
            if !start.starts_with(prefix.as_bytes()) || revision <= 0 {
                return Err(ApiError::bad_request("continue key is not valid"));
            }
            (start, revision)
        }
        None => (prefix.as_bytes().to_vec(), 0),
    };
    let mut items = Vec::new();
    loop {
        let page_len = if limit > 0 {
            (limit - items.len() as i64).max(1)
        } else {
            crate::limits::STORE_PAGE_LEN
        };
        let page =
            server.backend.list(&start, &end, revision, page_len).await.map_err(|error| {
                match error {
            crate::storage::BackendError::Compacted { .. } => ApiError::gone(
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter.",
            ),
            other => other.into(),
        }
            })?;
        revision = page.revision;
        let last_key = page.kvs.last().map(|kv| kv.key.clone());
        for kv in page.kvs {
            let Ok(object) = serde_json::from_slice::<Value>(&kv.value) else { continue };
            let object = crate::storage::cache::with_resource_version(&object, kv.mod_revision);
            if filter(&object) {
                items.push(object);
            }
        }
        let Some(mut next) = last_key.filter(|_| page.more) else {
            return Ok((items, revision, None));
        };
        next.push(0);
        start = next;
        if limit > 0 && items.len() as i64 >= limit {
            let token = json!({"rv": revision, "start": String::from_utf8_lossy(&start)});
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string());
            return Ok((items, revision, Some(token)));
        }
    }
}

fn watch_event(kind: &str, object: &Value) -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("JSON");
    line.push(b'\n');
    line
}

async fn watch(
    server: &Arc<ApiServer>,
    target: &Target,
    pairs: &[(String, String)],
    as_table: bool,
) -> Result<Response<Body>, ApiError> {
    let filter = namespace_filter(target, selectors(target.resource, pairs)?);
    let resource_version: i64 = match query_value(pairs, "resourceVersion") {
        None | Some("") | Some("0") => 0,
        Some(rv) => rv
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
    };
    let bookmarks = matches!(query_value(pairs, "allowWatchBookmarks"), Some("true" | "1"));
    let timeout = query_value(pairs, "timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(WATCH_TIMEOUT_MAX, |t| Duration::from_secs(t).min(WATCH_TIMEOUT_MAX));
    let include = include_object(pairs)?;
    let resource = target.resource;
    let cache = server.cache(resource.plural).clone();
    let (sender, receiver) =
        tokio::sync::mpsc::channel::<Result<Vec<u8>, std::convert::Infallible>>(16);
    let started = cache.watch(resource_version, filter).await;
    let metrics = server.metrics.clone();
    let stopping = server.stopping.clone();
    tokio::spawn(async move {
        let mut headers_sent = false;
        let mut render = |event: &CacheEvent| -> Vec<u8> {
            if as_table {
                let rv = event.revision.to_string();
                let table = table::table(
                    resource,
                    &[&event.object],
                    include,
                    !headers_sent,
                    &rv,
                    now_seconds(),
                );
                headers_sent = true;
                watch_event(event.kind.as_str(), &table)
            } else {
                watch_event(event.kind.as_str(), &event.object)
            }
        };
        let mut cache_watch = match started {
            Ok(watch) => watch,
            Err(error) => {
                use crate::storage::CacheError;
                let status = match &error {
                    CacheError::TooOld { .. } => ApiError::gone(error.to_string()),
                    CacheError::TooLarge { .. } => ApiError::timeout(error.to_string()),
                    CacheError::NotReady(_) => ApiError::unavailable(error.to_string()),
                }
                .to_status();
                let _ = sender.send(Ok(watch_event("ERROR", &status))).await;
                return;
            }
        };
        metrics.watch_opened(resource.plural);
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_revision = cache_watch.revision;
        let mut ok = true;
        for event in &cache_watch.initial {
            last_revision = last_revision.max(event.revision);
            if sender.send(Ok(render(event))).await.is_err() {
                ok = false;
                break;
            }
        }
        let mut bookmark = tokio::time::interval(BOOKMARK_INTERVAL);
        bookmark.tick().await;
        while ok {
            tokio::select! {
                event = cache_watch.live.recv() => match event {
                    Some(event) => {
                        last_revision = last_revision.max(event.revision);
                        ok = sender.send(Ok(render(&event))).await.is_ok();
                    }
                    None => break,
                },
                _ = bookmark.tick(), if bookmarks => {
                    let object = json!({"kind": resource.kind, "apiVersion": resource.api_version(),
                        "metadata": {"resourceVersion": last_revision.to_string()}});
                    ok = sender.send(Ok(watch_event("BOOKMARK", &object))).await.is_ok();
                }
                _ = tokio::time::sleep_until(deadline) => break,
                _ = sender.closed() => break,
                _ = super::server::until_stopped(stopping.clone()) => break,
            }
        }
        metrics.watch_closed(resource.plural);
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(Body::from_stream(stream))
        .expect("valid response"))
}

/// Checks a name as Kubernetes checks `metadata.name` (a DNS-1123 subdomain; a DNS-1123
/// label for namespaces and services).
fn name_errors(resource: &Resource, name: &str) -> Option<String> {
    let label_only = matches!(resource.kind, "Namespace" | "Service");
    let max = if label_only { 63 } else { 253 };
    let valid_part = |part: &str| {
        !part.is_empty()
            && part.len() <= 63
            && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && part.as_bytes()[0].is_ascii_alphanumeric()
            && part.as_bytes()[part.len() - 1].is_ascii_alphanumeric()
    };
    let valid = name.len() <= max
        && if label_only { valid_part(name) } else { name.split('.').all(valid_part) };
    if valid {
        return None;
    }
    Some(if label_only {
        format!(
            "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 label must consist of \
             lower case alphanumeric characters or '-', and must start and end with an \
             alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation \
             is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        )
    } else {
        format!(
            "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must \
             consist of lower case alphanumeric characters, '-' or '.', and must start and end \
             with an alphanumeric character (e.g. 'example.com', regex used for validation is \
             '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    })
}

/// Field paths in `input` that the typed round trip dropped (unknown fields).
fn unknown_fields(input: &Value, normalized: &Value, path: &str, out: &mut Vec<String>) {
    match (input, normalized) {
        (Value::Object(input), Value::Object(normalized)) => {
            for (key, value) in input {
                let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                match normalized.get(key) {
                    Some(kept) => unknown_fields(value, kept, &here, out),
                    None if value.is_null() => {}
                    None if is_empty_default(value) => {}
                    None => out.push(here),
                }
            }
        }
        (Value::Array(input), Value::Array(normalized)) => {
            for (i, (a, b)) in input.iter().zip(normalized).enumerate() {
                unknown_fields(a, b, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Values a typed round trip may drop without the field being unknown (empty maps/lists).
fn is_empty_default(value: &Value) -> bool {
    matches!(value, Value::Object(m) if m.is_empty())
        || matches!(value, Value::Array(a) if a.is_empty())
}

/// Decodes through the kind's type; applies `fieldValidation` (Strict: unknown fields are
/// an error; Warn: warnings; Ignore: dropped silently). Returns the object and warnings.
fn normalize(
    resource: &Resource,
    object: &Value,
    pairs: &[(String, String)],
) -> Result<(Value, Vec<String>), ApiError> {
    let normalized = (resource.normalize)(object).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            resource.kind, resource.version, resource.kind
        ))
    })?;
    let mut unknown = Vec::new();
    unknown_fields(object, &normalized, "", &mut unknown);
    let warnings: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    match query_value(pairs, "fieldValidation") {
        Some("Strict") if !warnings.is_empty() => Err(ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            resource.kind,
            resource.version,
            resource.kind,
            warnings.join(", ")
        ))),
        Some("Ignore") => Ok((normalized, Vec::new())),
        _ => Ok((normalized, warnings)),
    }
}

fn with_warnings(mut response: Response<Body>, warnings: &[String]) -> Response<Body> {
    for warning in warnings {
        let value = format!("299 - \"{}\"", warning.replace('"', "\\\""));
        if let Ok(value) = value.parse() {
            response.headers_mut().append("warning", value);
        }
    }
    response
}

fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    object["metadata"].as_object_mut().expect("made an object")
}

fn random_suffix() -> String {
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    let uuid = uuid::Uuid::new_v4();
    uuid.as_bytes().iter().take(5).map(|b| alphabet[*b as usize % alphabet.len()] as char).collect()
}

async fn create(
    server: &ApiServer,
    user: &User,
    target: &Target,
    mut object: Value,
    pairs: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let resource = target.resource;
    if !object.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    // Clients may leave out apiVersion and kind (the Python client does): the URL says them.
    let api_version = object["apiVersion"].as_str().map(str::to_string);
    let kind = object["kind"].as_str().map(str::to_string);
    if api_version.as_deref().is_some_and(|v| v != resource.api_version())
        || kind.as_deref().is_some_and(|k| k != resource.kind)
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({})",
            api_version.unwrap_or_default(),
            resource.api_version()
        )));
    }
    object["apiVersion"] = json!(resource.api_version());
    object["kind"] = json!(resource.kind);
    let metadata = metadata_mut(&mut object);
    let mut name = metadata.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    if name.is_empty() {
        match metadata.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => name = format!("{prefix}{}", random_suffix()),
            _ => {
                return Err(ApiError::invalid(
                    resource.kind,
                    "",
                    &["metadata.name: Required value: name or generateName is required".into()],
                ))
            }
        }
    }
    if resource.namespaced {
        let namespace = target.namespace.clone().unwrap_or_else(|| "default".into());
        match metadata.get("namespace").and_then(Value::as_str) {
            Some(given) if !given.is_empty() && given != namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on \
                     the request",
                ));
            }
            _ => {}
        }
        metadata.insert("namespace".into(), json!(namespace));
    } else {
        metadata.remove("namespace");
    }
    metadata.insert("name".into(), json!(name));
    if let Some(problem) = name_errors(resource, &name) {
        return Err(ApiError::invalid(resource.kind, &name, &[problem]));
    }
    let target = Target {
        name: Some(name.clone()),
        namespace: if resource.namespaced {
            metadata.get("namespace").and_then(Value::as_str).map(str::to_string)
        } else {
            None
        },
        ..target.clone()
    };
    for field in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"]
    {
        metadata.remove(field);
    }
    metadata.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    metadata.insert("creationTimestamp".into(), json!(timestamp()));
    if resource.has_status {
        metadata.insert("generation".into(), json!(1));
    }
    super::admission::admit_create(server, user, resource, &target, &mut object).await?;
    let (object, warnings) = normalize(resource, &object, pairs)?;
    if resource.kind == "Service" {
        // The ClusterIP and NodePorts are allocated in the Service's own write.
        let object = super::allocator::create(server, object, dry_run(pairs)).await?;
        return Ok(with_warnings(json_response(StatusCode::CREATED, &object), &warnings));
    }
    if dry_run(pairs) {
        return Ok(with_warnings(json_response(StatusCode::CREATED, &object), &warnings));
    }
    let bytes = serde_json::to_vec(&object).expect("JSON");
    let lease = if resource.kind == "Event" { event_lease(server).await? } else { 0 };
    match server.backend.create(key(&target, &name).as_bytes(), bytes, lease).await? {
        Swap::Done { revision, .. } => {
            let object = crate::storage::cache::with_resource_version(&object, revision);
            tracing::debug!(user = %user.name, kind = resource.kind, %name, "created");
            Ok(with_warnings(json_response(StatusCode::CREATED, &object), &warnings))
        }
        Swap::Refused { .. } => Err(ApiError::already_exists(resource.plural, &name)),
    }
}

fn dry_run(pairs: &[(String, String)]) -> bool {
    query_value(pairs, "dryRun") == Some("All")
}

/// Events expire after an hour (kube-apiserver's `--event-ttl`), through a store lease.
async fn event_lease(server: &ApiServer) -> Result<i64, ApiError> {
    Ok(server.backend.lease_grant(3600).await?)
}

/// PUT (with `replacement`) or PATCH (with `patch`) of an object or its status or scale.
/// What an update asks for: a whole new object (PUT) or a patch (PATCH).
enum Change {
    Replace(Value),
    Patch(PatchType, Vec<u8>),
}

async fn update(
    server: &ApiServer,
    user: &User,
    target: &Target,
    name: &str,
    subresource: Option<&str>,
    change: Change,
    pairs: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let resource = target.resource;
    let (replacement, patch) = match change {
        Change::Replace(object) => (Some(object), None),
        Change::Patch(patch_type, bytes) => (None, Some((patch_type, bytes))),
    };
    for _ in 0..CONFLICT_RETRIES_MAX {
        let (current, mod_revision) = get_object(server, target, name).await?;
        let mut desired = match (&replacement, &patch, subresource) {
            (Some(body), _, Some("scale")) => with_scale(&current, body)?,
            (Some(body), _, _) => body.clone(),
            (None, Some((patch_type, bytes)), Some("scale")) => {
                let scale = scale_of(resource, &current);
                let patched =
                    patch::apply_patch("Scale", &scale, *patch_type, bytes).map_err(patch_error)?;
                with_scale(&current, &patched)?
            }
            (None, Some((patch_type, bytes)), _) => {
                patch::apply_patch(resource.kind, &current, *patch_type, bytes)
                    .map_err(patch_error)?
            }
            (None, None, _) => return Err(ApiError::internal("update without a body")),
        };
        if !desired.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        // A resourceVersion in the request makes it conditional; otherwise (most patches,
        // or a PUT without one) it applies to whatever is current, retried on a lost race.
        let requested_rv = requested_resource_version(replacement.as_ref(), patch.as_ref());
        if let Some(rv) = &requested_rv {
            if !rv.is_empty() && rv != &mod_revision.to_string() {
                return Err(ApiError::conflict(resource.plural, name));
            }
        }
        if desired["metadata"]["name"].as_str().is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                desired["metadata"]["name"].as_str().unwrap_or("")
            )));
        }
        desired["apiVersion"] = json!(resource.api_version());
        desired["kind"] = json!(resource.kind);
        if subresource.is_none() {
            super::admission::default_spec(resource, &mut desired);
            super::admission::carry_over(resource, &current, &mut desired);
        }
        // What the server owns is kept from the current object.
        {
            let current_meta = current["metadata"].as_object().cloned().unwrap_or_default();
            let metadata = metadata_mut(&mut desired);
            for field in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match current_meta.get(field) {
                    Some(value) => metadata.insert(field.into(), value.clone()),
                    None => metadata.remove(field),
                };
            }
        }
        match subresource {
            // The status subresource changes only status; the main resource never does.
            Some("status") => {
                let status = desired["status"].clone();
                desired = current.clone();
                desired["status"] = status;
            }
            _ if resource.has_status => {
                desired["status"] = current["status"].clone();
                if desired["status"].is_null() {
                    desired.as_object_mut().expect("object").remove("status");
                }
            }
            _ => {}
        }
        super::admission::admit_update(server, user, resource, &current, &desired)?;
        let (mut desired, warnings) = normalize(resource, &desired, pairs)?;
        let allocates = resource.kind == "Service" && subresource.is_none();
        let picked = if allocates {
            super::allocator::prepare_update(server, &current, &mut desired).await?
        } else {
            Vec::new()
        };
        // Compared once both went through the same typed round trip.
        if resource.has_status
            && subresource != Some("status")
            && desired["spec"] != current["spec"]
        {
            let generation = current["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            desired["metadata"]["generation"] = json!(generation);
        }
        metadata_mut(&mut desired).remove("resourceVersion");
        if dry_run(pairs) {
            return Ok(with_warnings(json_response(StatusCode::OK, &desired), &warnings));
        }
        // Nothing changed: no write, no new resourceVersion, no watch event (as Kubernetes).
        let mut unchanged = current.clone();
        metadata_mut(&mut unchanged).remove("resourceVersion");
        if unchanged == desired {
            let body =
                if subresource == Some("scale") { scale_of(resource, &current) } else { current };
            return Ok(with_warnings(json_response(StatusCode::OK, &body), &warnings));
        }
        // Finalizers all removed from an object being deleted: the delete completes.
        // (A namespace also waits for its contents: `spec.finalizers`.)
        let empty = |list: &Value| list.as_array().is_none_or(Vec::is_empty);
        // A graceful deletion still running (a pod's grace period) is finished by its own
        // delete, not by an update (Kubernetes' shouldDeleteDuringUpdate).
        let finished = desired["metadata"]["deletionTimestamp"].is_string()
            && desired["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0) == 0
            && empty(&desired["metadata"]["finalizers"])
            && (resource.kind != "Namespace" || empty(&desired["spec"]["finalizers"]));
        let swap = if allocates {
            let desired = (!finished).then_some(&desired);
            super::allocator::update(server, mod_revision, &current, desired, &picked).await?
        } else if finished {
            server.backend.delete(key(target, name).as_bytes(), mod_revision).await?
        } else {
            let bytes = serde_json::to_vec(&desired).expect("JSON");
            server.backend.update(key(target, name).as_bytes(), mod_revision, bytes).await?
        };
        match swap {
            Swap::Done { revision, .. } => {
                let object = crate::storage::cache::with_resource_version(&desired, revision);
                let body =
                    if subresource == Some("scale") { scale_of(resource, &object) } else { object };
                return Ok(with_warnings(json_response(StatusCode::OK, &body), &warnings));
            }
            Swap::Refused { current: None } => {
                return Err(ApiError::not_found(resource.plural, name))
            }
            Swap::Refused { .. } if requested_rv.as_deref().is_some_and(|rv| !rv.is_empty()) => {
                return Err(ApiError::conflict(resource.plural, name));
            }
            // Lost a race on an unconditional update: read again and retry.
            Swap::Refused { .. } => continue,
        }
    }
    Err(ApiError::conflict(resource.plural, name))
}

fn patch_error(error: patch::PatchError) -> ApiError {
    match error.status_code() {
        422 => ApiError::invalid("patch", "", &[error.to_string()]),
        415 => ApiError::unsupported_media_type(&error.to_string()),
        _ => ApiError::bad_request(error.to_string()),
    }
}

/// The `autoscaling/v1` Scale of a Deployment or ReplicaSet.
fn scale_of(resource: &Resource, object: &Value) -> Value {
    let default_replicas = if resource.kind == "Deployment" { 1 } else { 0 };
    let labels = object["spec"]["selector"]["matchLabels"].as_object().map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(",")
    });
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "uid": object["metadata"]["uid"],
            "resourceVersion": object["metadata"]["resourceVersion"],
            "creationTimestamp": object["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(default_replicas)},
        "status": {
            "replicas": object["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": labels.unwrap_or_default(),
        },
    })
}

/// The object with `spec.replicas` from a Scale.
fn with_scale(current: &Value, scale: &Value) -> Result<Value, ApiError> {
    let replicas = scale["spec"]["replicas"]
        .as_i64()
        .ok_or_else(|| ApiError::invalid("Scale", "", &["spec.replicas: Required value".into()]))?;
    if replicas < 0 {
        return Err(ApiError::invalid(
            "Scale",
            "",
            &[format!(
                "spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
            )],
        ));
    }
    let mut object = current.clone();
    object["spec"]["replicas"] = json!(replicas);
    if let Some(rv) = scale["metadata"]["resourceVersion"].as_str() {
        object["metadata"]["resourceVersion"] = json!(rv);
    }
    Ok(object)
}

/// `serviceaccounts/<name>/token` (TokenRequest): a signed token for the account.
async fn issue_token(
    server: &ApiServer,
    target: &Target,
    name: &str,
    request: &Value,
) -> Result<Response<Body>, ApiError> {
    use super::tokens::{ServiceAccountClaims, EXPIRATION_SECONDS_MIN};
    use super::tokens::{EXPIRATION_SECONDS_DEFAULT, EXPIRATION_SECONDS_MAX};
    let (account, _) = get_object(server, target, name).await?;
    let seconds =
        request["spec"]["expirationSeconds"].as_i64().unwrap_or(EXPIRATION_SECONDS_DEFAULT);
    if seconds < EXPIRATION_SECONDS_MIN {
        let cause = format!(
            "spec.expirationSeconds: Invalid value: {seconds}: may not specify a duration less \
             than {EXPIRATION_SECONDS_MIN} seconds"
        );
        return Err(ApiError::invalid("TokenRequest", name, &[cause]));
    }
    let seconds = seconds.min(EXPIRATION_SECONDS_MAX);
    let audiences: Vec<String> = request["spec"]["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let claims = ServiceAccountClaims {
        namespace: target.namespace.clone().unwrap_or_default(),
        name: name.to_string(),
        uid: account["metadata"]["uid"].as_str().unwrap_or("").to_string(),
    };
    let now = now_seconds();
    let token = server.signer.issue(&claims, &audiences, now, seconds);
    let expiration = super::objects::format_timestamp(now + seconds);
    let response = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": claims.namespace,
            "creationTimestamp": super::objects::format_timestamp(now)},
        "spec": {"audiences": audiences, "expirationSeconds": seconds},
        "status": {"token": token, "expirationTimestamp": expiration},
    });
    Ok(json_response(StatusCode::CREATED, &response))
}

/// `pods/<name>/binding`: assigns a node, once.
async fn bind(
    server: &ApiServer,
    target: &Target,
    name: &str,
    binding: &Value,
) -> Result<Response<Body>, ApiError> {
    let node = binding["target"]["name"].as_str().filter(|n| !n.is_empty()).ok_or_else(|| {
        ApiError::invalid("Binding", name, &["target.name: Required value".into()])
    })?;
    // Retried when the pod changed between the read and the write (its status, typically),
    // as kube-apiserver's binding retries its update.
    for _ in 0..CONFLICT_RETRIES_MAX {
        let (current, mod_revision) = get_object(server, target, name).await?;
        if let Some(bound) = current["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            let message = format!(
                "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is \
                 already assigned to node \"{bound}\""
            );
            return Err(ApiError::conflict_message("pods", name, message));
        }
        let mut bound = current.clone();
        bound["spec"]["nodeName"] = json!(node);
        // Binding also records the PodScheduled condition, as Kubernetes does.
        let mut conditions: Vec<Value> =
            bound["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions.retain(|c| c["type"] != "PodScheduled");
        conditions.insert(
            0,
            json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                "lastTransitionTime": timestamp()}),
        );
        bound["status"]["conditions"] = json!(conditions);
        metadata_mut(&mut bound).remove("resourceVersion");
        let bytes = serde_json::to_vec(&bound).expect("JSON");
        match server.backend.update(key(target, name).as_bytes(), mod_revision, bytes).await? {
            Swap::Done { .. } => {
                return Ok(json_response(
                    StatusCode::CREATED,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Success", "code": 201}),
                ))
            }
            Swap::Refused { current: None } => return Err(ApiError::not_found("pods", name)),
            Swap::Refused { .. } => {}
        }
    }
    Err(ApiError::conflict("pods", name))
}

/// DELETE of one object, retried when the object changed between the read and the delete
/// (a delete without preconditions applies to whatever is current, as in Kubernetes).
async fn delete(
    server: &ApiServer,
    target: &Target,
    name: &str,
    options: &Value,
    pairs: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let conditional = !options["preconditions"].is_null();
    let mut attempts = 0;
    loop {
        match delete_once(server, target, name, options, pairs).await {
            Err(error) if error.reason == "Conflict" && !conditional => {
                attempts += 1;
                if attempts >= CONFLICT_RETRIES_MAX {
                    return Err(error);
                }
            }
            other => return other,
        }
    }
}

/// DELETE of one object: graceful where Kubernetes is graceful (finalizers pending, bound
/// pods), immediate otherwise.
async fn delete_once(
    server: &ApiServer,
    target: &Target,
    name: &str,
    options: &Value,
    pairs: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let resource = target.resource;
    let (current, mod_revision) = get_object(server, target, name).await?;
    if let Some(uid) = options["preconditions"]["uid"].as_str() {
        if current["metadata"]["uid"].as_str() != Some(uid) {
            return Err(ApiError::conflict_message(
                resource.plural,
                name,
                format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    current["metadata"]["uid"].as_str().unwrap_or("")
                ),
            ));
        }
    }
    let policy = options["propagationPolicy"]
        .as_str()
        .or(query_value(pairs, "propagationPolicy"))
        .unwrap_or("Background");
    let mut finalizers: Vec<Value> =
        current["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
    match policy {
        "Foreground" => finalizers.push(json!("foregroundDeletion")),
        "Orphan" => finalizers.push(json!("orphan")),
        "Background" => {}
        other => return Err(ApiError::bad_request(format!("unknown propagationPolicy {other:?}"))),
    }
    let mut seen = std::collections::HashSet::new();
    finalizers.retain(|f| seen.insert(f.to_string()));
    if resource.kind == "Namespace" {
        finalizers.push(json!("kubernetes"));
    }
    if dry_run(pairs) {
        return Ok(json_response(StatusCode::OK, &current));
    }
    // Pods bound to a node terminate gracefully: their agent stops them, then deletes them.
    if resource.kind == "Pod" {
        let by_query = query_value(pairs, "gracePeriodSeconds");
        let key = key(target, name);
        let graceful = super::pods::delete_gracefully(
            server,
            &key,
            &current,
            mod_revision,
            options,
            by_query,
            &finalizers,
        );
        if let Some(response) = graceful.await? {
            return Ok(response);
        }
    }
    if finalizers.is_empty() {
        let swap = if resource.kind == "Service" {
            // Its ClusterIP and NodePorts are released in the same write.
            super::allocator::update(server, mod_revision, &current, None, &[]).await?
        } else {
            server.backend.delete(key(target, name).as_bytes(), mod_revision).await?
        };
        return match swap {
            Swap::Done { .. } => Ok(json_response(StatusCode::OK, &current)),
            Swap::Refused { current: None } => Err(ApiError::not_found(resource.plural, name)),
            Swap::Refused { .. } => Err(ApiError::conflict(resource.plural, name)),
        };
    }
    // Graceful: mark for deletion; whoever owns the finalizers completes it.
    let mut marked = current.clone();
    if marked["metadata"]["deletionTimestamp"].is_null() {
        marked["metadata"]["deletionTimestamp"] = json!(timestamp());
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    }
    marked["metadata"]["finalizers"] = json!(finalizers);
    if resource.kind == "Namespace" {
        marked["status"]["phase"] = json!("Terminating");
        marked["metadata"]["finalizers"] =
            json!(current["metadata"]["finalizers"].as_array().cloned().unwrap_or_default());
        marked["spec"]["finalizers"] = json!(["kubernetes"]);
    }
    metadata_mut(&mut marked).remove("resourceVersion");
    let bytes = serde_json::to_vec(&marked).expect("JSON");
    match server.backend.update(key(target, name).as_bytes(), mod_revision, bytes).await? {
        Swap::Done { revision, .. } => {
            if resource.kind == "Namespace" {
                let uid = marked["metadata"]["uid"].as_str().unwrap_or("");
                super::admission::finish_namespace_deletion(server, name, uid);
            }
            Ok(json_response(
                StatusCode::OK,
                &crate::storage::cache::with_resource_version(&marked, revision),
            ))
        }
        Swap::Refused { .. } => Err(ApiError::conflict(resource.plural, name)),
    }
}

async fn delete_collection(
    server: &ApiServer,
    target: &Target,
    pairs: &[(String, String)],
) -> Result<Response<Body>, ApiError> {
    let filter = selectors(target.resource, pairs)?;
    let prefix = target.resource.namespace_prefix(target.namespace.as_deref());
    let (items, revision, _) = list_from_store(server, &prefix, &filter, 0, None).await?;
    for item in &items {
        let Some(name) = item["metadata"]["name"].as_str() else { continue };
        let one = Target {
            namespace: item["metadata"]["namespace"].as_str().map(str::to_string),
            name: Some(name.to_string()),
            ..target.clone()
        };
        match delete(server, &one, name, &json!({}), pairs).await {
            Ok(_) => {}
            Err(error) if error.code == 404 => {}
            Err(error) => return Err(error),
        }
    }
    let list = json!({"kind": list_kind(target.resource),
        "apiVersion": target.resource.api_version(),
        "metadata": {"resourceVersion": revision.to_string()}, "items": items});
    Ok(json_response(StatusCode::OK, &list))
}

/// The resourceVersion the request itself names (a PUT body's, or one a patch sets), which
/// makes the write conditional on it.
fn requested_resource_version(
    replacement: Option<&Value>,
    patch: Option<&(PatchType, Vec<u8>)>,
) -> Option<String> {
    let from = |v: &Value| v["metadata"]["resourceVersion"].as_str().map(str::to_string);
    match (replacement, patch) {
        (Some(body), _) => from(body),
        (None, Some((PatchType::Json, bytes))) => {
            let operations: Value = serde_json::from_slice(bytes).ok()?;
            operations.as_array()?.iter().rev().find_map(|op| {
                let sets = matches!(op["op"].as_str(), Some("add" | "replace"));
                (sets && op["path"] == "/metadata/resourceVersion")
                    .then(|| op["value"].as_str().map(str::to_string))
                    .flatten()
            })
        }
        (None, Some((_, bytes))) => from(&serde_json::from_slice::<Value>(bytes).ok()?),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_resource_namespace_name_and_subresource() {
        let t = parse_target(&["api", "v1", "namespaces", "dev", "pods", "web", "status"]).unwrap();
        assert_eq!(
            (t.resource.plural, t.namespace.as_deref(), t.name.as_deref(), t.subresource),
            ("pods", Some("dev"), Some("web"), Some("status"))
        );
        let ns = parse_target(&["api", "v1", "namespaces", "dev"]).unwrap();
        assert_eq!(
            (ns.resource.plural, ns.namespace, ns.name.as_deref()),
            ("namespaces", None, Some("dev"))
        );
        let all = parse_target(&["apis", "apps", "v1", "deployments"]).unwrap();
        assert_eq!((all.resource.kind, all.namespace), ("Deployment", None));
        assert!(parse_target(&["api", "v1", "pods", "x", "nosuch"]).is_none());
        assert!(parse_target(&["apis", "apps", "v1", "pods"]).is_none());
    }

    #[test]
    fn names_are_checked_as_kubernetes_checks_them() {
        let pods = resources::find("", "v1", "pods").unwrap();
        let namespaces = resources::find("", "v1", "namespaces").unwrap();
        assert!(name_errors(pods, "web-1.example").is_none());
        assert!(name_errors(pods, "Web").is_some());
        assert!(name_errors(namespaces, "a.b").is_some(), "namespaces are labels");
        assert!(name_errors(pods, "-x").is_some());
    }

    #[test]
    fn unknown_fields_are_named_by_path() {
        let input = json!({"spec": {"containers": [{"name": "c", "imagee": "x"}], "x": null}});
        let normalized = json!({"spec": {"containers": [{"name": "c"}]}});
        let mut out = Vec::new();
        unknown_fields(&input, &normalized, "", &mut out);
        assert_eq!(out, vec!["spec.containers[0].imagee".to_string()]);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_416), (2025, 11, 24));
        let now = timestamp();
        assert_eq!(now.len(), 20);
        assert!(now.ends_with('Z'));
    }
}
