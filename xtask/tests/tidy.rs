//! Tidy checks as ordinary tests: file headers, line length and forbidden macros.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn workspace_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let mut files = Vec::new();
    for crate_dir in ["store", "control-plane", "agent", "cli", "benches", "xtask"] {
        rust_files(&root.join(crate_dir), &mut files);
    }
    assert!(files.len() > 10, "tidy found too few files: {files:?}");
    files
}

#[test]
fn every_file_starts_with_a_doc_line() {
    for file in workspace_files() {
        let text = std::fs::read_to_string(&file).expect("utf-8 source");
        assert!(text.starts_with("//!"), "{} must start with a `//!` line", file.display());
    }
}

#[test]
fn lines_fit_in_100_columns() {
    for file in workspace_files() {
        let text = std::fs::read_to_string(&file).expect("utf-8 source");
        for (number, line) in text.lines().enumerate() {
            let width = line.chars().count();
            assert!(width <= 100, "{}:{} is {width} columns", file.display(), number + 1);
        }
    }
}

#[test]
fn no_placeholder_macros() {
    let forbidden = [concat!("to", "do!"), concat!("unimple", "mented!"), concat!("db", "g!")];
    for file in workspace_files() {
        let text = std::fs::read_to_string(&file).expect("utf-8 source");
        for macro_name in forbidden {
            assert!(!text.contains(macro_name), "{} uses {macro_name}", file.display());
        }
    }
}
