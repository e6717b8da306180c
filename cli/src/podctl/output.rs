//! Pure output formatting in kubectl's exact bytes: the tab writer kubectl aligns columns with
//! (Go's `text/tabwriter` with liggitt's remembered widths), server-side Tables printed as
//! kubectl's `HumanReadablePrinter` prints them, and JSON and YAML as kubectl writes them.

use std::collections::BTreeMap;

use serde_json::Value;

/// Go's elastic tab stops: cells end in `\t`, lines in `\n`; a column is as wide as its widest
/// cell plus padding (at least `minwidth`); the last cell of a line is never padded.
#[derive(Debug)]
pub struct TabWriter {
    minwidth: usize,
    padding: usize,
    /// liggitt/tabwriter's `RememberWidths`: column widths only grow between flushes.
    remember: bool,
    remembered: Vec<usize>,
}

impl TabWriter {
    /// `printers.GetNewTabWriter`: minwidth 6, padding 3, widths remembered.
    pub fn kubectl() -> TabWriter {
        TabWriter { minwidth: 6, padding: 3, remember: true, remembered: Vec::new() }
    }

    /// `kubectl describe`'s writer: minwidth 0, padding 2.
    pub fn describe() -> TabWriter {
        TabWriter { minwidth: 0, padding: 2, remember: false, remembered: Vec::new() }
    }

    /// Forgets remembered widths (kubectl does between resource types).
    pub fn forget_widths(&mut self) {
        self.remembered.clear();
    }

    /// Formats the text written between two flushes.
    pub fn format(&mut self, text: &str) -> String {
        let mut lines: Vec<Vec<&str>> =
            text.split('\n').map(|line| line.split('\t').collect()).collect();
        // A trailing newline leaves an empty last line; Go keeps it as the (empty) unfinished
        // cell, written without a newline.
        let unfinished = lines.pop().filter(|l| l.len() > 1 || !l[0].is_empty());
        let terminated = lines.len();
        if let Some(line) = unfinished {
            lines.push(line);
        }
        let mut out = String::new();
        let mut widths = Vec::new();
        self.format_block(&mut out, &lines, terminated, &mut widths, 0, lines.len());
        out
    }

    fn format_block(
        &mut self,
        out: &mut String,
        lines: &[Vec<&str>],
        terminated: usize,
        widths: &mut Vec<usize>,
        mut line0: usize,
        line1: usize,
    ) {
        let column = widths.len();
        let mut this = line0;
        while this < line1 {
            if column + 1 >= lines[this].len() {
                this += 1;
                continue;
            }
            write_lines(out, lines, terminated, widths, line0, this);
            line0 = this;
            let mut width = self.minwidth;
            while this < line1 && column + 1 < lines[this].len() {
                width = width.max(lines[this][column].chars().count() + self.padding);
                this += 1;
            }
            if self.remember {
                if self.remembered.len() < widths.len() {
                    let known = self.remembered.len();
                    self.remembered.extend_from_slice(&widths[known..]);
                }
                if self.remembered.len() == widths.len() {
                    self.remembered.push(width);
                } else if self.remembered[column] > width {
                    width = self.remembered[column];
                } else {
                    self.remembered[column] = width;
                }
            }
            widths.push(width);
            self.format_block(out, lines, terminated, widths, line0, this);
            widths.pop();
            line0 = this;
        }
        write_lines(out, lines, terminated, widths, line0, line1);
    }
}

fn write_lines(
    out: &mut String,
    lines: &[Vec<&str>],
    terminated: usize,
    widths: &[usize],
    line0: usize,
    line1: usize,
) {
    for (index, line) in lines.iter().enumerate().take(line1).skip(line0) {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if let Some(width) = widths.get(j) {
                let used = cell.chars().count();
                out.extend(std::iter::repeat_n(' ', width.saturating_sub(used)));
            }
        }
        if index < terminated {
            out.push('\n');
        }
    }
}

/// How a Table is decorated and filtered (kubectl's `PrintOptions`).
#[derive(Clone, Debug, Default)]
pub struct TableOptions {
    pub wide: bool,
    pub no_headers: bool,
    /// `-A` on a namespaced type: a NAMESPACE column first.
    pub with_namespace: bool,
    /// Several types in one `get`: names become `kind.group/name`.
    pub kind_prefix: Option<String>,
    pub show_labels: bool,
}

/// kubectl's `HumanReadablePrinter` for server-side Tables: headers once per set of columns,
/// and watch events (one-row Tables without columns) printed with the last columns seen.
#[derive(Debug)]
pub struct TablePrinter {
    pub options: TableOptions,
    last_columns: Vec<Value>,
    printed_headers: bool,
}

impl TablePrinter {
    pub fn new(options: TableOptions) -> TablePrinter {
        TablePrinter { options, last_columns: Vec::new(), printed_headers: false }
    }

    /// Renders one Table as tab-separated lines for the [`TabWriter`].
    pub fn print(&mut self, table: &Value) -> String {
        let columns = table["columnDefinitions"].as_array().cloned().unwrap_or_default();
        let rows = table["rows"].as_array().cloned().unwrap_or_default();
        let mut no_headers = self.options.no_headers;
        if self.printed_headers && (columns.is_empty() || columns == self.last_columns) {
            no_headers = true;
        }
        let columns = if columns.is_empty() {
            self.last_columns.clone()
        } else {
            if columns != self.last_columns {
                self.last_columns = columns.clone();
                self.printed_headers = false;
            }
            columns
        };
        if !rows.is_empty() {
            self.printed_headers = true;
        }
        let (columns, rows) = decorate(&columns, rows, &self.options);
        print_table(&columns, &rows, self.options.wide, no_headers)
    }
}

/// A column of a decorated table: its header and whether it shows only with `-o wide`.
#[derive(Debug)]
struct Column {
    name: String,
    wide_only: bool,
}

fn decorate(
    definitions: &[Value],
    rows: Vec<Value>,
    options: &TableOptions,
) -> (Vec<Column>, Vec<Vec<Value>>) {
    let mut columns = Vec::new();
    if options.with_namespace {
        columns.push(Column { name: "Namespace".into(), wide_only: false });
    }
    for definition in definitions {
        columns.push(Column {
            name: definition["name"].as_str().unwrap_or("").to_string(),
            wide_only: definition["priority"].as_i64().unwrap_or(0) != 0,
        });
    }
    if options.show_labels {
        columns.push(Column { name: "Labels".into(), wide_only: false });
    }
    let name_column = options.kind_prefix.as_ref().and_then(|_| {
        definitions.iter().position(|d| d["format"] == "name" && d["type"] == "string")
    });
    let rows = rows
        .into_iter()
        .map(|row| {
            let mut cells = row["cells"].as_array().cloned().unwrap_or_default();
            cells.truncate(definitions.len());
            if let (Some(index), Some(kind)) = (name_column, &options.kind_prefix) {
                if let Some(cell) = cells.get_mut(index) {
                    *cell = Value::String(format!("{kind}/{}", cell_text(cell)));
                }
            }
            let metadata = &row["object"]["metadata"];
            if options.with_namespace {
                let namespace = metadata["namespace"].as_str().unwrap_or("");
                cells.insert(0, Value::String(namespace.to_string()));
            }
            if options.show_labels {
                cells.push(Value::String(format_labels(&metadata["labels"])));
            }
            cells
        })
        .collect();
    (columns, rows)
}

fn print_table(columns: &[Column], rows: &[Vec<Value>], wide: bool, no_headers: bool) -> String {
    let shown = |column: &Column| wide || !column.wide_only;
    let mut out = String::new();
    if !no_headers {
        // kubectl prints no headers for an empty table.
        if rows.is_empty() {
            return out;
        }
        let headers: Vec<String> =
            columns.iter().filter(|c| shown(c)).map(|c| c.name.to_uppercase()).collect();
        out.push_str(&headers.join("\t"));
        out.push('\n');
    }
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(columns)
            .filter(|(_, column)| shown(column))
            .map(|(cell, _)| cell_text(cell))
            .collect();
        out.push_str(&cells.join("\t"));
        out.push('\n');
    }
    out
}

/// A cell as Go's `fmt.Sprint` prints it; strings are cut at the first line break.
fn cell_text(cell: &Value) -> String {
    match cell {
        Value::Null => String::new(),
        Value::String(text) => match text.find(['\n', '\r', '\x0c']) {
            Some(end) => format!("{}...", &text[..end]),
            None => text.clone(),
        },
        Value::Number(number) => match (number.as_i64(), number.as_f64()) {
            (Some(integer), _) => integer.to_string(),
            (None, Some(float)) if float.fract() == 0.0 && float.abs() < 1e21 => {
                format!("{float:.0}")
            }
            _ => number.to_string(),
        },
        other => other.to_string(),
    }
}

/// `labels.FormatLabels`: sorted `k=v` pairs, or `<none>`.
pub fn format_labels(labels: &Value) -> String {
    let Some(map) = labels.as_object().filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    let sorted: BTreeMap<&String, &Value> = map.iter().collect();
    sorted
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Go's `encoding/json` escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings; serde_json
/// does not. These characters occur only inside strings in JSON text, so replacing them
/// everywhere is exact.
fn go_escape(json: String) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// `json.Marshal` of an unstructured object: compact, keys sorted, HTML escaped.
pub fn go_json_compact(value: &Value) -> String {
    go_escape(serde_json::to_string(value).expect("JSON values serialize"))
}

/// kubectl's `-o json`: `json.MarshalIndent(obj, "", "    ")` plus a newline.
pub fn go_json_pretty(value: &Value) -> String {
    use serde::Serialize;
    let mut bytes = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut bytes, formatter);
    value.serialize(&mut serializer).expect("JSON values serialize");
    let mut text = go_escape(String::from_utf8(bytes).expect("serde_json writes UTF-8"));
    text.push('\n');
    text
}

/// kubectl's `-o yaml`: keys sorted (they come sorted from `serde_json::Value`), block
/// sequences not indented under their key.
pub fn yaml(value: &Value) -> String {
    serde_yaml::to_string(value).expect("JSON values serialize as YAML")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tab_writer_pads_to_the_widest_cell_plus_three_with_minimum_six() {
        let mut writer = TabWriter::kubectl();
        let text = "NAME\tREADY\tAGE\np1\t0/1\t5s\nlonger-name\t1/1\t10m\n";
        assert_eq!(
            writer.format(text),
            "NAME          READY   AGE\np1            0/1     5s\nlonger-name   1/1     10m\n"
        );
        // A narrow column is at least six wide; the last cell is never padded.
        let mut writer = TabWriter::kubectl();
        assert_eq!(writer.format("A\tB\nx\ty\n"), "A     B\nx     y\n");
    }

    #[test]
    fn remembered_widths_only_grow_between_flushes() {
        let mut writer = TabWriter::kubectl();
        writer.format("NAME\tSTATUS\tAGE\nweb\tRunning\t1s\n");
        assert_eq!(writer.format("a\tPending\t2s\n"), "a      Pending   2s\n");
        assert_eq!(
            writer.format("a-much-longer-name\tX\t3s\n"),
            "a-much-longer-name   X         3s\n"
        );
        writer.forget_widths();
        assert_eq!(writer.format("a\tb\tc\n"), "a     b     c\n");
    }

    #[test]
    fn empty_trailing_cells_are_padded_like_kubectl_config_get_contexts() {
        let mut writer = TabWriter::kubectl();
        let text = "CURRENT\tNAME\tNAMESPACE\n*\tadmin@skiff\t\n";
        assert_eq!(
            writer.format(text),
            "CURRENT   NAME          NAMESPACE\n*         admin@skiff   \n"
        );
    }

    #[test]
    fn describe_writer_aligns_each_block_separately() {
        let mut writer = TabWriter::describe();
        let text = "Name:\tp1\nNamespace:\tdefault\nContainers:\n  c:\n    Image:\tbusybox\n";
        assert_eq!(
            writer.format(text),
            "Name:       p1\nNamespace:  default\nContainers:\n  c:\n    Image:  busybox\n"
        );
    }

    fn pod_table() -> Value {
        json!({"kind": "Table", "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "priority": 0},
            {"name": "Ready", "type": "string", "format": "", "priority": 0},
            {"name": "Restarts", "type": "integer", "format": "", "priority": 0},
            {"name": "IP", "type": "string", "format": "", "priority": 1}],
            "rows": [{"cells": ["p1", "0/1", 0, "<none>"], "object": {"metadata":
                {"name": "p1", "namespace": "default", "labels": {"b": "2", "a": "1"}}}}]})
    }

    #[test]
    fn tables_hide_wide_columns_and_decorate_like_kubectl() {
        let mut printer = TablePrinter::new(TableOptions::default());
        assert_eq!(printer.print(&pod_table()), "NAME\tREADY\tRESTARTS\np1\t0/1\t0\n");
        let options = TableOptions {
            wide: true,
            with_namespace: true,
            kind_prefix: Some("pod".into()),
            show_labels: true,
            ..TableOptions::default()
        };
        let mut printer = TablePrinter::new(options);
        assert_eq!(
            printer.print(&pod_table()),
            "NAMESPACE\tNAME\tREADY\tRESTARTS\tIP\tLABELS\n\
             default\tpod/p1\t0/1\t0\t<none>\ta=1,b=2\n"
        );
    }

    #[test]
    fn headers_once_per_columns_and_watch_rows_without_columns() {
        let mut printer = TablePrinter::new(TableOptions::default());
        printer.print(&pod_table());
        assert_eq!(printer.print(&pod_table()), "p1\t0/1\t0\n");
        let mut event = pod_table();
        event["columnDefinitions"] = json!([]);
        assert_eq!(printer.print(&event), "p1\t0/1\t0\n");
        let mut empty = pod_table();
        empty["rows"] = json!([]);
        assert_eq!(TablePrinter::new(TableOptions::default()).print(&empty), "");
    }

    #[test]
    fn json_is_written_as_go_writes_it() {
        let value = json!({"b": [], "a": {"x": "<&>"}, "c": {}});
        assert_eq!(go_json_compact(&value), r#"{"a":{"x":"\u003c\u0026\u003e"},"b":[],"c":{}}"#);
        assert_eq!(
            go_json_pretty(&json!({"k": [1], "e": {}})),
            "{\n    \"e\": {},\n    \"k\": [\n        1\n    ]\n}\n"
        );
        assert_eq!(cell_text(&json!(2.0)), "2");
        assert_eq!(cell_text(&json!("a\nb")), "a...");
    }
}
