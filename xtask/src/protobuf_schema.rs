//! `cargo xtask gen-protobuf-schema`: writes `control-plane/src/apiserver/protobuf/schema.rs`,
//! the field tables the API server decodes Kubernetes protobuf request bodies with.
//!
//! Field numbers and wire kinds come from k8s-pb 0.7.0 (prost code generated from Kubernetes'
//! `generated.proto` files), fetched by cargo into its registry. prost's snake-case names lose
//! Kubernetes' JSON spelling (`pod_i_ps` is `podIPs`), so each field is matched to a property of
//! the same message in k8s-openapi's schemars schemas (Kubernetes 1.32, what the server
//! serves), comparing names lowercased without underscores, and its kind is checked against
//! the property's schema. Anything that does not match stops the generator; fields newer than
//! 1.32 are left out only when listed in [`NEWER_THAN_SERVED`]. Go structs embedded inline
//! (a Volume's VolumeSource) are matched against their parent's properties.
//!
//! Which numeric and boolean zeros mean unset cannot be read from either source (it is Go's
//! pointer-or-value choice); [`ZERO_MEANS_UNSET`] lists the ones kubectl's generators send,
//! and `cli/tests/kubectl_generators.rs` checks them by comparing each generator's object
//! sent as protobuf with the same object sent as JSON.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, ensure, Context, Result};
use k8s_openapi::api::{apps::v1 as apps, authentication::v1 as authentication};
use k8s_openapi::api::{autoscaling::v1 as autoscaling, coordination::v1 as coordination};
use k8s_openapi::api::{core::v1 as core, rbac::v1 as rbac};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value};

/// The k8s-pb release the tables are generated from.
const K8S_PB_VERSION: &str = "0.7.0";
/// Where the tables go, relative to the workspace root.
const OUTPUT: &str = "control-plane/src/apiserver/protobuf/schema.rs";

/// Fields k8s-pb has that Kubernetes 1.32 does not serve (`<definition>.<proto field>`): a
/// 1.32 client never sends them, so they have no JSON name to map to.
const NEWER_THAN_SERVED: &[&str] = &[
    "io.k8s.api.apps.v1.DeploymentStatus.terminating_replicas",
    "io.k8s.api.apps.v1.ReplicaSetStatus.terminating_replicas",
    "io.k8s.api.core.v1.ContainerStatus.stop_signal",
    "io.k8s.api.core.v1.Lifecycle.stop_signal",
    "io.k8s.api.core.v1.NodeSystemInfo.swap",
    "io.k8s.api.core.v1.PodCondition.observed_generation",
    "io.k8s.api.core.v1.PodStatus.observed_generation",
];

/// Numbers and booleans whose zero means unset (`<definition>.<JSON name>`): Go value fields
/// (not pointers) with `omitempty`. Go writes value fields on the wire even at zero, and the
/// wire cannot tell them from pointers set to zero (`replicas: 0`), so by default zeros are
/// kept. These are the ones kubectl 1.32's `create` generators leave at zero (seen in the
/// bodies `kubectl -v=10` prints); left out, the objects read as kube-apiserver prints them.
const ZERO_MEANS_UNSET: &[&str] = &[
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta.generation",
    "io.k8s.api.apps.v1.DeploymentSpec.minReadySeconds",
    "io.k8s.api.apps.v1.DeploymentSpec.paused",
    "io.k8s.api.apps.v1.DeploymentStatus.observedGeneration",
    "io.k8s.api.apps.v1.DeploymentStatus.replicas",
    "io.k8s.api.apps.v1.DeploymentStatus.updatedReplicas",
    "io.k8s.api.apps.v1.DeploymentStatus.readyReplicas",
    "io.k8s.api.apps.v1.DeploymentStatus.availableReplicas",
    "io.k8s.api.apps.v1.DeploymentStatus.unavailableReplicas",
    "io.k8s.api.core.v1.PodSpec.hostNetwork",
    "io.k8s.api.core.v1.PodSpec.hostPID",
    "io.k8s.api.core.v1.PodSpec.hostIPC",
    "io.k8s.api.core.v1.Container.stdin",
    "io.k8s.api.core.v1.Container.stdinOnce",
    "io.k8s.api.core.v1.Container.tty",
    "io.k8s.api.core.v1.ContainerPort.hostPort",
    "io.k8s.api.core.v1.ServiceSpec.healthCheckNodePort",
    "io.k8s.api.core.v1.ServiceSpec.publishNotReadyAddresses",
    "io.k8s.api.core.v1.ServicePort.nodePort",
];

/// A field a hand-written decoder relies on: tag, prost name, prost kind.
type SpecialField = (u32, &'static str, &'static str);

/// Messages decoded by hand-written code, by OpenAPI definition, with their `Kind` in the
/// tables and the fields that code relies on.
const SPECIAL: &[(&str, &str, &[SpecialField])] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
        "Time",
        &[(1, "seconds", "int64"), (2, "nanos", "int32")],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
        "MicroTime",
        &[(1, "seconds", "int64"), (2, "nanos", "int32")],
    ),
    ("io.k8s.apimachinery.pkg.api.resource.Quantity", "Quantity", &[(1, "string", "string")]),
    (
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
        "IntOrString",
        &[(1, "type", "int64"), (2, "int_val", "int32"), (3, "str_val", "string")],
    ),
    ("io.k8s.apimachinery.pkg.runtime.RawExtension", "RawExtension", &[(1, "raw", "bytes")]),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1", "FieldsV1", &[(1, "raw", "bytes")]),
];

/// A kind the API server accepts as a protobuf body: its `apiVersion` (`None`: any group
/// version, as for `DeleteOptions`), `kind`, and definition.
struct RootKind {
    api_version: Option<String>,
    kind: String,
    definition: String,
}

fn root<T: k8s_openapi::Resource + JsonSchema>(generator: &mut SchemaGenerator) -> RootKind {
    generator.subschema_for::<T>();
    RootKind {
        api_version: Some(T::API_VERSION.to_string()),
        kind: T::KIND.to_string(),
        definition: T::schema_name().into_owned(),
    }
}

/// Every kind the API server serves, plus the bodies of its subresources and of DELETE.
fn roots(generator: &mut SchemaGenerator) -> Vec<RootKind> {
    let mut roots = vec![
        root::<core::Namespace>(generator),
        root::<core::Pod>(generator),
        root::<core::Node>(generator),
        root::<core::Service>(generator),
        root::<core::Endpoints>(generator),
        root::<core::Event>(generator),
        root::<core::ServiceAccount>(generator),
        root::<core::ConfigMap>(generator),
        root::<core::Secret>(generator),
        root::<core::ResourceQuota>(generator),
        root::<core::LimitRange>(generator),
        root::<core::Binding>(generator),
        root::<apps::Deployment>(generator),
        root::<apps::ReplicaSet>(generator),
        root::<apps::DaemonSet>(generator),
        root::<apps::ControllerRevision>(generator),
        root::<coordination::Lease>(generator),
        root::<rbac::Role>(generator),
        root::<rbac::ClusterRole>(generator),
        root::<rbac::RoleBinding>(generator),
        root::<rbac::ClusterRoleBinding>(generator),
        root::<autoscaling::Scale>(generator),
        root::<authentication::TokenRequest>(generator),
    ];
    generator.subschema_for::<meta::DeleteOptions>();
    roots.push(RootKind {
        api_version: None,
        kind: "DeleteOptions".into(),
        definition: meta::DeleteOptions::schema_name().into_owned(),
    });
    roots
}

/// `cargo xtask gen-protobuf-schema [--k8s-pb-src DIR]`.
pub fn generate(root: &Path, args: &[String]) -> Result<()> {
    let source = match args {
        [] => fetch_k8s_pb()?,
        [flag, dir] if flag == "--k8s-pb-src" => PathBuf::from(dir),
        _ => bail!("usage: cargo xtask gen-protobuf-schema [--k8s-pb-src <k8s-pb>/src]"),
    };
    let messages = parse_sources(&source)?;
    let mut generator = SchemaSettings::openapi3().into_generator();
    let roots = roots(&mut generator);
    let definitions = generator.take_definitions(true);
    let tables = Tables::build(&messages, &definitions, &roots)?;
    let output = root.join(OUTPUT);
    std::fs::write(&output, tables.render(&roots))
        .with_context(|| format!("cannot write {}", output.display()))?;
    let status = Command::new("rustfmt")
        .args(["--edition", "2021"])
        .arg(&output)
        .status()
        .context("cannot run rustfmt")?;
    ensure!(status.success(), "rustfmt failed on {}", output.display());
    eprintln!(
        "xtask: wrote {} ({} messages, {} kinds)",
        output.display(),
        tables.messages.len(),
        roots.len()
    );
    Ok(())
}

/// k8s-pb's source directory, fetched into cargo's registry through a throwaway manifest
/// (`cargo metadata` downloads and unpacks it without building anything).
fn fetch_k8s_pb() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("skiff-k8s-pb-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"fetch-k8s-pb\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nk8s-pb = \"={K8S_PB_VERSION}\"\n\n[workspace]\n"
        ),
    )?;
    std::fs::write(dir.join("src/lib.rs"), "")?;
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .output()
        .context("cannot run cargo metadata")?;
    let _ = std::fs::remove_dir_all(&dir);
    ensure!(
        output.status.success(),
        "cargo metadata failed fetching k8s-pb:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout)?;
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "k8s-pb" && p["version"] == K8S_PB_VERSION)
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or_else(|| anyhow!("cargo metadata does not list k8s-pb {K8S_PB_VERSION}"))?;
    Ok(Path::new(manifest).parent().expect("a manifest has a directory").join("src"))
}

/// A prost field: its tag, snake-case name, and what it holds.
#[derive(Clone, Debug)]
struct ProtoField {
    tag: u32,
    name: String,
    repeated: bool,
    value: ProtoValue,
    /// `btree_map = "string, <value>"`.
    map: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum ProtoValue {
    /// `string`, `bool`, `int32`, `int64`, `double`, `bytes`.
    Scalar(String),
    /// A message, by module path and name (`["api", "core", "v1", "PodSpec"]`).
    Message(Vec<String>),
}

/// Every prost message in the sources, by module path and name.
type ProtoMessages = BTreeMap<Vec<String>, Vec<ProtoField>>;

fn parse_sources(source: &Path) -> Result<ProtoMessages> {
    ensure!(source.join("lib.rs").exists(), "{} is not k8s-pb's src directory", source.display());
    let mut files = Vec::new();
    collect_files(source, &mut files)?;
    let mut messages = ProtoMessages::new();
    for file in files {
        let relative = file.parent().expect("a file has a directory").strip_prefix(source)?;
        let module: Vec<String> =
            relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
        let text = std::fs::read_to_string(&file)?;
        parse_module(&module, &text, &mut messages)
            .with_context(|| format!("parsing {}", file.display()))?;
    }
    Ok(messages)
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, files)?;
        } else if path.file_name().is_some_and(|name| name == "mod.rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// Reads `pub struct X {` blocks and their `#[prost(..)] pub name: Type,` fields.
fn parse_module(module: &[String], text: &str, messages: &mut ProtoMessages) -> Result<()> {
    let mut current: Option<Vec<String>> = None;
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("pub struct ").and_then(|l| l.strip_suffix(" {")) {
            let path = [module, &[name.to_string()]].concat();
            messages.insert(path.clone(), Vec::new());
            current = Some(path);
        } else if line == "}" {
            current = None;
        } else if let Some(attribute) = line.strip_prefix("#[prost(") {
            let path = current.clone().ok_or_else(|| anyhow!("field outside a struct: {line}"))?;
            let mut declaration = String::new();
            // A long type wraps over several lines; it ends at a comma outside `<..>`.
            for next in lines.by_ref() {
                declaration.push_str(next);
                let opened = declaration.matches('<').count();
                if next.ends_with(',') && opened == declaration.matches('>').count() {
                    break;
                }
            }
            let attribute = attribute.strip_suffix(")]").unwrap_or(attribute);
            let field = parse_field(module, attribute, &declaration)
                .with_context(|| format!("in {}: {line} {declaration}", path.join("::")))?;
            messages.get_mut(&path).expect("inserted above").push(field);
        }
    }
    Ok(())
}

fn parse_field(module: &[String], attribute: &str, declaration: &str) -> Result<ProtoField> {
    let (name, rust_type) = declaration
        .strip_prefix("pub ")
        .and_then(|d| d.split_once(':'))
        .ok_or_else(|| anyhow!("not a field declaration"))?;
    let name = name.trim().trim_start_matches("r#").to_string();
    let tag = attribute
        .split("tag = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or_else(|| anyhow!("no tag"))?
        .parse()?;
    let message = || resolve(module, rust_type);
    let (value, repeated, map) = if let Some(rest) = attribute.strip_prefix("btree_map = \"") {
        let value = rest.split('"').next().unwrap_or("");
        let value = match value.strip_prefix("string, ") {
            Some("message") => ProtoValue::Message(message()?),
            Some(scalar @ ("string" | "bytes")) => ProtoValue::Scalar(scalar.to_string()),
            _ => bail!("unsupported map {value}"),
        };
        (value, false, true)
    } else {
        let mut parts = attribute.split(',').map(str::trim);
        let kind = parts.next().unwrap_or("");
        let repeated = match parts.next() {
            Some("repeated") => true,
            Some("optional") => false,
            other => bail!("unsupported label {other:?}"),
        };
        let value = match kind {
            "message" => ProtoValue::Message(message()?),
            "bytes = \"vec\"" => ProtoValue::Scalar("bytes".into()),
            "string" | "bool" | "int32" | "int64" | "double" => ProtoValue::Scalar(kind.into()),
            _ => bail!("unsupported kind {kind}"),
        };
        (value, repeated, false)
    };
    Ok(ProtoField { tag, name, repeated, value, map })
}

/// The message a field's Rust type names, as a module path and name: the one path in the
/// type that is not a `::std`-style absolute path, with `super::` resolved.
fn resolve(module: &[String], rust_type: &str) -> Result<Vec<String>> {
    let named: Vec<&str> = rust_type
        .split(|c: char| c == '<' || c == '>' || c == ',' || c.is_whitespace())
        .filter(|token| !token.is_empty() && !token.starts_with("::"))
        .collect();
    let [path] = named[..] else { bail!("cannot find the message type in {rust_type}") };
    let mut resolved = module.to_vec();
    let mut segments = path.split("::").peekable();
    while segments.peek() == Some(&"super") {
        segments.next();
        resolved.pop().ok_or_else(|| anyhow!("too many `super`s in {path}"))?;
    }
    resolved.extend(segments.map(str::to_string));
    Ok(resolved)
}

/// What a message is called in the OpenAPI definitions: `io.k8s.` plus its module path, with
/// the name's case taken from the definitions (prost writes `AWS` as `Aws`).
fn definition_of(path: &[String], definitions: &Map<String, Value>) -> Result<String> {
    let wanted = format!("io.k8s.{}", path.join("."));
    definitions
        .keys()
        .find(|name| name.eq_ignore_ascii_case(&wanted))
        .cloned()
        .ok_or_else(|| anyhow!("no OpenAPI definition matches {wanted}"))
}

fn normalize(name: &str) -> String {
    name.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect()
}

/// One generated field: tag, JSON name, kind (a Rust expression) and shape.
struct TableField {
    tag: u32,
    json: String,
    kind: String,
    shape: &'static str,
    /// The table of an inline message.
    inline: Option<String>,
}

struct TableMessage {
    definition: String,
    fields: Vec<TableField>,
}

struct Tables {
    /// By definition name, in a stable order.
    messages: BTreeMap<String, TableMessage>,
}

/// A message to tabulate: its prost path, the definition whose properties name its fields,
/// and its table's name (the definition, or for an inline message one made from its path).
struct Work {
    path: Vec<String>,
    properties_of: String,
    table: String,
}

impl Work {
    fn of(path: &[String], definition: &str) -> Work {
        Work { path: path.to_vec(), properties_of: definition.into(), table: definition.into() }
    }
}

/// Go structs embedded with `json:",inline"` (a Volume's VolumeSource, a Probe's
/// ProbeHandler) are their own messages in protobuf, but their fields are the parent's JSON
/// properties. A singular message field with no property of its own is taken as one when
/// some of its message's fields are properties of the parent; the rest must then map too.
fn inline(
    field: &ProtoField,
    parent: &Work,
    messages: &ProtoMessages,
    definitions: &Map<String, Value>,
) -> Option<Work> {
    let ProtoValue::Message(path) = &field.value else { return None };
    if field.repeated || field.map {
        return None;
    }
    let schema = &definitions[&parent.properties_of];
    let fields = messages.get(path)?;
    let maps = |f: &ProtoField| matches!(map_field(f, schema, definitions), Ok(Some(_)));
    fields.iter().any(maps).then(|| Work {
        path: path.clone(),
        properties_of: parent.properties_of.clone(),
        table: format!("io.k8s.{}", path.join(".")),
    })
}

impl Tables {
    fn build(
        messages: &ProtoMessages,
        definitions: &Map<String, Value>,
        roots: &[RootKind],
    ) -> Result<Tables> {
        let by_definition: BTreeMap<String, &Vec<String>> = messages
            .keys()
            .filter_map(|path| Some((definition_of(path, definitions).ok()?, path)))
            .collect();
        let mut queue = VecDeque::new();
        for root in roots {
            let path = by_definition
                .get(&root.definition)
                .ok_or_else(|| anyhow!("k8s-pb has no message for {}", root.definition))?;
            queue.push_back(Work::of(path, &root.definition));
        }
        let mut tables = Tables { messages: BTreeMap::new() };
        let mut newer_used = BTreeSet::new();
        let mut unmapped = Vec::new();
        let mut zero_used = BTreeSet::new();
        while let Some(work) = queue.pop_front() {
            if tables.messages.contains_key(&work.table) {
                continue;
            }
            let schema = &definitions[&work.properties_of];
            let mut fields = Vec::new();
            for field in &messages[&work.path] {
                let key = format!("{}.{}", work.table, field.name);
                let mapped = map_field(field, schema, definitions).with_context(|| key.clone())?;
                let Some((table_field, referenced)) = mapped else {
                    if NEWER_THAN_SERVED.contains(&key.as_str()) {
                        newer_used.insert(key);
                    } else if let Some(inline) = inline(field, &work, messages, definitions) {
                        fields.push(TableField {
                            tag: field.tag,
                            json: field.name.clone(),
                            kind: format!("Msg(&{})", static_name(&inline.table)),
                            shape: "Inline",
                            inline: Some(inline.table.clone()),
                        });
                        queue.push_back(inline);
                    } else {
                        unmapped.push(key);
                    }
                    continue;
                };
                let mut table_field = table_field;
                let json_key = format!("{}.{}", work.properties_of, table_field.json);
                if ZERO_MEANS_UNSET.contains(&json_key.as_str()) {
                    ensure!(table_field.shape == "Pointer", "{json_key} is not a number or bool");
                    table_field.shape = "Optional";
                    zero_used.insert(json_key);
                }
                if let Some(referenced) = referenced {
                    if special(&referenced).is_some() {
                        check_special(&referenced, messages, &by_definition)?;
                    } else {
                        let path = by_definition
                            .get(&referenced)
                            .ok_or_else(|| anyhow!("k8s-pb has no message for {referenced}"))?;
                        queue.push_back(Work::of(path, &referenced));
                    }
                }
                fields.push(table_field);
            }
            fields.sort_by_key(|f| f.tag);
            let table = TableMessage { definition: work.table.clone(), fields };
            tables.messages.insert(work.table, table);
        }
        ensure!(
            unmapped.is_empty(),
            "no JSON property matches these protobuf fields; list the ones newer than \
             Kubernetes 1.32 in NEWER_THAN_SERVED:\n  {}",
            unmapped.join("\n  ")
        );
        if let Some(stale) = NEWER_THAN_SERVED.iter().find(|k| !newer_used.contains(**k)) {
            bail!("NEWER_THAN_SERVED lists {stale}, which no longer needs leaving out");
        }
        if let Some(stale) = ZERO_MEANS_UNSET.iter().find(|k| !zero_used.contains(**k)) {
            bail!("ZERO_MEANS_UNSET lists {stale}, which is not a field of a served kind");
        }
        for (name, table) in &tables.messages {
            if let Some(schema) = definitions.get(name) {
                let mut covered = BTreeSet::new();
                tables.json_names(table, &mut covered);
                check_properties_covered(name, schema, &covered)?;
            }
        }
        Ok(tables)
    }

    /// The JSON properties a message writes, its inline messages' included.
    fn json_names(&self, table: &TableMessage, names: &mut BTreeSet<String>) {
        for field in &table.fields {
            match &field.inline {
                Some(inline) => self.json_names(&self.messages[inline], names),
                None => {
                    names.insert(field.json.clone());
                }
            }
        }
    }

    fn render(&self, roots: &[RootKind]) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "//! Field tables of the Kubernetes protobuf messages the API server decodes, with \
             Kubernetes'\n//! JSON names. Generated by `cargo xtask gen-protobuf-schema` from \
             k8s-pb {K8S_PB_VERSION} and\n//! k8s-openapi's 1.32 schemas: do not edit.\n\n\
             use super::schema_types::{{field, Kind::*, Message, Root, Shape::*}};\n\n"
        ));
        out.push_str("/// The kinds a protobuf body may carry.\npub static ROOTS: &[Root] = &[\n");
        for root in roots {
            let api_version = match &root.api_version {
                Some(v) => format!("Some({v:?})"),
                None => "None".into(),
            };
            let _ = writeln!(
                out,
                "    Root {{ api_version: {api_version}, kind: {:?}, message: &{} }},",
                root.kind,
                static_name(&root.definition)
            );
        }
        out.push_str("];\n");
        for message in self.messages.values() {
            let _ = write!(
                out,
                "\npub static {}: Message = Message {{\n    name: {:?},\n    fields: &[\n",
                static_name(&message.definition),
                message.definition
            );
            for f in &message.fields {
                let _ = writeln!(
                    out,
                    "        field({}, {:?}, {}, {}),",
                    f.tag, f.json, f.kind, f.shape
                );
            }
            out.push_str("    ],\n};\n");
        }
        out
    }
}

/// `io.k8s.api.core.v1.PodSpec` → `CORE_V1_POD_SPEC`; meta types → `META_V1_…`.
fn static_name(definition: &str) -> String {
    let parts: Vec<&str> = definition.split('.').collect();
    let (name, package) = parts.split_last().expect("a definition has a name");
    let group_version = &package[package.len().saturating_sub(2)..];
    let mut out = group_version.join("_").to_uppercase();
    let chars: Vec<char> = name.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        let previous = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1);
        let starts_word = c.is_uppercase()
            && (i == 0
                || previous.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit())
                || (previous.is_some_and(char::is_uppercase)
                    && next.is_some_and(|n| n.is_lowercase())));
        if starts_word {
            out.push('_');
        }
        out.extend(c.to_uppercase());
    }
    out
}

fn special(definition: &str) -> Option<&'static str> {
    SPECIAL.iter().find(|(name, _, _)| *name == definition).map(|(_, kind, _)| *kind)
}

/// Checks that a hand-decoded message still has the fields its decoder relies on.
fn check_special(
    definition: &str,
    messages: &ProtoMessages,
    by_definition: &BTreeMap<String, &Vec<String>>,
) -> Result<()> {
    let (_, _, expected) =
        SPECIAL.iter().find(|(name, _, _)| *name == definition).expect("special");
    let fields = &messages[*by_definition
        .get(definition)
        .ok_or_else(|| anyhow!("k8s-pb has no message for {definition}"))?];
    let actual: Vec<(u32, &str, String)> = fields
        .iter()
        .map(|f| {
            let kind = match &f.value {
                ProtoValue::Scalar(s) if !f.repeated && !f.map => s.clone(),
                other => format!("{other:?}"),
            };
            (f.tag, f.name.as_str(), kind)
        })
        .collect();
    let expected: Vec<(u32, &str, String)> =
        expected.iter().map(|(t, n, k)| (*t, *n, k.to_string())).collect();
    ensure!(actual == expected, "{definition} changed: {actual:?}, decoder expects {expected:?}");
    Ok(())
}

/// Every property of a definition must come from some proto field, but for the TypeMeta
/// fields, which protobuf carries in the envelope.
fn check_properties_covered(
    definition: &str,
    schema: &Value,
    covered: &BTreeSet<String>,
) -> Result<()> {
    let properties = schema["properties"].as_object().into_iter().flatten();
    for (property, _) in properties {
        ensure!(
            covered.contains(property) || property == "apiVersion" || property == "kind",
            "{definition}.{property} has no protobuf field"
        );
    }
    Ok(())
}

/// What a property's schema says about its JSON type.
#[derive(Debug, PartialEq)]
enum JsonType {
    Ref(String),
    Scalar(&'static str),
    Array(Box<JsonType>),
    Map(Box<JsonType>),
}

fn json_type(schema: &Value) -> Result<JsonType> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return Ok(JsonType::Ref(name.to_string()));
    }
    if let Some([inner]) = schema["allOf"].as_array().map(Vec::as_slice) {
        return json_type(inner);
    }
    Ok(match (schema["type"].as_str(), schema["format"].as_str()) {
        (Some("string"), Some("byte")) => JsonType::Scalar("bytes"),
        (Some("string"), _) => JsonType::Scalar("string"),
        (Some("boolean"), _) => JsonType::Scalar("bool"),
        (Some("integer"), Some("int32")) => JsonType::Scalar("int32"),
        (Some("integer"), _) => JsonType::Scalar("int64"),
        (Some("number"), _) => JsonType::Scalar("double"),
        (Some("array"), _) => JsonType::Array(Box::new(json_type(&schema["items"])?)),
        (Some("object"), _) if schema["additionalProperties"].is_object() => {
            JsonType::Map(Box::new(json_type(&schema["additionalProperties"])?))
        }
        _ => bail!("unsupported property schema {schema}"),
    })
}

/// Maps one proto field to its table entry and the definition it references (if a message);
/// `None` when the definition has no such property.
fn map_field(
    field: &ProtoField,
    schema: &Value,
    definitions: &Map<String, Value>,
) -> Result<Option<(TableField, Option<String>)>> {
    let properties = schema["properties"].as_object().ok_or_else(|| anyhow!("no properties"))?;
    let wanted = normalize(&field.name);
    let matches: Vec<&String> = properties.keys().filter(|p| normalize(p) == wanted).collect();
    let json = match matches[..] {
        [] => return Ok(None),
        [one] => one.clone(),
        _ => bail!("several properties match: {matches:?}"),
    };
    let required = schema["required"]
        .as_array()
        .is_some_and(|r| r.iter().any(|name| name.as_str() == Some(json.as_str())));
    let property_type = json_type(&properties[&json]).with_context(|| json.clone())?;
    let element_type = match property_type {
        JsonType::Array(inner) if field.repeated => *inner,
        JsonType::Map(inner) if field.map => *inner,
        other if !field.repeated && !field.map => other,
        other => bail!("{json}: protobuf {field:?} against JSON {other:?}"),
    };
    let (kind, referenced) = match (&field.value, element_type) {
        (ProtoValue::Scalar(proto), JsonType::Scalar(json_scalar)) => {
            let compatible = proto == json_scalar || (proto == "int32" && json_scalar == "int64");
            ensure!(compatible, "{json}: protobuf {proto} against JSON {json_scalar}");
            (scalar_kind(proto)?.to_string(), None)
        }
        (ProtoValue::Message(path), JsonType::Ref(definition)) => {
            let proto_definition = definition_of(path, definitions)?;
            ensure!(
                proto_definition == definition,
                "{json}: protobuf {proto_definition} against JSON {definition}"
            );
            let kind = match special(&definition) {
                Some(special) => special.to_string(),
                None => format!("Msg(&{})", static_name(&definition)),
            };
            (kind, Some(definition))
        }
        (value, other) => bail!("{json}: protobuf {value:?} against JSON {other:?}"),
    };
    let shape = match (field.repeated, field.map, required, &field.value) {
        (true, _, _, _) => "Repeated",
        (_, true, _, _) => "Map",
        (_, _, true, _) => "Required",
        (_, _, _, ProtoValue::Scalar(s)) if s != "string" && s != "bytes" => "Pointer",
        _ => "Optional",
    };
    Ok(Some((TableField { tag: field.tag, json, kind, shape, inline: None }, referenced)))
}

fn scalar_kind(proto: &str) -> Result<&'static str> {
    Ok(match proto {
        "string" => "Str",
        "bool" => "Bool",
        "int32" => "Int32",
        "int64" => "Int64",
        "bytes" => "Bytes",
        // No served kind has one; the decoder would need a fixed64 reader.
        other => bail!("no decoder for {other} fields"),
    })
}
