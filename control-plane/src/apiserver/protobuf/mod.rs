//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`, what kubectl's
//! typed clients send: `kubectl create deployment|service|secret|token ...`) decoded into the
//! Kubernetes JSON the rest of the API server works with.
//!
//! A body is the magic `k8s\0` and a `runtime.Unknown` envelope {1: TypeMeta {1: apiVersion,
//! 2: kind}, 2: raw, 3: contentEncoding, 4: contentType}, `raw` being the object's message as
//! in Kubernetes' `generated.proto`. Messages are decoded through generated field tables
//! (`schema.rs`, written by `cargo xtask gen-protobuf-schema`); unknown field numbers are
//! skipped, as protobuf requires.
//!
//! What the JSON holds, compared with what kube-apiserver's Go types would print:
//! - Go writes its value (non-pointer) fields on the wire even at their zero value, and the
//!   wire cannot tell them from pointers set to zero (`replicas: 0` is meaningful). An empty
//!   optional string is left out: it means unset throughout the API. Numbers and booleans are
//!   kept as received, zeros included, except the fields the schema marks as value fields
//!   (those kubectl's generators leave at zero, such as `paused` or a port's `nodePort`). So
//!   an object may carry an explicit `0` or `false` where kube-apiserver prints nothing;
//!   Kubernetes reads both the same way. Required fields and list or map elements are kept.
//! - Nested messages are written even when empty (`"resources": {}`), as Go writes structs.
//! - `Time` and `MicroTime` without content (Go's zero time) are left out, as unset.

mod schema;
mod schema_types;
mod wire;

#[cfg(test)]
mod tests;

use std::borrow::Cow;

use base64::Engine as _;
use serde_json::Value;

use schema_types::{Field, Kind, Message, Shape};
use wire::{Reader, WireType};

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// Every Kubernetes protobuf body starts with these bytes.
const MAGIC: &[u8] = b"k8s\0";
/// Deepest nesting of messages accepted. The served kinds nest about 12 deep (a Deployment's
/// pod template's volume projections); the bound only stops hostile input.
const NESTING_DEPTH_MAX: usize = 64;
/// `metav1.Time` is valid from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
const TIME_SECONDS_MIN: i64 = -62_135_596_800;
const TIME_SECONDS_MAX: i64 = 253_402_300_799;

/// Why a protobuf body cannot be decoded.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ProtobufError {
    #[error("the protobuf request body does not start with the Kubernetes prefix k8s\\0")]
    Prefix,
    #[error("the protobuf request body is malformed{}: {message}", at(.path))]
    Malformed { path: String, message: String },
    #[error(
        "no kind {kind:?} is registered for version {api_version:?} in the protobuf decoder \
         (the server accepts protobuf bodies for the kinds it serves)"
    )]
    NotServed { api_version: String, kind: String },
    #[error("protobuf request bodies with content encoding {0:?} are not supported")]
    ContentEncoding(String),
    #[error("the protobuf envelope's content type {0:?} is not {MEDIA_TYPE}")]
    ContentType(String),
}

fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" at {path}")
    }
}

/// Decodes a protobuf body into the object's Kubernetes JSON, `apiVersion` and `kind` from the
/// envelope.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(ProtobufError::Prefix)?;
    let envelope = Envelope::read(envelope).map_err(|problem| problem.into_error("envelope"))?;
    if !envelope.content_encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(envelope.content_encoding));
    }
    if !envelope.content_type.is_empty() && envelope.content_type != MEDIA_TYPE {
        return Err(ProtobufError::ContentType(envelope.content_type));
    }
    let root = schema::ROOTS
        .iter()
        .find(|root| {
            root.kind == envelope.kind
                && root.api_version.is_none_or(|version| version == envelope.api_version)
        })
        .ok_or_else(|| ProtobufError::NotServed {
            api_version: envelope.api_version.clone(),
            kind: envelope.kind.clone(),
        })?;
    let mut object =
        message(root.message, envelope.raw, 0).map_err(|problem| problem.into_error(""))?;
    object.insert("apiVersion".into(), Value::String(envelope.api_version));
    object.insert("kind".into(), Value::String(envelope.kind));
    Ok(Value::Object(object))
}

/// `runtime.Unknown` with its `TypeMeta`.
#[derive(Debug, Default)]
struct Envelope<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
    content_type: String,
}

impl<'a> Envelope<'a> {
    fn read(bytes: &'a [u8]) -> Result<Envelope<'a>, Problem> {
        let mut envelope = Envelope::default();
        let mut reader = Reader::new(bytes);
        while !reader.is_empty() {
            let (tag, wire_type) = reader.key().map_err(Problem::new)?;
            match tag {
                1 => {
                    let type_meta = length_delimited(&mut reader, wire_type)?;
                    let mut inner = Reader::new(type_meta);
                    while !inner.is_empty() {
                        let (tag, wire_type) = inner.key().map_err(Problem::new)?;
                        match tag {
                            1 => envelope.api_version = text(&mut inner, wire_type)?,
                            2 => envelope.kind = text(&mut inner, wire_type)?,
                            _ => inner.skip(wire_type).map_err(Problem::new)?,
                        }
                    }
                }
                2 => envelope.raw = length_delimited(&mut reader, wire_type)?,
                3 => envelope.content_encoding = text(&mut reader, wire_type)?,
                4 => envelope.content_type = text(&mut reader, wire_type)?,
                _ => reader.skip(wire_type).map_err(Problem::new)?,
            }
        }
        Ok(envelope)
    }
}

/// A decoding failure and where it happened, innermost segment first.
#[derive(Debug)]
struct Problem {
    segments: Vec<String>,
    message: String,
}

impl Problem {
    fn new(message: impl Into<String>) -> Problem {
        Problem { segments: Vec::new(), message: message.into() }
    }

    fn at(mut self, segment: impl Into<String>) -> Problem {
        self.segments.push(segment.into());
        self
    }

    fn into_error(self, prefix: &str) -> ProtobufError {
        let mut path = prefix.to_string();
        for segment in self.segments.iter().rev() {
            if !path.is_empty() && !segment.starts_with('[') {
                path.push('.');
            }
            path.push_str(segment);
        }
        ProtobufError::Malformed { path, message: self.message }
    }
}

fn expect(wire_type: WireType, expected: WireType) -> Result<(), Problem> {
    if wire_type == expected {
        Ok(())
    } else {
        Err(Problem::new(format!(
            "wire type {} where {} was expected",
            wire_type.name(),
            expected.name()
        )))
    }
}

fn length_delimited<'a>(reader: &mut Reader<'a>, wire_type: WireType) -> Result<&'a [u8], Problem> {
    expect(wire_type, WireType::LengthDelimited)?;
    reader.length_delimited().map_err(Problem::new)
}

fn text(reader: &mut Reader<'_>, wire_type: WireType) -> Result<String, Problem> {
    let bytes = length_delimited(reader, wire_type)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| Problem::new("a string is not valid UTF-8"))
}

fn varint(reader: &mut Reader<'_>, wire_type: WireType) -> Result<u64, Problem> {
    expect(wire_type, WireType::Varint)?;
    reader.varint().map_err(Problem::new)
}

/// Decodes one message through its table into a JSON object.
fn message(schema: &'static Message, bytes: &[u8], depth: usize) -> Result<Map, Problem> {
    if depth > NESTING_DEPTH_MAX {
        let name = schema.name;
        return Err(Problem::new(format!("{name} nested deeper than {NESTING_DEPTH_MAX}")));
    }
    let mut object = Map::new();
    // A singular message field may occur more than once; protobuf merges the occurrences,
    // which is the same as decoding their bytes one after the other.
    let mut pending: Vec<(&'static Field, Cow<'_, [u8]>)> = Vec::new();
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        let (tag, wire_type) = reader.key().map_err(Problem::new)?;
        let Some(field) = schema.field(tag) else {
            reader.skip(wire_type).map_err(|m| Problem::new(m).at(format!("(field {tag})")))?;
            continue;
        };
        let read = match field.shape {
            Shape::Repeated => repeated(field, wire_type, &mut reader, &mut object, depth),
            Shape::Map => map_entry(field, wire_type, &mut reader, &mut object, depth),
            Shape::Optional | Shape::Pointer | Shape::Required if is_scalar(&field.kind) => {
                scalar(&field.kind, wire_type, &mut reader).map(|value| {
                    if field.shape == Shape::Optional && is_zero(&value) {
                        object.remove(field.json);
                    } else {
                        object.insert(field.json.into(), value);
                    }
                })
            }
            Shape::Optional | Shape::Pointer | Shape::Required | Shape::Inline => {
                length_delimited(&mut reader, wire_type).map(|bytes| {
                    match pending.iter_mut().find(|(f, _)| std::ptr::eq(*f, field)) {
                        Some((_, earlier)) => earlier.to_mut().extend_from_slice(bytes),
                        None => pending.push((field, Cow::Borrowed(bytes))),
                    }
                })
            }
        };
        read.map_err(|problem| problem.at(field.json))?;
    }
    for (field, bytes) in pending {
        let decoded =
            value(&field.kind, &bytes, depth).map_err(|problem| problem.at(field.json))?;
        match decoded {
            Some(Value::Object(inline)) if field.shape == Shape::Inline => object.extend(inline),
            Some(value) => {
                object.insert(field.json.into(), value);
            }
            None => {
                object.remove(field.json);
            }
        }
    }
    Ok(object)
}

type Map = serde_json::Map<String, Value>;

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(text) => text.is_empty(),
        Value::Bool(flag) => !flag,
        Value::Number(number) => number.as_i64() == Some(0),
        _ => false,
    }
}

fn is_scalar(kind: &Kind) -> bool {
    matches!(kind, Kind::Str | Kind::Bool | Kind::Int32 | Kind::Int64 | Kind::Bytes)
}

/// One element of a list; numeric lists may also come packed in one length-delimited value.
fn repeated(
    field: &'static Field,
    wire_type: WireType,
    reader: &mut Reader<'_>,
    object: &mut Map,
    depth: usize,
) -> Result<(), Problem> {
    let list = object.entry(field.json).or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(list) = list else { return Err(shape_changed(field)) };
    let numeric = matches!(field.kind, Kind::Bool | Kind::Int32 | Kind::Int64);
    if numeric && wire_type == WireType::LengthDelimited {
        let element_wire_type = WireType::Varint;
        let mut packed = Reader::new(reader.length_delimited().map_err(Problem::new)?);
        while !packed.is_empty() {
            let index = list.len();
            let element = scalar(&field.kind, element_wire_type, &mut packed)
                .map_err(|problem| problem.at(format!("[{index}]")))?;
            list.push(element);
        }
        return Ok(());
    }
    let index = list.len();
    let element = if is_scalar(&field.kind) {
        scalar(&field.kind, wire_type, reader)
    } else {
        length_delimited(reader, wire_type)
            .and_then(|bytes| value(&field.kind, bytes, depth))
            .map(|element| element.unwrap_or(Value::Null))
    };
    list.push(element.map_err(|problem| problem.at(format!("[{index}]")))?);
    Ok(())
}

/// One `map<string, V>` entry: a message {1: key, 2: value}; a missing value is V's default.
fn map_entry(
    field: &'static Field,
    wire_type: WireType,
    reader: &mut Reader<'_>,
    object: &mut Map,
    depth: usize,
) -> Result<(), Problem> {
    let mut entry = Reader::new(length_delimited(reader, wire_type)?);
    let mut key = String::new();
    let mut found: Option<Value> = None;
    while !entry.is_empty() {
        let (tag, wire_type) = entry.key().map_err(Problem::new)?;
        match tag {
            1 => key = text(&mut entry, wire_type)?,
            2 if is_scalar(&field.kind) => {
                found = Some(scalar(&field.kind, wire_type, &mut entry)?)
            }
            2 => {
                let bytes = length_delimited(&mut entry, wire_type)?;
                found = Some(value(&field.kind, bytes, depth)?.unwrap_or(Value::Null));
            }
            _ => entry.skip(wire_type).map_err(Problem::new)?,
        }
    }
    let found = match found {
        Some(found) => found,
        None if is_scalar(&field.kind) => default_scalar(&field.kind),
        None => value(&field.kind, &[], depth)?.unwrap_or(Value::Null),
    };
    let map = object.entry(field.json).or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(map) = map else { return Err(shape_changed(field)) };
    map.insert(key, found);
    Ok(())
}

/// A field's JSON entry is only ever made by its own shape's code, and the tables give every
/// field its own name (a unit test checks), so this is a table bug; the request fails.
fn shape_changed(field: &Field) -> Problem {
    Problem::new(format!("internal: two protobuf fields write the JSON field {}", field.json))
}

fn default_scalar(kind: &Kind) -> Value {
    match kind {
        Kind::Bool => Value::Bool(false),
        Kind::Int32 | Kind::Int64 => Value::from(0),
        _ => Value::String(String::new()),
    }
}

fn scalar(kind: &Kind, wire_type: WireType, reader: &mut Reader<'_>) -> Result<Value, Problem> {
    Ok(match kind {
        Kind::Str => Value::String(text(reader, wire_type)?),
        Kind::Bytes => {
            let bytes = length_delimited(reader, wire_type)?;
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Kind::Bool => Value::Bool(varint(reader, wire_type)? != 0),
        // Negative int32s are sign-extended to 64 bits on the wire; the low 32 bits are the
        // value.
        Kind::Int32 => Value::from(varint(reader, wire_type)? as u32 as i32),
        Kind::Int64 => Value::from(varint(reader, wire_type)? as i64),
        _ => return Err(Problem::new("internal: not a scalar kind")),
    })
}

/// A message-typed value; `None` when it is unset (a zero `Time`, an empty `RawExtension`).
fn value(kind: &Kind, bytes: &[u8], depth: usize) -> Result<Option<Value>, Problem> {
    Ok(match kind {
        Kind::Msg(schema) => Some(Value::Object(message(schema, bytes, depth + 1)?)),
        Kind::Time => time(bytes)?.map(|(seconds, _)| Value::String(format_time(seconds))),
        Kind::MicroTime => time(bytes)?.map(|(seconds, nanos)| {
            let text = format_time(seconds);
            let micros = nanos / 1_000;
            Value::String(format!("{}.{micros:06}Z", text.trim_end_matches('Z')))
        }),
        Kind::Quantity => Some(Value::String(quantity(bytes)?)),
        Kind::IntOrString => Some(int_or_string(bytes)?),
        Kind::RawExtension | Kind::FieldsV1 => embedded_json(bytes)?,
        Kind::Str | Kind::Bool | Kind::Int32 | Kind::Int64 | Kind::Bytes => {
            return Err(Problem::new("internal: a scalar kind as a message"))
        }
    })
}

/// Calls `each` with every field of a hand-decoded message.
fn fields_of(
    bytes: &[u8],
    mut each: impl FnMut(u32, WireType, &mut Reader<'_>) -> Result<bool, Problem>,
) -> Result<(), Problem> {
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        let (tag, wire_type) = reader.key().map_err(Problem::new)?;
        if !each(tag, wire_type, &mut reader)? {
            reader.skip(wire_type).map_err(Problem::new)?;
        }
    }
    Ok(())
}

/// `Timestamp` {1: seconds, 2: nanos}; an empty message is Go's zero time, meaning unset.
fn time(bytes: &[u8]) -> Result<Option<(i64, u32)>, Problem> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let (mut seconds, mut nanos) = (0_i64, 0_i64);
    fields_of(bytes, |tag, wire_type, reader| {
        match tag {
            1 => seconds = varint(reader, wire_type)? as i64,
            2 => nanos = i64::from(varint(reader, wire_type)? as u32 as i32),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if !(TIME_SECONDS_MIN..=TIME_SECONDS_MAX).contains(&seconds) {
        return Err(Problem::new(format!("time {seconds}s is outside years 1 to 9999")));
    }
    let nanos = u32::try_from(nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| Problem::new(format!("nanoseconds {nanos} out of range")))?;
    Ok(Some((seconds, nanos)))
}

fn format_time(seconds: i64) -> String {
    super::objects::format_timestamp(seconds)
}

/// `Quantity` {1: string}; an empty message is Go's zero quantity.
fn quantity(bytes: &[u8]) -> Result<String, Problem> {
    let mut text_value = String::from("0");
    fields_of(bytes, |tag, wire_type, reader| {
        if tag != 1 {
            return Ok(false);
        }
        text_value = text(reader, wire_type)?;
        Ok(true)
    })?;
    Ok(text_value)
}

/// `IntOrString` {1: type (0 int, 1 string), 2: intVal, 3: strVal}.
fn int_or_string(bytes: &[u8]) -> Result<Value, Problem> {
    let (mut kind, mut int_value, mut string_value) = (0_u64, 0_i32, String::new());
    fields_of(bytes, |tag, wire_type, reader| {
        match tag {
            1 => kind = varint(reader, wire_type)?,
            2 => int_value = varint(reader, wire_type)? as u32 as i32,
            3 => string_value = text(reader, wire_type)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    match kind {
        0 => Ok(Value::from(int_value)),
        1 => Ok(Value::String(string_value)),
        other => Err(Problem::new(format!("IntOrString type {other} is neither 0 nor 1"))),
    }
}

/// `RawExtension` or `FieldsV1` {1: raw}: JSON kept as bytes; empty means unset.
fn embedded_json(bytes: &[u8]) -> Result<Option<Value>, Problem> {
    let mut raw: &[u8] = &[];
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        let (tag, wire_type) = reader.key().map_err(Problem::new)?;
        match tag {
            1 => raw = length_delimited(&mut reader, wire_type)?,
            _ => reader.skip(wire_type).map_err(Problem::new)?,
        }
    }
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.starts_with(MAGIC) {
        return Err(Problem::new("embedded objects in protobuf are not supported; send JSON"));
    }
    serde_json::from_slice(raw)
        .map(Some)
        .map_err(|e| Problem::new(format!("the embedded object is not JSON: {e}")))
}
