//! Reading objects from `-f` sources: files, directories (their `.json`, `.yaml` and `.yml`
//! files, in name order, not recursive), and `-` for stdin; multi-document YAML and `List`
//! objects are split into their objects.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::failure::Failure;

/// One object read from a manifest, with where it came from (`STDIN` or the path), which
/// kubectl names in its errors.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub source: String,
    pub object: Value,
}

/// Reads every object from the given sources, in order.
pub fn read(sources: &[String]) -> Result<Vec<Manifest>, Failure> {
    let mut manifests = Vec::new();
    for source in sources {
        if source == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Failure::client(format!("reading stdin: {e}")))?;
            manifests.extend(parse("STDIN", &text)?);
        } else if source.starts_with("http://") || source.starts_with("https://") {
            return Err(Failure::client(format!(
                "reading manifests from URLs is not supported: {source}"
            )));
        } else {
            read_path(Path::new(source), &mut manifests)?;
        }
    }
    Ok(manifests)
}

fn read_path(path: &Path, manifests: &mut Vec<Manifest>) -> Result<(), Failure> {
    let display = path.display().to_string();
    let metadata = std::fs::metadata(path)
        .map_err(|_| Failure::client(format!("the path \"{display}\" does not exist")))?;
    if metadata.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| Failure::client(format!("{display}: {e}")))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| {
                p.is_file()
                    && matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("json" | "yaml" | "yml")
                    )
            })
            .collect();
        files.sort();
        for file in files {
            read_path(&file, manifests)?;
        }
        return Ok(());
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::client(format!("reading {display}: {e}")))?;
    manifests.extend(parse(&display, &text)?);
    Ok(())
}

/// Parses one source's text: YAML documents (JSON is YAML), empty ones skipped, `List`s
/// flattened.
pub fn parse(source: &str, text: &str) -> Result<Vec<Manifest>, Failure> {
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(document)
            .map_err(|e| Failure::client(format!("error parsing {source}: {e}")))?;
        match value {
            Value::Null => {}
            Value::Object(_) => flatten(value, &mut objects),
            _ => {
                return Err(Failure::client(format!(
                    "error parsing {source}: a manifest document must be an object"
                )))
            }
        }
    }
    let manifests: Vec<Manifest> =
        objects.into_iter().map(|object| Manifest { source: source.to_string(), object }).collect();
    for manifest in &manifests {
        let missing = ["apiVersion", "kind"]
            .into_iter()
            .find(|field| manifest.object[field].as_str().is_none_or(str::is_empty));
        if let Some(field) = missing {
            return Err(Failure::client(format!(
                "error validating data: [{field} not set]; from {source}"
            )));
        }
    }
    Ok(manifests)
}

fn flatten(object: Value, out: &mut Vec<Value>) {
    let is_list = object["kind"].as_str().is_some_and(|k| k == "List" || k.ends_with("List"))
        && object["items"].is_array();
    if is_list {
        for item in object["items"].as_array().into_iter().flatten() {
            flatten(item.clone(), out);
        }
    } else {
        out.push(object);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_and_lists_become_objects() {
        let text = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n\n---\n\
                    {\"apiVersion\": \"v1\", \"kind\": \"List\", \"items\": [\
                    {\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \
                    \"metadata\": {\"name\": \"c\"}}]}\n";
        let manifests = parse("STDIN", text).unwrap();
        let names: Vec<&str> =
            manifests.iter().map(|m| m.object["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(manifests[1].source, "STDIN");
        let error = parse("f.yaml", "metadata: {name: a}\n").unwrap_err().to_string();
        assert!(error.contains("apiVersion not set"), "{error}");
    }
}
