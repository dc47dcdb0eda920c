//! Walks a message by its table: protobuf bytes to Kubernetes JSON and back.

use base64::Engine;
use serde_json::{Map, Number, Value};

use super::ProtoError;
use super::table::{Field, Label, Message, Shape, Type};
use super::wire::{Reader, Wire, Writer};

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// How deep messages may nest in a body: serde_json's limit for JSON bodies, so a protobuf
/// body cannot hold what its JSON twin could not (nor exhaust the stack).
const MAX_DEPTH: usize = 128;

/// Reads a message as the JSON Kubernetes writes for it; `depth` counts the messages (and
/// embedded bodies) it sits in.
pub(crate) fn to_json(
    message: &'static Message,
    raw: &[u8],
    depth: usize,
) -> Result<Value, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::Message(format!(
            "proto: messages nested deeper than {MAX_DEPTH}"
        )));
    }
    let depth = depth + 1;
    match message.shape {
        Shape::Object => {
            let mut obj = Map::new();
            read_object(message, raw, &mut obj, depth)?;
            Ok(Value::Object(obj))
        }
        // Go writes a zero time as an empty message; its JSON is null.
        Shape::Time | Shape::MicroTime if raw.is_empty() => Ok(Value::Null),
        Shape::Time | Shape::MicroTime => {
            let (seconds, nanos) = (varint_at(raw, 1)?, varint_at(raw, 2)?);
            let micro = message.shape == Shape::MicroTime;
            format_time(seconds as i64, if micro { nanos as i32 } else { 0 }, micro)
                .map(Value::from)
        }
        Shape::Quantity => Ok(Value::from(text(bytes_at(raw, 1)?.unwrap_or_default())?)),
        Shape::IntOrString => {
            if varint_at(raw, 1)? == 1 {
                Ok(Value::from(text(bytes_at(raw, 3)?.unwrap_or_default())?))
            } else {
                Ok(Value::from(varint_at(raw, 2)? as i32))
            }
        }
        Shape::RawJson => match bytes_at(raw, 1)? {
            None | Some([]) => Ok(Value::Null),
            Some(b) if b.starts_with(super::PREFIX) => {
                super::decode_nested(b, depth).map(Value::Object)
            }
            Some(b) => serde_json::from_slice(b).map_err(|e| {
                ProtoError::Message(format!("embedded JSON of {}: {e}", message.name))
            }),
        },
        Shape::StringList => {
            let mut items = Vec::new();
            let mut r = Reader::new(raw);
            while let Some((n, w)) = r.field()? {
                if n == 1 {
                    items.push(Value::from(text(expect_bytes(w, "items")?)?));
                }
            }
            Ok(Value::Array(items))
        }
        Shape::SchemaOrArray | Shape::SchemaOrBool | Shape::SchemaOrStringArray => {
            read_schema_or(message, raw, depth)
        }
    }
}

/// The `JSONSchemaPropsOr*` unions: the schema when one is set, else the other arm.
fn read_schema_or(
    message: &'static Message,
    raw: &[u8],
    depth: usize,
) -> Result<Value, ProtoError> {
    let schema_field = message
        .fields
        .iter()
        .find(|f| matches!(f.ty, Type::Message(_)) && f.label == Label::Single)
        .ok_or_else(|| ProtoError::Message(format!("{} has no schema field", message.name)))?;
    let Type::Message(schema) = schema_field.ty else {
        unreachable!("found as a message field");
    };
    let (mut one, mut many, mut allows) = (None, Vec::new(), false);
    let mut r = Reader::new(raw);
    while let Some((n, w)) = r.field()? {
        match (message.shape, n, w) {
            (_, n, Wire::Bytes(b)) if n == schema_field.number => {
                one = Some(to_json(schema, b, depth)?)
            }
            (Shape::SchemaOrArray, 2, Wire::Bytes(b)) => many.push(to_json(schema, b, depth)?),
            (Shape::SchemaOrStringArray, 2, Wire::Bytes(b)) => many.push(Value::from(text(b)?)),
            (Shape::SchemaOrBool, 1, Wire::Varint(v)) => allows = v != 0,
            (_, n, w) => return Err(wrong_wire_type(w, n, message.name)),
        }
    }
    Ok(match (message.shape, one) {
        (_, Some(schema)) => schema,
        (Shape::SchemaOrBool, None) => Value::from(allows),
        (_, None) => Value::Array(many),
    })
}

fn read_object(
    message: &'static Message,
    raw: &[u8],
    obj: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), ProtoError> {
    let mut r = Reader::new(raw);
    while let Some((n, w)) = r.field()? {
        let Some(field) = message.fields.iter().find(|f| f.number == n) else {
            continue;
        };
        if field.json.is_empty() {
            // A Go struct embedded inline: its fields are the parent's.
            let (Type::Message(inner), Wire::Bytes(b)) = (field.ty, w) else {
                return Err(wrong_wire_type(w, n, message.name));
            };
            read_object(inner, b, obj, depth)?;
            continue;
        }
        match field.label {
            Label::Single => {
                if let Some(v) = read_value(field, w, depth)? {
                    obj.insert(field.json.to_owned(), v);
                }
            }
            Label::Repeated => {
                let list = obj
                    .entry(field.json)
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(list) = list else {
                    unreachable!("inserted as an array");
                };
                match (field.ty, w) {
                    // Packed scalars: one length-delimited run of values.
                    (Type::Int32 | Type::Int64 | Type::Bool | Type::Double, Wire::Bytes(b)) => {
                        let mut packed = Reader::new(b);
                        while !packed.is_empty() {
                            let v = match field.ty {
                                Type::Double => Wire::Fixed64(packed.fixed64()?),
                                _ => Wire::Varint(packed.varint()?),
                            };
                            list.push(read_element(field, v, depth)?);
                        }
                    }
                    _ => list.push(read_element(field, w, depth)?),
                }
            }
            Label::Map => {
                let Wire::Bytes(entry) = w else {
                    return Err(wrong_wire_type(w, n, field.json));
                };
                let (key, value) = read_entry(field, entry, depth)?;
                let map = obj
                    .entry(field.json)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(key, value);
                }
            }
        }
    }
    Ok(())
}

/// A single field's value; `None` for an empty string, which Go's JSON leaves out while its
/// protobuf always carries it.
fn read_value(field: &Field, w: Wire<'_>, depth: usize) -> Result<Option<Value>, ProtoError> {
    if let (Type::String, Wire::Bytes([])) = (field.ty, w) {
        return Ok(None);
    }
    read_element(field, w, depth).map(Some)
}

/// One value of a field, as an element of a list or a map keeps it (empty strings included).
fn read_element(field: &Field, w: Wire<'_>, depth: usize) -> Result<Value, ProtoError> {
    Ok(match (field.ty, w) {
        (Type::String, Wire::Bytes(b)) => Value::from(text(b)?),
        (Type::Bytes, Wire::Bytes(b)) => Value::from(BASE64.encode(b)),
        (Type::Bool, Wire::Varint(v)) => Value::from(v != 0),
        (Type::Int32, Wire::Varint(v)) => Value::from(v as i32),
        (Type::Int64, Wire::Varint(v)) => Value::from(v as i64),
        (Type::Double, Wire::Fixed64(v)) => Number::from_f64(f64::from_bits(v))
            .map(Value::Number)
            .ok_or_else(|| ProtoError::Message(format!("{} is not a number", field.json)))?,
        (Type::Message(m), Wire::Bytes(b)) => to_json(m, b, depth)?,
        (_, w) => {
            return Err(ProtoError::Message(format!(
                "proto: wrong wireType = {} for field {}",
                w.wire_type(),
                field.json
            )));
        }
    })
}

/// A map entry: the key at 1, the value at 2.
fn read_entry(field: &Field, entry: &[u8], depth: usize) -> Result<(String, Value), ProtoError> {
    let (mut key, mut value) = (String::new(), None);
    let mut r = Reader::new(entry);
    while let Some((n, w)) = r.field()? {
        match (n, w) {
            (1, Wire::Bytes(k)) => key = text(k)?,
            (2, w) => value = Some(read_element(field, w, depth)?),
            (n, w) => return Err(wrong_wire_type(w, n, field.json)),
        }
    }
    // An absent value is the type's zero value.
    let value = match (value, field.ty) {
        (Some(v), _) => v,
        (None, Type::Message(m)) => to_json(m, &[], depth)?,
        (None, _) => Value::from(""),
    };
    Ok((key, value))
}

fn wrong_wire_type(w: Wire<'_>, number: u32, of: &str) -> ProtoError {
    ProtoError::Message(format!(
        "proto: wrong wireType = {} for field {number} of {of}",
        w.wire_type()
    ))
}

fn expect_bytes<'a>(w: Wire<'a>, field: &str) -> Result<&'a [u8], ProtoError> {
    match w {
        Wire::Bytes(b) => Ok(b),
        w => Err(ProtoError::Message(format!(
            "proto: wrong wireType = {} for field {field}",
            w.wire_type()
        ))),
    }
}

fn text(b: &[u8]) -> Result<String, ProtoError> {
    String::from_utf8(b.to_vec())
        .map_err(|_| ProtoError::Message("proto: invalid UTF-8 in a string field".into()))
}

/// The last varint at field `number` of a message, 0 when absent.
fn varint_at(raw: &[u8], number: u32) -> Result<u64, ProtoError> {
    let mut r = Reader::new(raw);
    let mut out = 0;
    while let Some((n, w)) = r.field()? {
        if let (true, Wire::Varint(v)) = (n == number, w) {
            out = v;
        }
    }
    Ok(out)
}

/// The last length-delimited value at field `number` of a message.
fn bytes_at(raw: &[u8], number: u32) -> Result<Option<&[u8]>, ProtoError> {
    let mut r = Reader::new(raw);
    let mut out = None;
    while let Some((n, w)) = r.field()? {
        if let (true, Wire::Bytes(b)) = (n == number, w) {
            out = Some(b);
        }
    }
    Ok(out)
}

/// RFC 3339 in UTC, to the second (`Time`) or the microsecond (`MicroTime`).
fn format_time(seconds: i64, nanos: i32, micro: bool) -> Result<String, ProtoError> {
    // Go keeps microseconds of a MicroTime and refuses to write years JSON cannot hold.
    let ts = jiff::Timestamp::new(seconds, nanos - nanos % 1000)
        .ok()
        .filter(|ts| (0..=9999).contains(&ts.to_zoned(jiff::tz::TimeZone::UTC).year()))
        .ok_or_else(|| {
            ProtoError::Message("Time.MarshalJSON: year outside of range [0,9999]".into())
        })?;
    let format = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Ok(ts.strftime(format).to_string())
}

/// Why a JSON value cannot be written as its message.
fn mismatch(field: &str, want: &str, got: &Value) -> ProtoError {
    ProtoError::Message(format!("field {field}: expected {want}, got {got}"))
}

/// Writes a JSON object as a message of the object shape (every kind's).
pub(crate) fn from_object(
    message: &'static Message,
    obj: &Map<String, Value>,
) -> Result<Vec<u8>, ProtoError> {
    if message.shape != Shape::Object {
        return Err(ProtoError::Message(format!(
            "{} is not an object",
            message.name
        )));
    }
    let mut w = Writer::default();
    write_object(message, obj, &mut w)?;
    Ok(w.into_bytes())
}

/// Writes a JSON value as a message.
pub(crate) fn from_json(message: &'static Message, value: &Value) -> Result<Vec<u8>, ProtoError> {
    let mut w = Writer::default();
    match (message.shape, value) {
        (Shape::Object, Value::Object(obj)) => write_object(message, obj, &mut w)?,
        (Shape::Object, v) => return Err(mismatch(message.name, "an object", v)),
        (Shape::Time | Shape::MicroTime, Value::String(s)) => {
            let ts: jiff::Timestamp = s
                .parse()
                .map_err(|e| ProtoError::Message(format!("{} {s:?}: {e}", message.name)))?;
            w.varint_field(1, ts.as_second() as u64);
            let nanos = ts.subsec_nanosecond();
            if message.shape == Shape::MicroTime && nanos != 0 {
                w.varint_field(2, (nanos / 1000 * 1000) as u64);
            }
        }
        (Shape::Quantity, Value::String(s)) => w.bytes_field(1, s.as_bytes()),
        (Shape::Quantity, Value::Number(n)) => w.bytes_field(1, n.to_string().as_bytes()),
        (Shape::IntOrString, Value::Number(n)) => {
            let i = n
                .as_i64()
                .ok_or_else(|| mismatch(message.name, "an integer or a string", value))?;
            w.varint_field(1, 0);
            w.varint_field(2, i as u64);
        }
        (Shape::IntOrString, Value::String(s)) => {
            w.varint_field(1, 1);
            w.bytes_field(3, s.as_bytes());
        }
        (Shape::RawJson, v) => {
            let raw = serde_json::to_vec(v).map_err(|e| ProtoError::Message(e.to_string()))?;
            w.bytes_field(1, &raw);
        }
        (Shape::StringList, Value::Array(items)) => {
            for item in items {
                let s = item
                    .as_str()
                    .ok_or_else(|| mismatch(message.name, "strings", item))?;
                w.bytes_field(1, s.as_bytes());
            }
        }
        (Shape::SchemaOrArray | Shape::SchemaOrBool | Shape::SchemaOrStringArray, v) => {
            write_schema_or(message, v, &mut w)?;
        }
        (_, v) => return Err(mismatch(message.name, "its JSON form", v)),
    }
    Ok(w.into_bytes())
}

fn write_schema_or(message: &'static Message, v: &Value, w: &mut Writer) -> Result<(), ProtoError> {
    let schema_field = message
        .fields
        .iter()
        .find(|f| matches!(f.ty, Type::Message(_)) && f.label == Label::Single)
        .ok_or_else(|| ProtoError::Message(format!("{} has no schema field", message.name)))?;
    let Type::Message(schema) = schema_field.ty else {
        unreachable!("found as a message field");
    };
    match (message.shape, v) {
        (Shape::SchemaOrBool, Value::Bool(b)) => w.varint_field(1, u64::from(*b)),
        (Shape::SchemaOrBool, Value::Object(_)) => {
            w.varint_field(1, 1);
            w.bytes_field(schema_field.number, &from_json(schema, v)?);
        }
        (_, Value::Object(_)) => w.bytes_field(schema_field.number, &from_json(schema, v)?),
        (Shape::SchemaOrArray, Value::Array(items)) => {
            for item in items {
                w.bytes_field(2, &from_json(schema, item)?);
            }
        }
        (Shape::SchemaOrStringArray, Value::Array(items)) => {
            for item in items {
                let s = item
                    .as_str()
                    .ok_or_else(|| mismatch(message.name, "strings", item))?;
                w.bytes_field(2, s.as_bytes());
            }
        }
        (_, v) => return Err(mismatch(message.name, "a schema or its alternative", v)),
    }
    Ok(())
}

fn write_object(
    message: &'static Message,
    obj: &Map<String, Value>,
    w: &mut Writer,
) -> Result<(), ProtoError> {
    for field in message.fields {
        if field.json.is_empty() {
            // A Go struct embedded inline: written from the same JSON object.
            let Type::Message(inner) = field.ty else {
                return Err(ProtoError::Message(format!(
                    "inline field {} of {} is not a message",
                    field.number, message.name
                )));
            };
            let mut nested = Writer::default();
            write_object(inner, obj, &mut nested)?;
            w.bytes_field(field.number, &nested.into_bytes());
            continue;
        }
        let Some(value) = obj.get(field.json) else {
            continue;
        };
        if value.is_null() {
            // Go writes a zero time or an empty RawExtension as an empty message, and reads it
            // back as JSON's null.
            if let (Label::Single, Type::Message(m)) = (field.label, field.ty)
                && matches!(m.shape, Shape::Time | Shape::MicroTime | Shape::RawJson)
            {
                w.bytes_field(field.number, &[]);
            }
            continue;
        }
        match field.label {
            Label::Single => write_value(field, value, w)?,
            Label::Repeated => {
                let Value::Array(items) = value else {
                    return Err(mismatch(field.json, "an array", value));
                };
                // Nulls have no protobuf form, but inside embedded JSON (`enum` values).
                let raw_json = matches!(field.ty, Type::Message(m) if m.shape == Shape::RawJson);
                for item in items.iter().filter(|v| raw_json || !v.is_null()) {
                    write_value(field, item, w)?;
                }
            }
            Label::Map => {
                let Value::Object(map) = value else {
                    return Err(mismatch(field.json, "an object", value));
                };
                for (key, item) in map {
                    let mut entry = Writer::default();
                    entry.bytes_field(1, key.as_bytes());
                    if !item.is_null() {
                        write_value(
                            &Field {
                                number: 2,
                                ..*field
                            },
                            item,
                            &mut entry,
                        )?;
                    }
                    w.bytes_field(field.number, &entry.into_bytes());
                }
            }
        }
    }
    Ok(())
}

fn write_value(field: &Field, value: &Value, w: &mut Writer) -> Result<(), ProtoError> {
    let n = field.number;
    match (field.ty, value) {
        (Type::String, Value::String(s)) => w.bytes_field(n, s.as_bytes()),
        (Type::Bytes, Value::String(s)) => {
            let b = BASE64
                .decode(s)
                .map_err(|e| ProtoError::Message(format!("field {}: {e}", field.json)))?;
            w.bytes_field(n, &b);
        }
        (Type::Bool, Value::Bool(b)) => w.varint_field(n, u64::from(*b)),
        (Type::Int32 | Type::Int64, Value::Number(num)) => {
            let i = num
                .as_i64()
                .or_else(|| num.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .ok_or_else(|| mismatch(field.json, "an integer", value))?;
            w.varint_field(n, i as u64);
        }
        (Type::Double, Value::Number(num)) => {
            let f = num
                .as_f64()
                .ok_or_else(|| mismatch(field.json, "a number", value))?;
            w.fixed64_field(n, f.to_bits());
        }
        (Type::Message(m), v) => w.bytes_field(n, &from_json(m, v)?),
        (ty, v) => return Err(mismatch(field.json, &format!("a {ty:?}"), v)),
    }
    Ok(())
}
