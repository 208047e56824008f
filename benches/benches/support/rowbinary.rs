//! A RowBinary encoder for the benches: the bytes `clickhouse` 0.15's `Insert::write` puts in
//! its buffer for a [`processor::ReportRow`] (validation off), written with serde like the
//! crate does.
//!
//! Why not the crate's own: `clickhouse::rowbinary::serialize_row_binary` is `pub(crate)`, and
//! the only public way to reach it (`Insert::write`) starts an HTTP request to a server, which a
//! micro-benchmark should not include. The format for the types `ReportRow` uses is small and
//! fixed (<https://clickhouse.com/docs/en/interfaces/formats#rowbinary>): integers little-endian
//! in their width, `String` as an unsigned LEB128 length then the bytes, fields in declaration
//! order. That is what the crate's `RowBinarySerializer` does for these types
//! (`serialize_u*` -> `put_u*_le`, `serialize_str` -> `put_leb128` + `put_slice`), so the cost
//! here is the same work minus the crate's `BufMut` plumbing. Anything else (floats, options,
//! sequences, maps, enums) is refused: `ReportRow` has none, and a change that adds one fails
//! the bench loudly instead of measuring a wrong encoding.

use serde::ser::{self, Impossible, Serialize, SerializeStruct};

#[derive(Debug)]
pub struct Unsupported(&'static str);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rowbinary bench encoder does not support {}", self.0)
    }
}

impl std::error::Error for Unsupported {}

impl ser::Error for Unsupported {
    fn custom<T: std::fmt::Display>(_msg: T) -> Self {
        Self("a custom serialisation")
    }
}

/// Appends `row` in RowBinary to `out`.
pub fn encode<T: Serialize>(row: &T, out: &mut Vec<u8>) -> Result<(), Unsupported> {
    row.serialize(&mut Encoder(out))
}

fn put_leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

struct Encoder<'a>(&'a mut Vec<u8>);

macro_rules! unsupported {
    ($($name:ident($($arg:ty),*) -> $ret:ty;)*) => {
        $(fn $name(self, $(_: $arg),*) -> Result<$ret, Unsupported> {
            Err(Unsupported(stringify!($name)))
        })*
    };
}

impl<'a, 'b> ser::Serializer for &'a mut Encoder<'b> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Impossible<(), Unsupported>;
    type SerializeTuple = Impossible<(), Unsupported>;
    type SerializeTupleStruct = Impossible<(), Unsupported>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = Impossible<(), Unsupported>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_u8(self, v: u8) -> Result<(), Unsupported> {
        self.0.push(v);
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Unsupported> {
        self.0.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Unsupported> {
        self.0.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Unsupported> {
        self.0.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        put_leb128(self.0, v.len() as u64);
        self.0.extend_from_slice(v.as_bytes());
        Ok(())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Unsupported> {
        Ok(self)
    }

    unsupported! {
        serialize_bool(bool) -> ();
        serialize_i8(i8) -> ();
        serialize_i16(i16) -> ();
        serialize_i32(i32) -> ();
        serialize_i64(i64) -> ();
        serialize_f32(f32) -> ();
        serialize_f64(f64) -> ();
        serialize_char(char) -> ();
        serialize_bytes(&[u8]) -> ();
        serialize_none() -> ();
        serialize_unit() -> ();
        serialize_unit_struct(&'static str) -> ();
        serialize_unit_variant(&'static str, u32, &'static str) -> ();
        serialize_seq(Option<usize>) -> Self::SerializeSeq;
        serialize_tuple(usize) -> Self::SerializeTuple;
        serialize_tuple_struct(&'static str, usize) -> Self::SerializeTupleStruct;
        serialize_tuple_variant(&'static str, u32, &'static str, usize) -> Self::SerializeTupleVariant;
        serialize_map(Option<usize>) -> Self::SerializeMap;
        serialize_struct_variant(&'static str, u32, &'static str, usize) -> Self::SerializeStructVariant;
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), Unsupported> {
        Err(Unsupported("Option"))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _value: &T,
    ) -> Result<(), Unsupported> {
        Err(Unsupported("newtype structs"))
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), Unsupported> {
        Err(Unsupported("enums"))
    }
}

impl<'a, 'b> SerializeStruct for &'a mut Encoder<'b> {
    type Ok = ();
    type Error = Unsupported;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _key: &'static str,
        value: &T,
    ) -> Result<(), Unsupported> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Unsupported> {
        Ok(())
    }
}

/// Self-check run at bench start: the encoding of known values, byte for byte.
pub fn check() {
    #[derive(serde::Serialize)]
    struct Probe {
        a: u8,
        b: u16,
        c: u32,
        d: u64,
        e: String,
        f: String,
    }
    let mut out = Vec::new();
    let probe = Probe {
        a: 1,
        b: 0x0203,
        c: 0x0405_0607,
        d: 0x0809_0a0b_0c0d_0e0f,
        e: "hé".to_owned(),
        f: "x".repeat(200),
    };
    if let Err(error) = encode(&probe, &mut out) {
        panic!("probe encodes: {error}");
    }
    let mut expected = vec![1, 0x03, 0x02, 0x07, 0x06, 0x05, 0x04];
    expected.extend_from_slice(&0x0809_0a0b_0c0d_0e0f_u64.to_le_bytes());
    expected.extend_from_slice(&[3, b'h', 0xc3, 0xa9]);
    expected.extend_from_slice(&[0xc8, 0x01]); // 200 = 0b1_1001000 -> 0xc8 0x01
    expected.extend_from_slice(&[b'x'; 200]);
    assert_eq!(out, expected, "rowbinary encoder self-check");
}
