//! Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`) for every built-in
//! kind: request bodies read into the JSON a client would have sent, answers and watch events
//! written from the JSON the server holds.
//!
//! A body is the magic `k8s\0` then a `runtime.Unknown` envelope (type meta at 1, the
//! message at 2, content encoding and type at 3 and 4). Messages are walked by the generated
//! tables in [`messages`]; a watch stream is a run of frames, each a 4-byte big-endian length
//! then a `meta.v1.WatchEvent` whose object is an enveloped body.

mod convert;
mod messages;
mod table;
mod wire;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};

use crate::status::ApiError;
use table::Message;
use wire::{Reader, Wire, Writer};

/// The media type of protobuf bodies.
pub(crate) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The media type of a protobuf watch stream.
pub(crate) const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// The magic every protobuf body starts with.
const PREFIX: &[u8] = b"k8s\0";

/// The scheme kube-apiserver names when a kind is not registered.
const SCHEME: &str = "pkg/api/legacyscheme/scheme.go:30";

/// Why a protobuf body cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProtoError {
    /// The body is empty.
    #[error("empty data")]
    EmptyData,
    /// The body is the magic alone.
    #[error("empty body")]
    EmptyBody,
    /// The body does not start with `k8s\0`.
    #[error(
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    )]
    NotProtobuf,
    /// A message ends inside a field.
    #[error("unexpected EOF")]
    UnexpectedEof,
    /// A message is malformed or a value does not fit its field.
    #[error("{0}")]
    Message(String),
    /// The envelope names a kind with no message.
    #[error("no kind {kind:?} is registered for version {api_version:?} in scheme \"{SCHEME}\"")]
    UnknownKind {
        /// The envelope's `apiVersion`.
        api_version: String,
        /// The envelope's kind.
        kind: String,
    },
}

/// How an answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// JSON (also what YAML and wildcard Accepts get).
    Json,
    /// `application/vnd.kubernetes.protobuf`.
    Protobuf,
}

/// The media types every resource endpoint lists when it cannot answer in any the client
/// takes (custom resources too: their serializers know protobuf for Status and the like).
const ACCEPTED: &str = "application/json, application/yaml, application/vnd.kubernetes.protobuf";

/// Chooses an answer's encoding from the `Accept` header, in the client's order of
/// preference. Custom resources are never written as protobuf (`built_in` false), as a real
/// server restricts their objects to JSON and YAML; their errors, Status objects, can be. An
/// Accept that allows nothing the endpoint writes is a 406.
pub(crate) fn negotiate(accept: &str, built_in: bool) -> Result<Encoding, ApiError> {
    let mut ranges: Vec<(f32, &str)> = accept
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';').map(str::trim);
            let essence = parts.next().filter(|e| !e.is_empty())?;
            let mut q = 1.0;
            for param in parts {
                match param.split_once('=') {
                    Some(("q", v)) => q = v.trim().parse().unwrap_or(0.0),
                    // `as=Table` and the like are served as JSON elsewhere.
                    Some(("as", _)) => return None,
                    _ => {}
                }
            }
            (q > 0.0).then_some((q, essence))
        })
        .collect();
    if ranges.is_empty() {
        return Ok(Encoding::Json);
    }
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, essence) in &ranges {
        match *essence {
            MEDIA_TYPE if built_in => return Ok(Encoding::Protobuf),
            "application/json" | "application/yaml" | "*/*" | "application/*" => {
                return Ok(Encoding::Json);
            }
            _ => {}
        }
    }
    Err(ApiError::new(
        406,
        "NotAcceptable",
        format!("only the following media types are accepted: {ACCEPTED}"),
    ))
}

/// The message of a kind: by `apiVersion` and kind, then the `meta.k8s.io/v1` kinds every
/// group version registers (`DeleteOptions` arrives as `apps/v1`, `Status` as `v1`).
fn message_of(api_version: &str, kind: &str) -> Option<&'static Message> {
    let find = |api_version: &str| {
        messages::KINDS
            .binary_search_by(|k| (k.api_version, k.kind).cmp(&(api_version, kind)))
            .ok()
            .map(|i| messages::KINDS[i].message)
    };
    find(api_version).or_else(|| find("meta.k8s.io/v1"))
}

/// Every kind with a message.
#[cfg(test)]
pub(crate) fn kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    messages::KINDS
        .iter()
        .map(|k: &table::Kind| (k.api_version, k.kind))
}

/// Reads the `runtime.Unknown` envelope after the magic: `(apiVersion, kind, message bytes)`.
fn open_envelope(body: &[u8]) -> Result<(String, String, &[u8]), ProtoError> {
    let envelope = match body.strip_prefix(PREFIX) {
        _ if body.is_empty() => return Err(ProtoError::EmptyData),
        None => return Err(ProtoError::NotProtobuf),
        Some([]) => return Err(ProtoError::EmptyBody),
        Some(envelope) => envelope,
    };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    let mut r = Reader::new(envelope);
    while let Some((n, w)) = r.field()? {
        match (n, w) {
            (1, Wire::Bytes(type_meta)) => {
                let mut t = Reader::new(type_meta);
                while let Some((tn, tw)) = t.field()? {
                    match (tn, tw) {
                        (1, Wire::Bytes(v)) => api_version = utf8(v)?,
                        (2, Wire::Bytes(v)) => kind = utf8(v)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(v)) => raw = v,
            _ => {}
        }
    }
    Ok((api_version, kind, raw))
}

fn utf8(b: &[u8]) -> Result<String, ProtoError> {
    String::from_utf8(b.to_vec())
        .map_err(|_| ProtoError::Message("proto: invalid UTF-8 in the type meta".into()))
}

/// Whether a body is protobuf (it starts with the magic), whatever its `Content-Type`.
pub(crate) fn is_protobuf(body: &[u8]) -> bool {
    body.starts_with(PREFIX)
}

/// Decodes a protobuf body into a JSON object with `kind` and `apiVersion`.
pub(crate) fn decode(body: &[u8]) -> Result<Map<String, Value>, ProtoError> {
    decode_nested(body, 0)
}

/// Decodes a body found `depth` messages deep (a `RawExtension` holding a protobuf body).
fn decode_nested(body: &[u8], depth: usize) -> Result<Map<String, Value>, ProtoError> {
    let (api_version, kind, raw) = open_envelope(body)?;
    let Some(message) = message_of(&api_version, &kind) else {
        return Err(ProtoError::UnknownKind { api_version, kind });
    };
    let Value::Object(mut obj) = convert::to_json(message, raw, depth)? else {
        return Err(ProtoError::Message(format!("{kind} is not an object")));
    };
    obj.insert("apiVersion".into(), Value::from(api_version));
    obj.insert("kind".into(), Value::from(kind));
    Ok(obj)
}

/// Decodes a request body sent as protobuf to the endpoint of a built-in kind, `into`,
/// failing as kube-apiserver's create and update handlers do: a 400 naming the sent and the
/// expected kinds, or "the object provided is unrecognized" when the envelope cannot be read.
pub(crate) fn decode_request(body: &[u8], into: &str) -> Result<Map<String, Value>, ApiError> {
    decode(body).map_err(|e| decode_error(body, into, &e))
}

/// The 400 a custom resource's endpoint answers to a protobuf body: its serializers list
/// protobuf (for Status and the like), so the body is read, but into an unstructured object
/// that has no kind yet, which the protobuf decoder refuses.
pub(crate) fn refuse_for_custom_resource(body: &[u8], into: &str) -> ApiError {
    let e = match open_envelope(body) {
        Ok(_) => {
            ProtoError::Message("Object 'Kind' is missing in 'object has no kind field '".into())
        }
        Err(e) => e,
    };
    decode_error(body, into, &e)
}

/// kube-apiserver's `transformDecodeError`: which kind was sent when the envelope says, else
/// a summary of the body.
fn decode_error(body: &[u8], into: &str, e: &ProtoError) -> ApiError {
    match open_envelope(body) {
        Ok((api_version, kind, _)) if !kind.is_empty() => {
            let version = api_version.rsplit('/').next().unwrap_or_default();
            ApiError::bad_request(format!(
                "{kind} in version {version:?} cannot be handled as a {into}: {e}"
            ))
        }
        _ => ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {into}): {e} ({})",
            summarize(body)
        )),
    }
}

/// The first 30 bytes of a body in hex, as kube-apiserver summarizes an unreadable body.
fn summarize(body: &[u8]) -> String {
    const MAX: usize = 30;
    if body.is_empty() {
        return "<empty>".into();
    }
    let hex: String = body.iter().take(MAX).map(|b| format!("{b:02x}")).collect();
    if body.len() > MAX {
        format!("{hex} ...")
    } else {
        hex
    }
}

/// Encodes a JSON object carrying `kind` and `apiVersion` as an enveloped protobuf body.
pub(crate) fn encode(obj: &Map<String, Value>) -> Result<Vec<u8>, ProtoError> {
    let field = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let Some(message) = message_of(api_version, kind) else {
        return Err(ProtoError::UnknownKind {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        });
    };
    let raw = convert::from_object(message, obj)?;
    let mut type_meta = Writer::default();
    type_meta.bytes_field(1, api_version.as_bytes());
    type_meta.bytes_field(2, kind.as_bytes());
    let mut envelope = Writer::default();
    envelope.bytes_field(1, &type_meta.into_bytes());
    envelope.bytes_field(2, &raw);
    // Content encoding and content type: empty, and written all the same.
    envelope.bytes_field(3, b"");
    envelope.bytes_field(4, b"");
    let mut out = PREFIX.to_vec();
    out.extend(envelope.into_bytes());
    Ok(out)
}

/// Re-encodes a JSON answer as protobuf.
pub(crate) fn encode_json(json: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let obj: Map<String, Value> = serde_json::from_slice(json)
        .map_err(|e| ProtoError::Message(format!("answer is not a JSON object: {e}")))?;
    encode(&obj)
}

/// Re-encodes one JSON watch event (`{"type":..,"object":..}`) as a length-prefixed frame
/// holding a `meta.v1.WatchEvent`.
pub(crate) fn watch_frame(event: &[u8]) -> Result<Bytes, ProtoError> {
    let event: Map<String, Value> = serde_json::from_slice(event)
        .map_err(|e| ProtoError::Message(format!("watch event is not a JSON object: {e}")))?;
    let ty = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let object = match event.get("object") {
        Some(Value::Object(o)) => encode(o)?,
        _ => return Err(ProtoError::Message("watch event has no object".into())),
    };
    let mut raw_extension = Writer::default();
    raw_extension.bytes_field(1, &object);
    let mut message = Writer::default();
    message.bytes_field(1, ty.as_bytes());
    message.bytes_field(2, &raw_extension.into_bytes());
    let message = message.into_bytes();
    let len = u32::try_from(message.len())
        .map_err(|_| ProtoError::Message("watch event larger than 4 GiB".into()))?;
    let mut frame = BytesMut::with_capacity(message.len() + 4);
    frame.put_u32(len);
    frame.put_slice(&message);
    Ok(frame.freeze())
}

#[cfg(test)]
mod tests;
