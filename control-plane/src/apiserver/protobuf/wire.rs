//! The protobuf wire format, read-only: varints, keys, fixed-width and length-delimited
//! values, and skipping fields a reader does not know.

/// How a field's value is laid out on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireType {
    Varint,
    Fixed64,
    LengthDelimited,
    Fixed32,
}

impl WireType {
    pub fn name(self) -> &'static str {
        match self {
            WireType::Varint => "varint",
            WireType::Fixed64 => "fixed64",
            WireType::LengthDelimited => "length-delimited",
            WireType::Fixed32 => "fixed32",
        }
    }
}

/// A cursor over one message's bytes. Errors are plain descriptions; the decoder adds where.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

/// A varint takes at most 10 bytes (64 bits, 7 per byte).
const VARINT_BYTES_MAX: usize = 10;

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, position: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.position == self.bytes.len()
    }

    pub fn varint(&mut self) -> Result<u64, String> {
        let mut value: u64 = 0;
        for index in 0..VARINT_BYTES_MAX {
            let byte = *self.bytes.get(self.position).ok_or("truncated varint")?;
            self.position += 1;
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    /// A field key: (field number, wire type).
    pub fn key(&mut self) -> Result<(u32, WireType), String> {
        let key = self.varint()?;
        let wire_type = match key & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::LengthDelimited,
            5 => WireType::Fixed32,
            3 | 4 => return Err("groups (wire types 3 and 4) are not supported".into()),
            other => return Err(format!("invalid wire type {other}")),
        };
        let tag =
            u32::try_from(key >> 3).map_err(|_| format!("field number {} too large", key >> 3))?;
        if tag == 0 {
            return Err("field number 0".into());
        }
        Ok((tag, wire_type))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], String> {
        let end = self
            .position
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| format!("{len}-byte value runs past the end of its message"))?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    pub fn length_delimited(&mut self) -> Result<&'a [u8], String> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| format!("length {len} too large"))?;
        self.take(len)
    }

    pub fn fixed64(&mut self) -> Result<u64, String> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    pub fn fixed32(&mut self) -> Result<u32, String> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    /// Skips a value of a field the reader does not know, as protobuf requires.
    pub fn skip(&mut self, wire_type: WireType) -> Result<(), String> {
        match wire_type {
            WireType::Varint => self.varint().map(drop),
            WireType::Fixed64 => self.fixed64().map(drop),
            WireType::LengthDelimited => self.length_delimited().map(drop),
            WireType::Fixed32 => self.fixed32().map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_varints_keys_and_lengths() {
        let mut reader = Reader::new(&[0x96, 0x01, 0x0a, 0x02, b'h', b'i', 0x08]);
        assert_eq!(reader.varint(), Ok(150));
        assert_eq!(reader.key(), Ok((1, WireType::LengthDelimited)));
        assert_eq!(reader.length_delimited(), Ok(&b"hi"[..]));
        assert_eq!(reader.key(), Ok((1, WireType::Varint)));
        assert!(reader.is_empty());
        assert_eq!(reader.varint(), Err("truncated varint".into()));
    }

    #[test]
    fn refuses_malformed_input() {
        assert!(Reader::new(&[0xff; 11]).varint().unwrap_err().contains("longer than 10"));
        assert!(Reader::new(&[0x0a, 0x05, b'a']).skip_key_and_value().is_err());
        assert!(Reader::new(&[0x0b]).key().unwrap_err().contains("groups"));
        assert!(Reader::new(&[0x00]).key().unwrap_err().contains("field number 0"));
        assert!(Reader::new(&[0x0e]).key().unwrap_err().contains("invalid wire type 6"));
    }

    impl Reader<'_> {
        fn skip_key_and_value(&mut self) -> Result<(), String> {
            let (_, wire_type) = self.key()?;
            self.skip(wire_type)
        }
    }
}
