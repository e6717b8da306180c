//! `edit`: the object as YAML in `$KUBE_EDITOR`/`$EDITOR` (default `vi`), then a PUT of the
//! result. An unchanged file cancels the edit, as kubectl does.

use serde_json::Value;

use super::args::EditArgs;
use super::client::{self, Session};
use super::failure::Failure;
use super::targets::{self, Target};
use super::{emit, emit_error, output};

const HEADER: &str =
    "# Please edit the object below. Lines beginning with a '#' will be ignored,\n\
# and an empty file will abort the edit. If an error occurs while saving this file will be\n\
# reopened with the relevant failures.\n#\n";

/// What the edited text means.
#[derive(Debug, PartialEq)]
pub enum Edited {
    Empty,
    Unchanged,
    Changed(Value),
}

/// Reads the edited text back (pure): comment lines dropped, compared with the original.
pub fn read_back(original: &Value, text: &str) -> Result<Edited, Failure> {
    let kept: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect();
    if kept.trim().is_empty() {
        return Ok(Edited::Empty);
    }
    let edited: Value = serde_yaml::from_str(&kept)
        .map_err(|e| Failure::client(format!("the edited file is not valid YAML: {e}")))?;
    if &edited == original {
        Ok(Edited::Unchanged)
    } else {
        Ok(Edited::Changed(edited))
    }
}

pub async fn run(session: &mut Session, args: &EditArgs) -> Result<(), Failure> {
    let (targets, rest) = targets::resolve_named(session, &args.resources).await?;
    if !rest.is_empty() {
        return Err(Failure::client(format!("unexpected arguments: {}", rest.join(" "))));
    }
    let [Target { resource, name: Some(name) }] = targets.as_slice() else {
        return Err(Failure::client("edit takes exactly one object"));
    };
    let namespace = session.namespace_for(resource).map(str::to_string);
    let api = session.api(resource, namespace.as_deref());
    let current = api.get(name).await.map_err(|e| Failure::from_kube(e, ""))?;
    let original = client::object_json(&current);
    let file = tempfile::Builder::new()
        .prefix("podctl-edit-")
        .suffix(".yaml")
        .tempfile()
        .map_err(|e| Failure::client(format!("creating a temporary file: {e}")))?;
    std::fs::write(file.path(), format!("{HEADER}{}", output::yaml(&original)))
        .map_err(|e| Failure::client(format!("writing {}: {e}", file.path().display())))?;
    run_editor(file.path())?;
    let text = std::fs::read_to_string(file.path())
        .map_err(|e| Failure::client(format!("reading {}: {e}", file.path().display())))?;
    let edited = match read_back(&original, &text)? {
        Edited::Empty => {
            emit_error("Edit cancelled, saved file was empty.");
            return Ok(());
        }
        Edited::Unchanged => {
            emit_error("Edit cancelled, no changes made.");
            return Ok(());
        }
        Edited::Changed(edited) => edited,
    };
    let object: kube::api::DynamicObject = serde_json::from_value(edited)
        .map_err(|e| Failure::client(format!("the edited object is not valid: {e}")))?;
    api.replace(name, &kube::api::PostParams::default(), &object)
        .await
        .map_err(|e| Failure::from_kube(e, ""))?;
    emit(&format!("{}/{name} edited\n", resource.kind_group()));
    Ok(())
}

/// Runs the editor through `sh -c` as kubectl does, so `EDITOR="code --wait"` works.
fn run_editor(path: &std::path::Path) -> Result<(), Failure> {
    let editor = ["KUBE_EDITOR", "EDITOR"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .map_err(|e| Failure::client(format!("running the editor {editor:?}: {e}")))?;
    if !status.success() {
        return Err(Failure::client(format!("there was a problem with the editor \"{editor}\"")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn edited_text_is_compared_without_comments() {
        let original = json!({"kind": "Pod", "metadata": {"name": "p"}});
        let text = format!("{HEADER}{}", output::yaml(&original));
        assert_eq!(read_back(&original, &text).unwrap(), Edited::Unchanged);
        assert_eq!(read_back(&original, "# all gone\n").unwrap(), Edited::Empty);
        let changed = text.replace("name: p", "name: q");
        let expected = json!({"kind": "Pod", "metadata": {"name": "q"}});
        assert_eq!(read_back(&original, &changed).unwrap(), Edited::Changed(expected));
    }
}
