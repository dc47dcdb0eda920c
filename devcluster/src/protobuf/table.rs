//! The shape of the generated message tables: what one protobuf message holds and how its
//! fields read as Kubernetes JSON.

/// One protobuf message of the Kubernetes API.
#[derive(Debug)]
pub(crate) struct Message {
    /// The message's name, as its Go type is called.
    pub(crate) name: &'static str,
    /// How the message reads as JSON.
    pub(crate) shape: Shape,
    /// Its fields, in field-number order as declared.
    pub(crate) fields: &'static [Field],
}

/// How a message reads as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// An object of its fields by their JSON names.
    Object,
    /// `meta.v1.Time`: seconds, written as RFC 3339 to the second.
    Time,
    /// `meta.v1.MicroTime`: seconds and nanoseconds, written as RFC 3339 to the microsecond.
    MicroTime,
    /// `runtime.RawExtension`, `meta.v1.FieldsV1`, apiextensions `JSON`: JSON bytes embedded as is.
    RawJson,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
    /// `resource.Quantity`: its string.
    Quantity,
    /// A Go slice type with a protobuf wrapper (`ExtraValue`, `Verbs`): an array of strings.
    StringList,
    /// `JSONSchemaPropsOrArray`: one schema or an array of schemas.
    SchemaOrArray,
    /// `JSONSchemaPropsOrBool`: a boolean or a schema.
    SchemaOrBool,
    /// `JSONSchemaPropsOrStringArray`: a schema or an array of strings.
    SchemaOrStringArray,
}

/// One field of a message.
#[derive(Debug)]
pub(crate) struct Field {
    /// The protobuf field number.
    pub(crate) number: u32,
    /// The JSON name Kubernetes gives it.
    pub(crate) json: &'static str,
    /// Whether it is single, repeated or a map.
    pub(crate) label: Label,
    /// Its type; a map's value type (keys are always strings).
    pub(crate) ty: Type,
}

/// How many values a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Label {
    /// One value.
    Single,
    /// A list of values.
    Repeated,
    /// `map<string, T>`: entry messages with the key at 1 and the value at 2.
    Map,
}

/// The type of a field's values.
#[derive(Clone, Copy)]
pub(crate) enum Type {
    /// UTF-8 text.
    String,
    /// Bytes, base64 in JSON.
    Bytes,
    /// A boolean varint.
    Bool,
    /// A 32-bit integer varint.
    Int32,
    /// A 64-bit integer varint.
    Int64,
    /// A 64-bit float (fixed64).
    Double,
    /// A nested message.
    Message(&'static Message),
}

/// A kind that can travel as a protobuf body, and its message.
#[derive(Debug)]
pub(crate) struct Kind {
    /// Its `apiVersion`; `meta.k8s.io/v1` for kinds every group version registers.
    pub(crate) api_version: &'static str,
    /// Its kind.
    pub(crate) kind: &'static str,
    /// Its message.
    pub(crate) message: &'static Message,
}

impl std::fmt::Debug for Type {
    /// Names a message rather than printing it: schemas nest themselves.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Type::String => f.write_str("string"),
            Type::Bytes => f.write_str("bytes"),
            Type::Bool => f.write_str("bool"),
            Type::Int32 => f.write_str("int32"),
            Type::Int64 => f.write_str("int64"),
            Type::Double => f.write_str("double"),
            Type::Message(m) => write!(f, "message {}", m.name),
        }
    }
}
