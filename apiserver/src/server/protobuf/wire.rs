//! The protobuf wire format, reading side: a message is a sequence of (field number, wire type, value)
//! records (protobuf's "encoding" spec; Go's generated `Unmarshal` methods read the same). Nothing here
//! knows the schema: it splits bytes into records, and every malformed input is an `Err`, never a panic.

/// One record's value, as the wire type gives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Wire type 0: int32, int64, bool, enums.
    Varint(u64),
    /// Wire type 1: double, fixed64.
    Fixed64(u64),
    /// Wire type 2: strings, bytes, messages, map entries and packed repeated scalars.
    Bytes(&'a [u8]),
    /// Wire type 5: float, fixed32.
    Fixed32(u32),
}

/// Splits a message into its records, in wire order.
pub fn records(mut buf: &[u8]) -> impl Iterator<Item = Result<(u32, Value<'_>), String>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let record = record(&mut buf);
        if record.is_err() {
            // Nothing after a malformed record can be read: stop there.
            buf = &[];
        }
        Some(record)
    })
}

fn record<'a>(buf: &mut &'a [u8]) -> Result<(u32, Value<'a>), String> {
    let key = varint(buf)?;
    let number = u32::try_from(key >> 3)
        .ok()
        .filter(|n| (1..1 << 29).contains(n))
        .ok_or_else(|| format!("invalid protobuf field number {}", key >> 3))?;
    let value = match key & 7 {
        0 => Value::Varint(varint(buf)?),
        1 => Value::Fixed64(u64::from_le_bytes(
            take(buf, 8)?.try_into().map_err(|_| "short fixed64")?,
        )),
        2 => {
            let len = usize::try_from(varint(buf)?).map_err(|_| "protobuf length out of range")?;
            Value::Bytes(take(buf, len)?)
        }
        5 => Value::Fixed32(u32::from_le_bytes(
            take(buf, 4)?.try_into().map_err(|_| "short fixed32")?,
        )),
        other => {
            return Err(format!(
                "unsupported protobuf wire type {other} for field {number}"
            ));
        }
    };
    Ok((number, value))
}

/// A base-128 varint of at most 10 bytes.
pub fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for (i, byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Ok(value);
        }
    }
    Err(if buf.len() < 10 {
        "unexpected end of protobuf data in a varint".into()
    } else {
        "protobuf varint longer than 10 bytes".into()
    })
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], String> {
    if len > buf.len() {
        return Err(format!(
            "unexpected end of protobuf data: {len} bytes announced, {} left",
            buf.len()
        ));
    }
    let (head, tail) = buf.split_at(len);
    *buf = tail;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(buf: &[u8]) -> Result<Vec<(u32, Value<'_>)>, String> {
        records(buf).collect()
    }

    #[test]
    fn every_wire_type() {
        let buf = [
            0x08, 0x96, 0x01, // 1: varint 150
            0x11, 1, 0, 0, 0, 0, 0, 0, 0x80, // 2: fixed64
            0x1a, 0x02, b'h', b'i', // 3: "hi"
            0x25, 1, 0, 0, 0, // 4: fixed32 1
        ];
        assert_eq!(
            all(&buf).unwrap(),
            vec![
                (1, Value::Varint(150)),
                (2, Value::Fixed64(0x8000_0000_0000_0001)),
                (3, Value::Bytes(b"hi")),
                (4, Value::Fixed32(1)),
            ]
        );
    }

    #[test]
    fn negative_int32_is_ten_bytes() {
        let mut buf: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(varint(&mut buf).unwrap() as i32, -1);
        assert!(buf.is_empty());
    }

    #[test]
    fn malformed_records_are_errors() {
        assert!(all(&[0x08]).unwrap_err().contains("end"));
        assert!(
            all(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ])
            .is_err()
        );
        assert!(
            all(&[0x1a, 0x05, b'a'])
                .unwrap_err()
                .contains("5 bytes announced")
        );
        assert!(all(&[0x11, 1, 2]).is_err());
        assert!(all(&[0x0b]).unwrap_err().contains("wire type 3"));
        assert!(all(&[0x00, 0x01]).unwrap_err().contains("field number 0"));
        // A length that does not fit in memory is just more than is left.
        assert!(all(&[0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
    }
}
