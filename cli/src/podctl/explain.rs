//! `explain TYPE[.FIELD...]` from the server's OpenAPI v3 documents, rendered as kubectl
//! 1.32's plaintext template renders it (KIND/VERSION, FIELD, DESCRIPTION, FIELDS; word
//! wrapping by go-wordwrap's rules; `--recursive`).

use std::collections::HashSet;

use http::Method;
use serde_json::Value;

use super::args::ExplainArgs;
use super::client::Session;
use super::discovery::ResourceType;
use super::failure::Failure;

pub async fn run(session: &mut Session, args: &ExplainArgs) -> Result<(), Failure> {
    let (typed, fields) = match args.path.split_once('.') {
        Some((typed, fields)) => (typed, fields.split('.').map(str::to_string).collect()),
        None => (args.path.as_str(), Vec::new()),
    };
    let resource = session.resolve_one(typed).await?;
    let index = session
        .send_json(Method::GET, "/openapi/v3", None, "application/json", Vec::new())
        .await
        .map_err(|e| Failure::from_kube(e, ""))?;
    let key = if resource.group.is_empty() {
        format!("api/{}", resource.version)
    } else {
        format!("apis/{}/{}", resource.group, resource.version)
    };
    let url = index["paths"][&key]["serverRelativeURL"]
        .as_str()
        .map_or_else(|| format!("/openapi/v3/{key}"), str::to_string);
    let document = session
        .send_json(Method::GET, &url, None, "application/json", Vec::new())
        .await
        .map_err(|e| Failure::from_kube(e, ""))?;
    let (text, error) = render(&document, &resource, &fields, args.recursive);
    super::emit(&text);
    match error {
        Some(error) => Err(Failure::client(error)),
        None => Ok(()),
    }
}

/// The explanation of `fields` of `resource` in one group/version document (pure): what is
/// printed, and the error that ends it (kubectl prints the KIND/VERSION header before it
/// notices a missing field).
pub fn render(
    document: &Value,
    resource: &ResourceType,
    fields: &[String],
    recursive: bool,
) -> (String, Option<String>) {
    let Some(gvk) = find_gvk(document, resource) else {
        let error = format!(
            "GVR ({}/{}, Resource={}) not found in OpenAPI schema",
            resource.group, resource.version, resource.plural
        );
        return (String::new(), Some(error));
    };
    let mut out = String::new();
    if let Some(group) = gvk["group"].as_str().filter(|g| !g.is_empty()) {
        out.push_str(&format!("GROUP:      {group}\n"));
    }
    out.push_str(&format!("KIND:       {}\n", gvk["kind"].as_str().unwrap_or("")));
    out.push_str(&format!("VERSION:    {}\n\n", gvk["version"].as_str().unwrap_or("")));
    let schemas = document["components"]["schemas"].as_object();
    let schema = schemas.into_iter().flatten().map(|(_, s)| s).find(|s| {
        s["x-kubernetes-group-version-kind"].as_array().is_some_and(|list| list.contains(&gvk))
    });
    let Some(schema) = schema else {
        return (out, Some(format!("GVK {gvk} not found in OpenAPI schema")));
    };
    let explainer = Explainer { document, recursive };
    let body = explainer.output(schema, &HashSet::new(), fields);
    if body.is_empty() {
        let last = fields.last().map_or("", String::as_str);
        return (out, Some(format!("field \"{last}\" does not exist")));
    }
    out.push_str(&body);
    out.push('\n');
    (out, None)
}

/// The GVK on the resource's path operations (one object there, a list on schemas).
fn find_gvk(document: &Value, resource: &ResourceType) -> Option<Value> {
    let prefix = if resource.group.is_empty() {
        "/api".to_string()
    } else {
        format!("/apis/{}", resource.group)
    };
    let (version, plural) = (&resource.version, &resource.plural);
    let paths = [
        format!("{prefix}/{version}/{plural}"),
        format!("{prefix}/{version}/{plural}/{{name}}"),
        format!("{prefix}/{version}/namespaces/{{namespace}}/{plural}"),
        format!("{prefix}/{version}/namespaces/{{namespace}}/{plural}/{{name}}"),
    ];
    for path in &paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            let gvk = &document["paths"][path][method]["x-kubernetes-group-version-kind"];
            if gvk.is_object() {
                return Some(gvk.clone());
            }
        }
    }
    None
}

struct Explainer<'a> {
    document: &'a Value,
    recursive: bool,
}

fn is_map(value: &Value) -> bool {
    value.is_object()
}

impl Explainer<'_> {
    fn resolve(&self, reference: &str) -> Option<&Value> {
        let fragment = reference.strip_prefix('#')?;
        let mut current = self.document;
        for part in fragment.split('/').filter(|p| !p.is_empty()) {
            current = current.get(part).filter(|v| v.is_object())?;
        }
        Some(current)
    }

    fn reference(schema: &Value) -> &str {
        schema["$ref"].as_str().unwrap_or("")
    }

    fn resolved<'b>(&'b self, schema: &'b Value) -> &'b Value {
        self.resolve(Self::reference(schema)).unwrap_or(schema)
    }

    /// The template's `output`: follows the field path, then prints the description and
    /// the field list of what it reached.
    fn output(&self, schema: &Value, history: &HashSet<String>, path: &[String]) -> String {
        let reference = Self::reference(schema);
        let mut next_history = history.clone();
        next_history.insert(reference.to_string());
        let resolved = self.resolved(schema);
        if path.is_empty() {
            let description = self.description(resolved);
            let description = if description.is_empty() { "<empty>".into() } else { description };
            let mut out = format!("DESCRIPTION:\n{}\n", indent(4, &wrap(&description, 76)));
            let docs = external_docs(resolved, 0);
            if !docs.is_empty() {
                out.push('\n');
                out.push_str(&docs);
            }
            let fields = self.field_list(resolved, 1, &HashSet::new());
            if !fields.is_empty() {
                out.push_str("FIELDS:\n");
                out.push_str(&fields);
            }
            return out;
        }
        if !reference.is_empty() && history.contains(reference) {
            return String::new();
        }
        if let Some(sub) = resolved["properties"].get(&path[0]) {
            let mut out = String::new();
            if path.len() == 1 {
                let enumeration = extract_enum(sub, true, 0);
                out.push_str(&format!(
                    "FIELD: {} <{}>\n{enumeration}\n\n",
                    path[0],
                    self.type_guess(sub)
                ));
            }
            out.push_str(&self.output(sub, &HashSet::new(), &path[1..]));
            return out;
        }
        if is_map(&resolved["items"]) {
            return self.output(&resolved["items"], &next_history, path);
        }
        if is_map(&resolved["additionalProperties"]) {
            return self.output(&resolved["additionalProperties"], &next_history, path);
        }
        for sub in resolved["allOf"].as_array().into_iter().flatten() {
            let out = self.output(sub, &next_history, path);
            if !out.is_empty() {
                return out;
            }
        }
        String::new()
    }

    fn description(&self, schema: &Value) -> String {
        let resolved = self.resolved(schema);
        let mut out = String::new();
        if let Some(text) = resolved["description"].as_str().filter(|t| !t.is_empty()) {
            out.push_str(text);
            out.push('\n');
        }
        for sub in resolved["allOf"].as_array().into_iter().flatten() {
            out.push_str(&self.description(sub));
        }
        if is_map(&resolved["items"]) {
            out.push_str(&self.description(&resolved["items"]));
        }
        if is_map(&resolved["additionalProperties"]) {
            out.push_str(&self.description(&resolved["additionalProperties"]));
        }
        out
    }

    fn field_list(&self, schema: &Value, level: usize, history: &HashSet<String>) -> String {
        let reference = Self::reference(schema);
        if !reference.is_empty() && history.contains(reference) {
            return String::new();
        }
        let mut next_history = history.clone();
        next_history.insert(reference.to_string());
        let resolved = self.resolved(schema);
        let mut out = String::new();
        if let Some(properties) = resolved["properties"].as_object() {
            for (name, property) in properties {
                out.push_str(&self.field_detail(name, resolved, level));
                if self.recursive {
                    out.push_str(&self.field_list(property, level + 1, &next_history));
                }
            }
        }
        for sub in resolved["allOf"].as_array().into_iter().flatten() {
            out.push_str(&self.field_list(sub, level, &next_history));
        }
        if is_map(&resolved["items"]) {
            out.push_str(&self.field_list(&resolved["items"], level, &next_history));
        }
        if is_map(&resolved["additionalProperties"]) {
            out.push_str(&self.field_list(&resolved["additionalProperties"], level, &next_history));
        }
        out
    }

    fn field_detail(&self, name: &str, schema: &Value, level: usize) -> String {
        let indent_amount = level * 2;
        let field = &schema["properties"][name];
        let mut out = format!("{}\t<{}>", indent(indent_amount, name), self.type_guess(field));
        let required = schema["required"].as_array().is_some_and(|r| r.iter().any(|n| n == name));
        if required {
            out.push_str(" -required-");
        }
        out.push_str(&extract_enum(field, false, indent_amount));
        out.push('\n');
        if !self.recursive {
            let description = field["description"].as_str().unwrap_or("<no description>");
            let width = 78usize.saturating_sub(indent_amount);
            out.push_str(&indent(indent_amount + 2, &wrap(description, width)));
            out.push('\n');
            out.push_str(&external_docs(field, indent_amount + 2));
            out.push('\n');
        }
        out
    }

    fn type_guess(&self, schema: &Value) -> String {
        if is_map(&schema["items"]) {
            return format!("[]{}", self.type_guess(&schema["items"]));
        }
        if is_map(&schema["additionalProperties"]) {
            return format!("map[string]{}", self.type_guess(&schema["additionalProperties"]));
        }
        let all_of = schema["allOf"].as_array();
        if let Some([only]) = all_of.map(Vec::as_slice) {
            if schema.get("properties").is_none() {
                return self.type_guess(only);
            }
        }
        if let Some(reference) = schema["$ref"].as_str() {
            let target = self.resolve(reference);
            let target_type = target.and_then(|t| t["type"].as_str()).unwrap_or("");
            if target_type.is_empty() || target_type == "object" {
                let name = reference.rsplit('/').next().unwrap_or("");
                let short = name.rsplit('.').next().unwrap_or("");
                return if short.is_empty() { "Object".into() } else { short.into() };
            }
            return target_type.into();
        }
        match schema["type"].as_str() {
            Some("object") | None | Some("") => "Object".into(),
            Some(other) => other.into(),
        }
    }
}

fn external_docs(schema: &Value, indent_amount: usize) -> String {
    let docs = &schema["externalDocs"];
    if !docs.is_object() {
        return String::new();
    }
    let mut out = format!("{}\n", indent(indent_amount, "EXTERNAL DOCS:"));
    if let Some(description) = docs["description"].as_str().filter(|d| !d.is_empty()) {
        let width = 76usize.saturating_sub(indent_amount);
        out.push_str(&indent(indent_amount + 4, &wrap(description, width)));
        out.push('\n');
    }
    if let Some(url) = docs["url"].as_str().filter(|u| !u.is_empty()) {
        out.push_str(&indent(indent_amount + 4, &format!("URL: {url}")));
        out.push('\n');
    }
    out
}

/// The template's `extractEnum`: `ENUM:` lines in the long view, a short `enum:` line (at
/// most four values) in field lists.
fn extract_enum(schema: &Value, long_view: bool, indent_amount: usize) -> String {
    let Some(values) = schema["enum"].as_array().filter(|v| !v.is_empty()) else {
        return String::new();
    };
    let limit = if long_view { usize::MAX } else { 4 };
    let mut out = if long_view {
        "ENUM:".to_string()
    } else {
        format!("\n{}enum: ", " ".repeat(indent_amount))
    };
    for (index, value) in values.iter().enumerate() {
        if index >= limit {
            out.push_str(", ....");
            break;
        }
        if long_view {
            out.push_str("\n    ");
        } else if index > 0 {
            out.push_str(", ");
        }
        match value {
            Value::String(text) if text.is_empty() => out.push_str("\"\""),
            Value::String(text) => out.push_str(text),
            other => out.push_str(&other.to_string()),
        }
    }
    out
}

/// The template's `indent`: a pad before the text and after every newline.
fn indent(amount: usize, text: &str) -> String {
    let pad = " ".repeat(amount);
    format!("{pad}{}", text.replace('\n', &format!("\n{pad}")))
}

/// go-wordwrap's `WrapString`: breaks at whitespace so lines stay within `limit` runes where
/// possible; existing newlines are kept; words longer than the limit are not split.
fn wrap(text: &str, limit: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut current, mut word_len, mut space_len) = (0usize, 0usize, 0usize);
    let (mut word, mut space) = (String::new(), String::new());
    for c in text.chars() {
        if c == '\n' {
            if word.is_empty() {
                if current + space_len <= limit {
                    out.push_str(&space);
                }
            } else {
                out.push_str(&space);
                out.push_str(&word);
                word.clear();
                word_len = 0;
            }
            space.clear();
            space_len = 0;
            out.push(c);
            current = 0;
        } else if c.is_whitespace() && c != '\u{a0}' {
            if space.is_empty() || !word.is_empty() {
                current += space_len + word_len;
                out.push_str(&space);
                out.push_str(&word);
                space.clear();
                space_len = 0;
                word.clear();
                word_len = 0;
            }
            space.push(c);
            space_len += 1;
        } else {
            word.push(c);
            word_len += 1;
            if current + space_len + word_len > limit && word_len < limit {
                out.push('\n');
                current = 0;
                space.clear();
                space_len = 0;
            }
        }
    }
    if word.is_empty() {
        if current + space_len <= limit {
            out.push_str(&space);
        }
    } else {
        out.push_str(&space);
        out.push_str(&word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrapping_follows_go_wordwrap() {
        // A word longer than the limit (a URL) is never split.
        let url = concat!(
            "https://git.k8s.io/community/contributors/devel/",
            "sig-architecture/api-conventions.md#resources"
        );
        let text = format!(
            "APIVersion defines the versioned schema of this representation of an object. \
             Servers should convert recognized schemas to the latest internal value, and \
             may reject unrecognized values. More info: {url}"
        );
        assert_eq!(
            wrap(&text, 76),
            format!(
                "APIVersion defines the versioned schema of this representation of an object.\n\
                 Servers should convert recognized schemas to the latest internal value, and\n\
                 may reject unrecognized values. More info:\n{url}"
            )
        );
        assert_eq!(wrap("a b\nc", 76), "a b\nc");
    }

    fn resource() -> ResourceType {
        ResourceType {
            group: String::new(),
            version: "v1".into(),
            kind: "Pod".into(),
            plural: "pods".into(),
            singular: "pod".into(),
            namespaced: true,
            short_names: vec![],
            categories: vec![],
            verbs: vec![],
            subresources: vec![],
        }
    }

    fn document() -> Value {
        let gvk = json!({"group": "", "version": "v1", "kind": "Pod"});
        json!({
            "paths": {"/api/v1/namespaces/{namespace}/pods/{name}": {"get":
                {"x-kubernetes-group-version-kind": gvk}}},
            "components": {"schemas": {
                "io.k8s.api.core.v1.Pod": {"description": "Pod is a pod.", "type": "object",
                    "x-kubernetes-group-version-kind": [gvk],
                    "properties": {"kind": {"type": "string", "description": "Kind."},
                        "spec": {"description": "Spec.", "allOf": [
                            {"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}]}}},
                "io.k8s.api.core.v1.PodSpec": {"description": "PodSpec is a spec.",
                    "type": "object", "required": ["containers"],
                    "properties": {"containers": {"type": "array", "description": "Containers.",
                        "items": {"type": "string"}},
                        "restartPolicy": {"type": "string", "description": "Policy.",
                            "enum": ["Always", "Never"]}}}}}
        })
    }

    #[test]
    fn top_level_and_fields_render_like_kubectl() {
        let (text, error) = render(&document(), &resource(), &[], false);
        assert_eq!(error, None);
        assert_eq!(
            text,
            "KIND:       Pod\nVERSION:    v1\n\nDESCRIPTION:\n    Pod is a pod.\n    \nFIELDS:\n  \
             kind\t<string>\n    Kind.\n\n  spec\t<PodSpec>\n    Spec.\n\n\n"
        );
        let path = vec!["spec".to_string()];
        let text = render(&document(), &resource(), &path, false).0;
        assert_eq!(
            text,
            "KIND:       Pod\nVERSION:    v1\n\nFIELD: spec <PodSpec>\n\n\nDESCRIPTION:\n    \
             Spec.\n    PodSpec is a spec.\n    \nFIELDS:\n  containers\t<[]string> \
             -required-\n    Containers.\n\n  restartPolicy\t<string>\n  enum: Always, Never\n    \
             Policy.\n\n\n"
        );
        let missing = vec!["spec".to_string(), "nope".to_string()];
        assert_eq!(
            render(&document(), &resource(), &missing, false),
            (
                "KIND:       Pod\nVERSION:    v1\n\n".to_string(),
                Some("field \"nope\" does not exist".to_string())
            )
        );
    }
}
