//! Field selectors: the `fieldSelector` query syntax (`a.b=c`, `a.b==c`, `a.b!=c`, comma for
//! AND, `\`-escapes for `\`, `,` and `=` in values), the fields each kind supports (as
//! kube-apiserver's field-label conversions and `ToSelectableFields` define them), and
//! matching, where a missing field reads as `""`.

use std::fmt;

use serde_json::Value;

use super::SelectorError;

/// How a requirement compares a field with its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldOperator {
    /// `=` or `==`
    Equals,
    /// `!=`
    NotEquals,
}

/// One term of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    field: String,
    operator: FieldOperator,
    value: String,
}

impl FieldRequirement {
    /// The field, after Kubernetes' aliases (`spec.host` is `spec.nodeName` for pods).
    pub fn field(&self) -> &str {
        &self.field
    }

    pub fn operator(&self) -> FieldOperator {
        self.operator
    }

    /// The value, unescaped.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operator = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{operator}{}", self.field, escape_value(&self.value))
    }
}

/// A field selector for objects of one kind: the AND of its requirements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldSelector {
    kind: String,
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object of `kind`.
    pub fn everything(kind: &str) -> FieldSelector {
        FieldSelector { kind: kind.to_owned(), requirements: Vec::new() }
    }

    /// Parses `?fieldSelector=` for objects of `kind` (the Kubernetes `Kind`, e.g. `"Pod"`),
    /// refusing fields the kind does not support with Kubernetes' messages.
    pub fn parse(kind: &str, selector: &str) -> Result<FieldSelector, SelectorError> {
        let mut terms = split_terms(selector);
        terms.sort_unstable();
        let mut requirements = Vec::with_capacity(terms.len());
        for term in terms.into_iter().filter(|term| !term.is_empty()) {
            let Some((field, operator, raw_value)) = split_term(term) else {
                return Err(SelectorError::FieldSyntax {
                    selector: selector.to_owned(),
                    term: term.to_owned(),
                });
            };
            let value = unescape_value(raw_value)?;
            let field = supported_field(kind, field)?;
            requirements.push(FieldRequirement { field: field.to_owned(), operator, value });
        }
        Ok(FieldSelector { kind: kind.to_owned(), requirements })
    }

    /// Whether `object` satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|requirement| {
            let actual = field_value(&self.kind, object, &requirement.field);
            match requirement.operator {
                FieldOperator::Equals => actual == requirement.value,
                FieldOperator::NotEquals => actual != requirement.value,
            }
        })
    }

    /// True when the selector does not restrict anything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, so a caller can narrow a read (`metadata.name=x`,
    /// `metadata.namespace=y`).
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The value `field` must equal, if an `=` requirement pins it.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// The fields of the kinds with their own field-label conversion in kube-apiserver; every
/// other kind supports `metadata.name` and `metadata.namespace` only.
fn kind_fields(kind: &str) -> Option<&'static [&'static str]> {
    let fields: &'static [&'static str] = match kind {
        "Pod" => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        // Cluster-scoped: Kubernetes refuses `metadata.namespace` for these two.
        "Node" => &["metadata.name", "spec.unschedulable"],
        "Namespace" => &["metadata.name", "status.phase"],
        "Service" => &["metadata.name", "metadata.namespace", "spec.clusterIP", "spec.type"],
        "Event" => &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Secret" => &["metadata.name", "metadata.namespace", "type"],
        _ => return None,
    };
    Some(fields)
}

/// The canonical name of `field` for `kind`, or Kubernetes' refusal.
fn supported_field<'a>(kind: &str, field: &'a str) -> Result<&'a str, SelectorError> {
    // Old v1 clients send `spec.host`; kube-apiserver still maps it.
    if kind == "Pod" && field == "spec.host" {
        return Ok("spec.nodeName");
    }
    match kind_fields(kind) {
        Some(fields) if fields.contains(&field) => Ok(field),
        Some(_) => Err(SelectorError::FieldNotSupported(field.to_owned())),
        None if matches!(field, "metadata.name" | "metadata.namespace") => Ok(field),
        None => Err(SelectorError::UnknownField(field.to_owned())),
    }
}

/// The value of selectable `field` of `object` (a `kind`), as kube-apiserver's
/// `ToSelectableFields` computes it: strings as they are, booleans as `true`/`false`, and
/// `""` for a missing field.
pub fn field_value(kind: &str, object: &Value, field: &str) -> String {
    match (kind, field) {
        ("Pod", "spec.hostNetwork") => bool_field(object, "spec.hostNetwork"),
        ("Node", "spec.unschedulable") => bool_field(object, "spec.unschedulable"),
        // The first of `status.podIPs`; `status.podIP` mirrors it in v1 objects.
        ("Pod", "status.podIP") => lookup(object, "status.podIPs")
            .and_then(|ips| ips.get(0))
            .and_then(|ip| ip.get("ip"))
            .or_else(|| lookup(object, "status.podIP"))
            .map(scalar_text)
            .unwrap_or_default(),
        // Accepted by the conversion but absent from Kubernetes' field set: always empty.
        ("Pod", "status.podIPs") => String::new(),
        ("Event", "source") => {
            lookup(object, "source.component").map(scalar_text).unwrap_or_default()
        }
        _ => lookup(object, field).map(scalar_text).unwrap_or_default(),
    }
}

fn lookup<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(object, |node, name| node.get(name))
}

fn bool_field(object: &Value, path: &str) -> String {
    let value = lookup(object, path).and_then(Value::as_bool).unwrap_or(false);
    value.to_string()
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        _ => String::new(),
    }
}

/// Splits on commas not escaped by a backslash; escapes stay in the terms.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (index, c) in selector.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&selector[start..index]);
            start = index + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at its first operator; at each position `!=` is tried, then `==`, then `=`.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    const OPERATORS: [(&str, FieldOperator); 3] = [
        ("!=", FieldOperator::NotEquals),
        ("==", FieldOperator::Equals),
        ("=", FieldOperator::Equals),
    ];
    term.char_indices().find_map(|(index, _)| {
        let rest = &term[index..];
        OPERATORS
            .iter()
            .find(|(symbol, _)| rest.starts_with(symbol))
            .map(|(symbol, operator)| (&term[..index], *operator, &term[index + symbol.len()..]))
    })
}

fn unescape_value(raw: &str) -> Result<String, SelectorError> {
    let mut value = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('\\' | ',' | '=')) => value.push(escaped),
                Some(other) => return Err(SelectorError::InvalidEscape(format!("\\{other}"))),
                None => return Err(SelectorError::InvalidEscape("\\".to_owned())),
            },
            ',' | '=' => return Err(SelectorError::UnescapedCharacter(c)),
            _ => value.push(c),
        }
    }
    Ok(value)
}

fn escape_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests;
