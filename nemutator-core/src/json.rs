//! JSON for the admission path: hand-written output for the response, and
//! structs decoded from JSON objects only ([`object`]).
//!
//! The response is mostly strings (the patch's paths and the
//! `resources-applied` text, then the base64 of the whole patch, see
//! [`crate::patch::Ops::write_json`]), and
//! serde_json checks each string byte by byte for characters to escape.
//! [`write_str`] checks blocks of 32 bytes, then words of 8, at once instead
//! and copies the runs in between; the output is byte for byte what serde_json writes (tests
//! compare them).

use serde_json::Value;

pub(crate) mod object;

/// Whether `b` must be escaped in a JSON string: a control character (below
/// 0x20), `"` or `\`. Written without short-circuits so that checking a
/// block of bytes compiles to vector instructions.
fn byte_needs_escape(b: u8) -> bool {
    (b < 0x20) | (b == b'"') | (b == b'\\')
}

/// Bytes checked at once by the vector check.
const BLOCK: usize = 32;

/// Append `s` as a JSON string (with its quotes), escaped as serde_json does.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0; // first byte not yet copied
    loop {
        let end = plain_run(bytes, plain_blocks(bytes, start));
        out.extend_from_slice(&bytes[start..end]);
        let Some(&b) = bytes.get(end) else { break };
        escape(out, b);
        start = end + 1;
    }
    out.push(b'"');
}

/// Past the whole blocks of [`BLOCK`] plain bytes from `i` (long runs, such
/// as the base64 of a patch): one vector check per block.
fn plain_blocks(b: &[u8], mut i: usize) -> usize {
    while let Some(block) = b.get(i..i + BLOCK) {
        if block
            .iter()
            .fold(false, |acc, &c| acc | byte_needs_escape(c))
        {
            break;
        }
        i += BLOCK;
    }
    i
}

/// Where the run of plain string bytes starting at `i` ends: the index of
/// the first `"`, `\` or control character, or the end of `b`. Eight bytes at
/// a time (the decoder's strings and the patch's paths are short).
pub(crate) fn plain_run(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let m = special(u64::from_le_bytes(word));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b.get(i).is_some_and(|&c| !byte_needs_escape(c)) {
        i += 1;
    }
    i
}

/// The high bit of each byte of `w` (little-endian) that is `"`, `\` or
/// below 0x20. Bytes above the first such byte may be marked wrongly (a
/// borrow runs on), so only the lowest mark is exact: that is the one used.
fn special(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_in = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = zero_in(w ^ (ONES * u64::from(b'"')));
    let backslash = zero_in(w ^ (ONES * u64::from(b'\\')));
    // Bytes below 0x20 (bytes of 0x80 and up are not: their high bit is set).
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    quote | backslash | control
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

    #[test]
    fn plain_run_stops_at_the_first_special_byte() {
        let plain = "abcdéfgh ijklmnopqrstu~\u{7f}";
        for len in 0..plain.len() {
            let Some(prefix) = plain.get(..len) else {
                continue;
            };
            assert_eq!(plain_run(prefix.as_bytes(), 0), len);
            for stop in ["\"", "\\", "\u{0}", "\u{1f}", "\n"] {
                let text = format!("{prefix}{stop}\"\\x\u{1}");
                assert_eq!(plain_run(text.as_bytes(), 0), len, "{text:?}");
            }
        }
        assert_eq!(plain_run(b"ab\"", 1), 2);
    }
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
