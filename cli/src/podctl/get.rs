//! `get`: server-side printed Tables laid out exactly as kubectl lays them out (`-o wide`,
//! `-A`, `--show-labels`, several types at once), `-o yaml|json|name` from plain objects, and
//! `-w`, which lists and then prints each change as a row.

use futures::{AsyncBufReadExt, StreamExt};
use http::Method;
use serde_json::{json, Value};

use super::args::GetArgs;
use super::client::{self, Session, ACCEPT_TABLE, LIST_CHUNK_LEN};
use super::discovery::ResourceType;
use super::failure::{self, Failure};
use super::output::{self, TabWriter, TableOptions, TablePrinter};
use super::targets::{self, Target};
use super::{emit, emit_error};

/// The output formats `get` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table { wide: bool },
    Yaml,
    Json,
    Name,
}

impl Format {
    pub fn parse(output: Option<&str>) -> Result<Format, Failure> {
        match output.unwrap_or("") {
            "" => Ok(Format::Table { wide: false }),
            "wide" => Ok(Format::Table { wide: true }),
            "yaml" => Ok(Format::Yaml),
            "json" => Ok(Format::Json),
            "name" => Ok(Format::Name),
            other => Err(Failure::client(format!(
                "unable to match a printer suitable for the output format \"{other}\", allowed \
                 formats are: json,name,wide,yaml"
            ))),
        }
    }
}

/// One answer: the resource asked about and what the server sent (a Table, an object or a
/// list).
struct Info {
    resource: ResourceType,
    body: Value,
}

pub async fn run(session: &mut Session, args: &GetArgs) -> Result<(), Failure> {
    let format = Format::parse(args.output.as_deref())?;
    let targets = targets::resolve(session, &args.resources).await?;
    let named = targets.iter().any(|t| t.name.is_some());
    if named && args.selector.is_some() {
        return Err(Failure::client("name cannot be provided when a selector is specified"));
    }
    if named && args.all_namespaces {
        return Err(Failure::client(
            "a resource cannot be retrieved by name across all namespaces",
        ));
    }
    if args.watch {
        return watch(session, args, &targets, format).await;
    }
    let accept = match format {
        Format::Table { .. } => ACCEPT_TABLE,
        _ => "application/json",
    };
    let mut infos = Vec::new();
    let mut errors = Vec::new();
    for target in &targets {
        match fetch(session, args, target, accept).await {
            Ok(body) => infos.push(Info { resource: target.resource.clone(), body }),
            Err(error) if args.ignore_not_found && Failure::is_not_found(&error) => {}
            Err(error) => errors.push(Failure::from_kube(error, "")),
        }
    }
    let single_item = targets.len() == 1 && named;
    match format {
        Format::Table { wide } => {
            let all_namespaced =
                !args.all_namespaces && infos.iter().all(|i| i.resource.namespaced);
            let text = print_tables(&infos, wide, args);
            emit(&text);
            if text.is_empty() && !args.ignore_not_found && errors.is_empty() {
                if all_namespaced {
                    emit_error(&format!("No resources found in {} namespace.", session.namespace));
                } else {
                    emit_error("No resources found");
                }
            }
        }
        _ if single_item && infos.len() == 1 => {
            emit(&print_object(&infos[0].resource, &infos[0].body, format));
        }
        _ => {
            let items: Vec<(ResourceType, Value)> = infos.iter().flat_map(items_of).collect();
            emit(&print_list(&items, format));
        }
    }
    finish(errors)
}

/// Prints every error after the output, kubectl's order; fails if there were any.
fn finish(errors: Vec<Failure>) -> Result<(), Failure> {
    if errors.is_empty() {
        return Ok(());
    }
    for error in &errors {
        emit_error(&error.to_string());
    }
    Err(Failure::reported())
}

/// The list or object path of a target with `get`'s selectors.
fn request_path(
    session: &Session,
    args: &GetArgs,
    target: &Target,
    extra: &[(&str, &str)],
) -> String {
    let namespace =
        if args.all_namespaces { None } else { session.namespace_for(&target.resource) };
    let path = target.resource.path(namespace, target.name.as_deref());
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if target.name.is_none() {
        pairs.push(("labelSelector", args.selector.as_deref().unwrap_or("")));
        pairs.push(("fieldSelector", args.field_selector.as_deref().unwrap_or("")));
    }
    pairs.extend_from_slice(extra);
    client::with_query(&path, &pairs)
}

/// GETs one object, or a whole list following `continue` tokens (pages of 500, as kubectl).
async fn fetch(
    session: &Session,
    args: &GetArgs,
    target: &Target,
    accept: &str,
) -> Result<Value, kube::Error> {
    if target.name.is_some() {
        let path = request_path(session, args, target, &[]);
        return session.send_json(Method::GET, &path, None, accept, Vec::new()).await;
    }
    let limit = LIST_CHUNK_LEN.to_string();
    let mut continue_token = String::new();
    let mut combined: Option<Value> = None;
    loop {
        let extra = [("limit", limit.as_str()), ("continue", continue_token.as_str())];
        let path = request_path(session, args, target, &extra);
        let page = session.send_json(Method::GET, &path, None, accept, Vec::new()).await?;
        continue_token = page["metadata"]["continue"].as_str().unwrap_or("").to_string();
        let key = if page["kind"] == "Table" { "rows" } else { "items" };
        combined = Some(match combined {
            None => page,
            Some(mut all) => {
                let more = page[key].as_array().cloned().unwrap_or_default();
                if let Some(list) = all[key].as_array_mut() {
                    list.extend(more);
                }
                all
            }
        });
        if continue_token.is_empty() {
            return Ok(combined.expect("at least one page"));
        }
    }
}

/// Lays out Tables as kubectl's `get` does: one printer per resource type, a blank line
/// between types, remembered widths reset between them.
fn print_tables(infos: &[Info], wide: bool, args: &GetArgs) -> String {
    let with_kind = infos.windows(2).any(|w| w[0].resource != w[1].resource);
    let mut writer = TabWriter::kubectl();
    let mut output = String::new();
    let mut pending = String::new();
    let mut separator_ready = false;
    let mut last: Option<&ResourceType> = None;
    let mut printer = TablePrinter::new(TableOptions::default());
    let flush = |pending: &mut String, output: &mut String, ready: &mut bool, w: &mut TabWriter| {
        let text = w.format(pending);
        pending.clear();
        if !text.is_empty() {
            if *ready {
                output.push('\n');
                *ready = false;
            }
            output.push_str(&text);
        }
    };
    for info in infos {
        if last != Some(&info.resource) {
            flush(&mut pending, &mut output, &mut separator_ready, &mut writer);
            writer.forget_widths();
            if last.is_some() && !args.no_headers && !output.is_empty() {
                separator_ready = true;
            }
            printer = TablePrinter::new(TableOptions {
                wide,
                no_headers: args.no_headers,
                with_namespace: args.all_namespaces && info.resource.namespaced,
                kind_prefix: with_kind.then(|| info.resource.kind_group()),
                show_labels: args.show_labels,
            });
            last = Some(&info.resource);
        }
        pending.push_str(&printer.print(&info.body));
    }
    flush(&mut pending, &mut output, &mut separator_ready, &mut writer);
    output
}

/// The objects in a list answer (or the object itself), with `kind`/`apiVersion` filled in
/// as kubectl's unstructured decoding fills them.
fn items_of(info: &Info) -> Vec<(ResourceType, Value)> {
    let with_type = |mut item: Value| {
        if item.get("kind").is_none_or(Value::is_null) {
            item["kind"] = json!(info.resource.kind);
        }
        if item.get("apiVersion").is_none_or(Value::is_null) {
            item["apiVersion"] = json!(info.resource.api_version());
        }
        (info.resource.clone(), item)
    };
    match info.body["items"].as_array() {
        Some(items) => items.iter().cloned().map(with_type).collect(),
        None => vec![with_type(info.body.clone())],
    }
}

/// `kind.group/name`.
pub fn object_name(resource: &ResourceType, object: &Value) -> String {
    format!("{}/{}", resource.kind_group(), object["metadata"]["name"].as_str().unwrap_or(""))
}

fn print_object(resource: &ResourceType, object: &Value, format: Format) -> String {
    match format {
        Format::Name => format!("{}\n", object_name(resource, object)),
        Format::Json => output::go_json_pretty(object),
        Format::Yaml => output::yaml(object),
        Format::Table { .. } => unreachable!("tables are printed by print_tables"),
    }
}

/// kubectl's `printGeneric`: several objects become a `v1` `List`.
fn print_list(items: &[(ResourceType, Value)], format: Format) -> String {
    if format == Format::Name {
        return items.iter().map(|(r, o)| format!("{}\n", object_name(r, o))).collect();
    }
    let list = json!({
        "apiVersion": "v1",
        "items": items.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>(),
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    });
    print_object(&items.first().map_or_else(empty_resource, |(r, _)| r.clone()), &list, format)
}

fn empty_resource() -> ResourceType {
    ResourceType {
        group: String::new(),
        version: "v1".into(),
        kind: "List".into(),
        plural: String::new(),
        singular: String::new(),
        namespaced: false,
        short_names: Vec::new(),
        categories: Vec::new(),
        verbs: Vec::new(),
        subresources: Vec::new(),
    }
}

/// `get -w`: the current state, then every change, until the server ends the stream.
async fn watch(
    session: &mut Session,
    args: &GetArgs,
    targets: &[Target],
    format: Format,
) -> Result<(), Failure> {
    let [target] = targets else {
        return Err(Failure::client(
            "watch is only supported on individual resources and resource collections - more \
             than 1 resource was found",
        ));
    };
    let accept = match format {
        Format::Table { .. } => ACCEPT_TABLE,
        _ => "application/json",
    };
    let first =
        fetch(session, args, target, accept).await.map_err(|e| Failure::from_kube(e, ""))?;
    let mut printer = TablePrinter::new(TableOptions {
        wide: matches!(format, Format::Table { wide: true }),
        no_headers: args.no_headers,
        with_namespace: args.all_namespaces && target.resource.namespaced,
        kind_prefix: None,
        show_labels: args.show_labels,
    });
    let mut writer = TabWriter::kubectl();
    let path = watch_path(session, args, target, &first);
    let info = Info { resource: target.resource.clone(), body: first };
    match format {
        Format::Table { .. } => emit(&writer.format(&printer.print(&info.body))),
        _ => {
            for (resource, item) in items_of(&info) {
                emit(&watched_object(&resource, &item, format));
            }
        }
    }
    let stream = session.stream(&path, accept).await.map_err(|e| Failure::from_kube(e, ""))?;
    let mut lines = stream.lines();
    while let Some(line) = lines.next().await {
        let line = line.map_err(|e| Failure::client(format!("reading the watch: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Value = serde_json::from_str(&line)
            .map_err(|e| Failure::client(format!("decoding a watch event: {e}")))?;
        match event["type"].as_str() {
            Some("ERROR") => {
                let status: kube::core::Status =
                    serde_json::from_value(event["object"].clone()).unwrap_or_default();
                return Err(Failure::verbatim(failure::status_message(&status, "")));
            }
            Some("BOOKMARK") => continue,
            _ => {}
        }
        let text = match format {
            Format::Table { .. } => writer.format(&printer.print(&event["object"])),
            _ => watched_object(&target.resource, &event["object"], format),
        };
        emit(&text);
    }
    Ok(())
}

/// The watch request following what `first` showed: from its resourceVersion (a list's, or
/// the single object's), a named object through the collection with a name selector, as
/// kubectl does.
fn watch_path(session: &Session, args: &GetArgs, target: &Target, first: &Value) -> String {
    let object_version = if first["kind"] == "Table" {
        &first["rows"][0]["object"]["metadata"]["resourceVersion"]
    } else {
        &first["metadata"]["resourceVersion"]
    };
    let (resource_version, field_selector) = match &target.name {
        Some(name) => (object_version, format!("metadata.name={name}")),
        None => {
            (&first["metadata"]["resourceVersion"], args.field_selector.clone().unwrap_or_default())
        }
    };
    let namespace =
        if args.all_namespaces { None } else { session.namespace_for(&target.resource) };
    client::with_query(
        &target.resource.path(namespace, None),
        &[
            ("labelSelector", args.selector.as_deref().unwrap_or("")),
            ("fieldSelector", &field_selector),
            ("resourceVersion", resource_version.as_str().unwrap_or("")),
            ("watch", "true"),
        ],
    )
}

fn watched_object(resource: &ResourceType, object: &Value, format: Format) -> String {
    match format {
        // kubectl separates watched YAML documents.
        Format::Yaml => format!("---\n{}", output::yaml(object)),
        _ => print_object(resource, object, format),
    }
}
