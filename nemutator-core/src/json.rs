//! Hand-written JSON output for the admission response.
//!
//! The response is mostly strings (the patch's paths and the
//! `resources-applied` text, then the base64 of the whole patch, see
//! [`crate::patch::Ops::write_json`]), and
//! serde_json checks each string byte by byte for characters to escape.
//! [`write_str`] checks eight bytes at a time instead and copies the runs in
//! between; the output is byte for byte what serde_json writes (tests compare
//! them).

use serde_json::Value;

/// Eight copies of the byte `b`.
const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// Whether any of the eight bytes of `x` must be escaped in a JSON string: a
/// control character (below 0x20), `"` or `\`.
fn chunk_needs_escape(x: u64) -> bool {
    const HIGH: u64 = splat(0x80);
    // A byte is zero (`has_zero`) when the subtraction borrows into its high
    // bit and the byte had that bit clear; exact for the lowest such byte and
    // never a false "none", which is all a yes/no answer needs.
    let has_zero = |v: u64| v.wrapping_sub(splat(0x01)) & !v & HIGH != 0;
    let below_space = x.wrapping_sub(splat(0x20)) & !x & HIGH != 0;
    below_space || has_zero(x ^ splat(b'"')) || has_zero(x ^ splat(b'\\'))
}

fn byte_needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Append `s` as a JSON string (with its quotes), escaped as serde_json does.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0; // first byte not yet copied
    let mut i = 0;
    while i < bytes.len() {
        // Skip whole chunks that need nothing.
        if let Some(chunk) = bytes.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            if !chunk_needs_escape(u64::from_ne_bytes(word)) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        if byte_needs_escape(b) {
            out.extend_from_slice(&bytes[start..i]);
            escape(out, b);
            start = i + 1;
        }
        i += 1;
    }
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
