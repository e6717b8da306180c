//! Kubeconfig files: which ones are read (`--kubeconfig`, `$KUBECONFIG`, `~/.kube/config`),
//! loading them for the kube client, and `config view|get-contexts|use-context|
//! current-context` with kubectl's output.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{json, Map, Value};

use super::args::{ConfigCommand, ConfigViewArgs, GetContextsArgs};
use super::failure::Failure;
use super::output::{self, TabWriter};

/// The kubeconfig files in precedence order: the flag alone, else every `$KUBECONFIG` entry,
/// else `~/.kube/config`.
pub fn paths(flag: Option<&Path>) -> Vec<PathBuf> {
    if let Some(path) = flag {
        return vec![path.to_path_buf()];
    }
    if let Some(value) = std::env::var_os("KUBECONFIG") {
        let listed: Vec<PathBuf> =
            std::env::split_paths(&value).filter(|p| !p.as_os_str().is_empty()).collect();
        if !listed.is_empty() {
            return listed;
        }
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    vec![home.join(".kube").join("config")]
}

/// The merged kubeconfig (first file to set a value wins) and the kube client settings for
/// `context` (default: the current context).
pub async fn client_config(
    paths: &[PathBuf],
    context: Option<&str>,
) -> Result<kube::Config, Failure> {
    let mut merged: Option<Kubeconfig> = None;
    for path in paths {
        // A listed file that does not exist is skipped, as kubectl does with $KUBECONFIG.
        if !path.exists() && paths.len() > 1 {
            continue;
        }
        let config = Kubeconfig::read_from(path)
            .map_err(|e| Failure::client(format!("loading {}: {e}", path.display())))?;
        merged = Some(match merged {
            None => config,
            Some(previous) => previous.merge(config).map_err(Failure::client)?,
        });
    }
    let kubeconfig = merged.ok_or_else(|| Failure::client("no kubeconfig file found"))?;
    let options =
        KubeConfigOptions { context: context.map(str::to_string), ..KubeConfigOptions::default() };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| Failure::client(e.to_string()))?;
    // Watches stay open as long as the server keeps them; kubectl sets no read timeout.
    config.read_timeout = None;
    Ok(config)
}

/// Runs a `config` subcommand; returns what to print.
pub fn run(
    command: &ConfigCommand,
    paths: &[PathBuf],
    context: Option<&str>,
) -> Result<String, Failure> {
    let files = read_files(paths)?;
    let merged = merge(&files);
    match command {
        ConfigCommand::View(args) => view(&merged, args, context),
        ConfigCommand::GetContexts(args) => get_contexts(&merged, args),
        ConfigCommand::CurrentContext => match merged["current-context"].as_str() {
            Some(name) if !name.is_empty() => Ok(format!("{name}\n")),
            _ => Err(Failure::client("current-context is not set")),
        },
        ConfigCommand::UseContext(args) => {
            let exists = named(&merged, "contexts").any(|c| c["name"] == args.name.as_str());
            if !exists {
                return Err(Failure::client(format!(
                    "no context exists with the name: \"{}\"",
                    args.name
                )));
            }
            use_context(&files, &args.name)?;
            Ok(format!("Switched to context \"{}\".\n", args.name))
        }
    }
}

/// One kubeconfig file as read: its path and YAML (null when it does not exist).
struct File {
    path: PathBuf,
    yaml: serde_yaml::Value,
}

fn read_files(paths: &[PathBuf]) -> Result<Vec<File>, Failure> {
    paths
        .iter()
        .map(|path| {
            let yaml = match std::fs::read_to_string(path) {
                Ok(text) => serde_yaml::from_str(&text).map_err(|e| {
                    Failure::client(format!(
                        "error loading config file \"{}\": {e}",
                        path.display()
                    ))
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_yaml::Value::Null,
                Err(e) => return Err(Failure::client(format!("{}: {e}", path.display()))),
            };
            Ok(File { path: path.clone(), yaml })
        })
        .collect()
}

/// Merges the files as client-go does: the first file to name a cluster, context or user
/// wins, as does the first `current-context`.
fn merge(files: &[File]) -> Value {
    let mut merged = json!({"apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [], "contexts": [], "users": []});
    for file in files {
        let document = serde_json::to_value(&file.yaml).unwrap_or(Value::Null);
        for section in ["clusters", "contexts", "users"] {
            for entry in document[section].as_array().into_iter().flatten() {
                let name = &entry["name"];
                let list = merged[section].as_array_mut().expect("built as an array");
                if !list.iter().any(|e| &e["name"] == name) {
                    list.push(entry.clone());
                }
            }
        }
        let current = document["current-context"].as_str().unwrap_or("");
        if merged.get("current-context").is_none() && !current.is_empty() {
            merged["current-context"] = json!(current);
        }
    }
    for section in ["clusters", "contexts", "users"] {
        let list = merged[section].as_array_mut().expect("built as an array");
        list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    }
    if merged.get("current-context").is_none() {
        merged["current-context"] = json!("");
    }
    merged
}

fn named<'a>(config: &'a Value, section: &str) -> impl Iterator<Item = &'a Value> {
    config[section].as_array().into_iter().flatten()
}

/// `kubectl config view`: the merged config as YAML with secrets shortened (`ShortenConfig`).
fn view(config: &Value, args: &ConfigViewArgs, context: Option<&str>) -> Result<String, Failure> {
    let mut config = config.clone();
    if args.minify {
        config = minify(&config, context)?;
    }
    if !args.raw {
        redact(&mut config);
    }
    Ok(output::yaml(&config))
}

fn minify(config: &Value, context: Option<&str>) -> Result<Value, Failure> {
    let current = context.or(config["current-context"].as_str()).unwrap_or("");
    if current.is_empty() {
        return Err(Failure::client("current-context must exist in order to minify"));
    }
    let context = named(config, "contexts")
        .find(|c| c["name"] == current)
        .ok_or_else(|| Failure::client(format!("cannot locate context {current}")))?;
    let cluster = &context["context"]["cluster"];
    let user = &context["context"]["user"];
    let mut minified = config.clone();
    minified["current-context"] = json!(current);
    minified["contexts"] = json!([context]);
    let keep = |section: &str, name: &Value| -> Value {
        Value::Array(named(config, section).filter(|e| &e["name"] == name).cloned().collect())
    };
    minified["clusters"] = keep("clusters", cluster);
    minified["users"] = keep("users", user);
    Ok(minified)
}

fn redact(config: &mut Value) {
    let shorten = |object: &mut Map<String, Value>, key: &str, replacement: &str| {
        if object.get(key).and_then(Value::as_str).is_some_and(|v| !v.is_empty()) {
            object.insert(key.to_string(), json!(replacement));
        }
    };
    for cluster in config["clusters"].as_array_mut().into_iter().flatten() {
        if let Some(cluster) = cluster["cluster"].as_object_mut() {
            shorten(cluster, "certificate-authority-data", "DATA+OMITTED");
        }
    }
    for user in config["users"].as_array_mut().into_iter().flatten() {
        if let Some(user) = user["user"].as_object_mut() {
            shorten(user, "client-certificate-data", "DATA+OMITTED");
            shorten(user, "client-key-data", "DATA+OMITTED");
            shorten(user, "token", "REDACTED");
            shorten(user, "password", "REDACTED");
        }
    }
}

/// `kubectl config get-contexts`.
fn get_contexts(config: &Value, args: &GetContextsArgs) -> Result<String, Failure> {
    let current = config["current-context"].as_str().unwrap_or("");
    let mut contexts: Vec<&Value> = named(config, "contexts").collect();
    if !args.names.is_empty() {
        for name in &args.names {
            if !contexts.iter().any(|c| c["name"] == name.as_str()) {
                return Err(Failure::client(format!("context {name} not found")));
            }
        }
        contexts.retain(|c| args.names.iter().any(|n| c["name"] == n.as_str()));
    }
    match args.output.as_deref() {
        Some("name") => {
            return Ok(contexts
                .iter()
                .map(|c| format!("{}\n", c["name"].as_str().unwrap_or("")))
                .collect());
        }
        Some(other) => {
            return Err(Failure::client(format!("output must be one of '' or 'name': {other}")));
        }
        None => {}
    }
    let mut text = String::new();
    if !args.no_headers {
        text.push_str("CURRENT\tNAME\tCLUSTER\tAUTHINFO\tNAMESPACE\n");
    }
    for context in contexts {
        let name = context["name"].as_str().unwrap_or("");
        let field = |key: &str| context["context"][key].as_str().unwrap_or("").to_string();
        let marker = if name == current { "*" } else { "" };
        let cells = [marker.to_string(), name.into(), field("cluster"), field("user")];
        text.push_str(&format!("{}\t{}\n", cells.join("\t"), field("namespace")));
    }
    Ok(TabWriter::kubectl().format(&text))
}

/// Writes `current-context` into the file that sets it, else the first file.
fn use_context(files: &[File], name: &str) -> Result<(), Failure> {
    let sets_current = |f: &File| {
        f.yaml.get("current-context").and_then(|v| v.as_str()).is_some_and(|v| !v.is_empty())
    };
    let file = files
        .iter()
        .find(|f| sets_current(f))
        .or_else(|| files.first())
        .ok_or_else(|| Failure::client("no kubeconfig file to modify"))?;
    let mut yaml = match &file.yaml {
        serde_yaml::Value::Mapping(mapping) => serde_yaml::Value::Mapping(mapping.clone()),
        _ => serde_yaml::Value::Mapping(serde_yaml::Mapping::new()),
    };
    yaml["current-context"] = serde_yaml::Value::String(name.to_string());
    let text = serde_yaml::to_string(&yaml).map_err(Failure::client)?;
    std::fs::write(&file.path, text)
        .map_err(|e| Failure::client(format!("writing {}: {e}", file.path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(yaml: &str) -> File {
        File { path: PathBuf::from("x"), yaml: serde_yaml::from_str(yaml).unwrap() }
    }

    const ADMIN: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    \
        server: https://127.0.0.1:6443\n    certificate-authority-data: AAAA\nusers:\n\
        - name: admin\n  user:\n    client-certificate-data: BBBB\n    client-key-data: \
        CCCC\ncontexts:\n- name: admin@skiff\n  context:\n    cluster: skiff\n    user: \
        admin\ncurrent-context: admin@skiff\npreferences: {}\n";

    #[test]
    fn view_sorts_keys_and_omits_secrets_like_kubectl() {
        let merged = merge(&[file(ADMIN)]);
        let args = ConfigViewArgs { raw: false, minify: false };
        assert_eq!(
            view(&merged, &args, None).unwrap(),
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: \
             DATA+OMITTED\n    server: https://127.0.0.1:6443\n  name: skiff\ncontexts:\n\
             - context:\n    cluster: skiff\n    user: admin\n  name: admin@skiff\n\
             current-context: admin@skiff\nkind: Config\npreferences: {}\nusers:\n\
             - name: admin\n  user:\n    client-certificate-data: DATA+OMITTED\n    \
             client-key-data: DATA+OMITTED\n"
        );
    }

    #[test]
    fn first_file_wins_and_contexts_are_listed_sorted() {
        let other = "contexts:\n- name: a\n  context: {cluster: c, user: u, namespace: ns}\n\
                     - name: admin@skiff\n  context: {cluster: ignored}\ncurrent-context: a\n";
        let merged = merge(&[file(ADMIN), file(other)]);
        assert_eq!(merged["current-context"], "admin@skiff");
        let args = GetContextsArgs { names: vec![], output: None, no_headers: false };
        assert_eq!(
            get_contexts(&merged, &args).unwrap(),
            "CURRENT   NAME          CLUSTER   AUTHINFO   NAMESPACE\n\
             \x20         a             c         u          ns\n\
             *         admin@skiff   skiff     admin      \n"
        );
    }
}
