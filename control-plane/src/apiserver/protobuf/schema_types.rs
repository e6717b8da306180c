//! The shape of the generated field tables (`schema.rs`): for each message, its fields by tag
//! with Kubernetes' JSON name, what each holds, and whether it repeats.

/// A protobuf message: its OpenAPI definition name and its fields, sorted by tag.
#[derive(Debug)]
pub struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
}

impl Message {
    pub fn field(&self, tag: u32) -> Option<&'static Field> {
        self.fields.binary_search_by_key(&tag, |f| f.tag).ok().map(|i| &self.fields[i])
    }
}

/// One field of a message.
#[derive(Debug)]
pub struct Field {
    pub tag: u32,
    /// Kubernetes' JSON name (`podIPs`).
    pub json: &'static str,
    pub kind: Kind,
    pub shape: Shape,
}

/// Builds a table entry (kept short so the generated tables stay one line per field).
pub const fn field(tag: u32, json: &'static str, kind: Kind, shape: Shape) -> Field {
    Field { tag, json, kind, shape }
}

/// What a field (or each element, or each map value) holds.
#[derive(Debug)]
pub enum Kind {
    Str,
    Bool,
    Int32,
    Int64,
    /// Bytes, base64 in JSON.
    Bytes,
    Msg(&'static Message),
    /// `metav1.Time`: RFC 3339 with seconds.
    Time,
    /// `metav1.MicroTime`: RFC 3339 with microseconds.
    MicroTime,
    /// `resource.Quantity`: its string.
    Quantity,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
    /// `runtime.RawExtension`: embedded JSON.
    RawExtension,
    /// `metav1.FieldsV1`: embedded JSON.
    FieldsV1,
}

/// How often a field occurs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Optional, and a zero value ("", 0, false) means unset: Go writes such value fields on
    /// the wire even when empty, and prints none of them in JSON.
    Optional,
    /// An optional number or boolean that may be a Go pointer: a zero is a value, kept.
    Pointer,
    /// Required in the API (OpenAPI `required`): written even when empty.
    Required,
    /// A list.
    Repeated,
    /// `map<string, kind>`: entries {1: key, 2: value}.
    Map,
    /// A Go struct embedded with `json:",inline"`: a message of its own in protobuf, whose
    /// fields are the parent's in JSON (`json` is then prost's field name, for errors only).
    Inline,
}

/// A kind a protobuf body may carry.
#[derive(Debug)]
pub struct Root {
    /// `None`: any group version (`DeleteOptions` is registered in every group).
    pub api_version: Option<&'static str>,
    pub kind: &'static str,
    pub message: &'static Message,
}
