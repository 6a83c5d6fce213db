//! Hand-written JSON output for the admission response.
//!
//! The response is mostly strings (the patch's paths and the
//! `resources-applied` text, then the base64 of the whole patch, see
//! [`crate::patch::Ops::write_json`]), and
//! serde_json checks each string byte by byte for characters to escape.
//! [`write_str`] checks blocks of 32 bytes at once instead and copies the
//! runs in between; the output is byte for byte what serde_json writes (tests
//! compare them).

use serde_json::Value;

/// Whether `b` must be escaped in a JSON string: a control character (below
/// 0x20), `"` or `\`. Written without short-circuits so that checking a
/// block of bytes compiles to vector instructions.
fn byte_needs_escape(b: u8) -> bool {
    (b < 0x20) | (b == b'"') | (b == b'\\')
}

/// Bytes checked at once.
const BLOCK: usize = 32;

/// Append `s` as a JSON string (with its quotes), escaped as serde_json does.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0; // first byte not yet copied
    let mut escape_from = |out: &mut Vec<u8>, base: usize, block: &[u8]| {
        for (j, &b) in block.iter().enumerate() {
            if byte_needs_escape(b) {
                let i = base + j;
                out.extend_from_slice(&bytes[start..i]);
                escape(out, b);
                start = i + 1;
            }
        }
    };
    let mut blocks = bytes.chunks_exact(BLOCK);
    let mut base = 0;
    for block in &mut blocks {
        // Most blocks need nothing: one vectorised check, no per-byte work.
        if block
            .iter()
            .fold(false, |acc, &b| acc | byte_needs_escape(b))
        {
            escape_from(out, base, block);
        }
        base += BLOCK;
    }
    escape_from(out, base, blocks.remainder());
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 0xf)],
        ]),
    }
}

/// Append `v` as JSON; strings take the fast path, other values serde_json.
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::String(s) => write_str(out, s),
        // Writing a `Value` into a Vec cannot fail.
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn by_serde(s: &str) -> Vec<u8> {
        serde_json::to_vec(s).unwrap_or_default()
    }

    #[test]
    fn escapes_like_serde_json() {
        for s in [
            "",
            "plain",
            "exactly8",
            "a \"quoted\" \\ path\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f} é ✓",
            "\"\"\"\"\"\"\"\"\"",
            "0123456789abcdef\n0123456789abcdef\\",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&by_serde(s))
            );
        }
    }

    proptest! {
        #[test]
        fn any_string_escapes_like_serde_json(s in "(\\PC|[\\x00-\\x1f\"\\\\])*") {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            prop_assert_eq!(out, by_serde(&s));
        }
    }
}
