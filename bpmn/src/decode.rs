//! Turns the bytes of a BPMN file into UTF-8 text, honouring a byte order mark and the
//! encoding named in the XML declaration.
//!
//! | input                                   | result                                  |
//! |-----------------------------------------|-----------------------------------------|
//! | UTF-8 BOM, or no BOM and no declaration | checked as UTF-8, borrowed, BOM dropped |
//! | UTF-16 BOM (LE or BE)                   | decoded from UTF-16                     |
//! | declaration names UTF-8                 | checked as UTF-8, borrowed              |
//! | declaration names another known charset | decoded (e.g. ISO-8859-1, windows-1252) |
//! | declaration names an unknown charset    | rejected, naming the charset            |
//! | bytes invalid in the encoding           | rejected at the first bad byte          |

use std::borrow::Cow;

use encoding_rs::{DecoderResult, Encoding, UTF_8, UTF_16BE, UTF_16LE};

/// Why a document could not be decoded, at which byte offset of the original input.
#[derive(Debug)]
pub(crate) struct DecodeError {
    pub offset: usize,
    pub message: String,
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, DecodeError> {
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return utf8(rest, 3);
    }
    if bytes.starts_with(&[0xFF, 0xFE]) {
        return decode_with(UTF_16LE, &bytes[2..], "UTF-16LE");
    }
    if bytes.starts_with(&[0xFE, 0xFF]) {
        return decode_with(UTF_16BE, &bytes[2..], "UTF-16BE");
    }
    if bytes.starts_with(&[b'<', 0, b'?', 0]) {
        return decode_with(UTF_16LE, bytes, "UTF-16LE");
    }
    if bytes.starts_with(&[0, b'<', 0, b'?']) {
        return decode_with(UTF_16BE, bytes, "UTF-16BE");
    }
    match declared_encoding(bytes) {
        None => utf8(bytes, 0),
        Some(label) => match Encoding::for_label_no_replacement(label.as_bytes()) {
            Some(encoding) if encoding == UTF_8 => utf8(bytes, 0),
            Some(encoding) if encoding == UTF_16LE || encoding == UTF_16BE => Err(DecodeError {
                offset: 0,
                message: format!(
                    "the XML declaration says encoding=\"{label}\" but the file has no UTF-16 \
                     byte order mark and starts with single-byte text; save it as UTF-8"
                ),
            }),
            Some(encoding) => decode_with(encoding, bytes, &label),
            None => Err(DecodeError {
                offset: 0,
                message: format!(
                    "unsupported encoding \"{label}\" in the XML declaration; save the file as \
                     UTF-8 (ISO-8859-x, windows-125x, UTF-16 and other WHATWG encodings are \
                     also read)"
                ),
            }),
        },
    }
}

fn utf8(bytes: &[u8], base_offset: usize) -> Result<Cow<'_, str>, DecodeError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(Cow::Borrowed(text)),
        Err(error) => {
            let offset = error.valid_up_to();
            Err(DecodeError {
                offset: base_offset + offset,
                message: format!(
                    "byte 0x{:02X} is not valid UTF-8; the file is read as UTF-8, so either fix \
                     the byte or declare the real encoding in <?xml ... encoding=\"...\"?>",
                    bytes[offset]
                ),
            })
        }
    }
}

fn decode_with<'a>(
    encoding: &'static Encoding,
    bytes: &'a [u8],
    label: &str,
) -> Result<Cow<'a, str>, DecodeError> {
    let mut decoder = encoding.new_decoder_without_bom_handling();
    let capacity = decoder
        .max_utf8_buffer_length_without_replacement(bytes.len())
        .expect("inputs are capped by MODEL_BYTES_MAX, far from overflowing usize");
    let mut text = String::with_capacity(capacity);
    let (result, read) = decoder.decode_to_string_without_replacement(bytes, &mut text, true);
    match result {
        DecoderResult::InputEmpty => Ok(Cow::Owned(text)),
        DecoderResult::Malformed(bad_bytes, _) => Err(DecodeError {
            offset: read.saturating_sub(usize::from(bad_bytes)),
            message: format!("the bytes are not valid {label} (the declared encoding)"),
        }),
        DecoderResult::OutputFull => unreachable!("the buffer was sized for the worst case"),
    }
}

/// The `encoding` pseudo-attribute of an ASCII-compatible XML declaration, if present.
fn declared_encoding(bytes: &[u8]) -> Option<String> {
    let declaration = bytes.strip_prefix(b"<?xml")?;
    let end = declaration
        .windows(2)
        .take(512)
        .position(|pair| pair == b"?>")?;
    let declaration = &declaration[..end];
    let at = declaration
        .windows(8)
        .position(|window| window == b"encoding")?;
    let rest = &declaration[at + 8..];
    let rest = trim_ascii_start(rest).strip_prefix(b"=")?;
    let rest = trim_ascii_start(rest);
    let quote = *rest.first()?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let value = &rest[1..];
    let close = value.iter().position(|byte| *byte == quote)?;
    std::str::from_utf8(&value[..close])
        .ok()
        .map(|label| label.trim().to_string())
}

fn trim_ascii_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|byte| !byte.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_with_and_without_bom_is_borrowed() {
        let text = decode("<a/>".as_bytes()).expect("plain UTF-8");
        assert!(matches!(text, Cow::Borrowed("<a/>")));
        let text = decode(b"\xEF\xBB\xBF<a/>").expect("UTF-8 with BOM");
        assert_eq!(text, "<a/>");
    }

    #[test]
    fn latin1_declaration_is_decoded() {
        let bytes = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a name=\"K\xE4se\"/>";
        let text = decode(bytes).expect("ISO-8859-1");
        assert!(text.contains("K\u{e4}se"));
    }

    #[test]
    fn utf16_with_bom_is_decoded() {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "<a/>".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        assert_eq!(decode(&bytes).expect("UTF-16LE"), "<a/>");
    }

    #[test]
    fn invalid_utf8_points_at_the_bad_byte() {
        let error = decode(b"<a>ab\xE4c</a>").expect_err("Latin-1 byte in UTF-8");
        assert_eq!(error.offset, 5);
        assert!(error.message.contains("0xE4"), "{}", error.message);
    }

    #[test]
    fn unknown_encoding_is_named() {
        let error = decode(b"<?xml version=\"1.0\" encoding=\"klingon-8\"?><a/>")
            .expect_err("unknown charset");
        assert!(error.message.contains("klingon-8"), "{}", error.message);
    }
}
