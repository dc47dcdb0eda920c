//! The protobuf wire format: reading tagged fields and writing them.

use super::ProtoError;

/// One field's value as the wire carries it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wire<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: a string, bytes, a nested message or packed scalars.
    Bytes(&'a [u8]),
    /// Wire type 5 (no Kubernetes message has one; skipped).
    Fixed32,
}

impl Wire<'_> {
    /// The wire type number, for error messages.
    pub(crate) fn wire_type(&self) -> u8 {
        match self {
            Wire::Varint(_) => 0,
            Wire::Fixed64(_) => 1,
            Wire::Bytes(_) => 2,
            Wire::Fixed32 => 5,
        }
    }
}

/// Reads the fields of one message in order.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over one message's bytes.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Whether every field has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Reads eight little-endian bytes.
    pub(crate) fn fixed64(&mut self) -> Result<u64, ProtoError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or_default()))
    }

    /// Reads a varint.
    pub(crate) fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.buf.split_first().ok_or(ProtoError::UnexpectedEof)?;
            self.buf = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtoError::Message("proto: integer overflow".into()))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if n > self.buf.len() {
            return Err(ProtoError::UnexpectedEof);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next field number and value, `None` at the end of the message.
    pub(crate) fn field(&mut self) -> Result<Option<(u32, Wire<'a>)>, ProtoError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| ProtoError::Message(format!("proto: illegal tag {}", key >> 3)))?;
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(self.fixed64()?),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| {
                    ProtoError::Message("proto: negative length found during unmarshaling".into())
                })?;
                Wire::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed32
            }
            t => {
                return Err(ProtoError::Message(format!(
                    "proto: illegal wireType {t} for field {number}"
                )));
            }
        };
        Ok(Some((number, value)))
    }
}

/// Appends fields to a message being written.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// The bytes written.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, number: u32, wire_type: u8) {
        self.varint((u64::from(number) << 3) | u64::from(wire_type));
    }

    /// A varint field (integers as their two's complement, booleans as 0 or 1).
    pub(crate) fn varint_field(&mut self, number: u32, v: u64) {
        self.key(number, 0);
        self.varint(v);
    }

    /// A fixed64 field (doubles).
    pub(crate) fn fixed64_field(&mut self, number: u32, v: u64) {
        self.key(number, 1);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A length-delimited field: a string, bytes or an encoded message.
    pub(crate) fn bytes_field(&mut self, number: u32, b: &[u8]) {
        self.key(number, 2);
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }
}
