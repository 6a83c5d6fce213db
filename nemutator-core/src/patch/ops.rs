//! [`Ops`], a JSON Patch written as text as the diff finds each operation,
//! and [`Path`], the JSON Pointer the diff builds as it goes.

use json_patch::Patch;
use serde::Serialize;
use serde_json::Value;

use super::SnapshotError;

/// What an operation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// `add`
    Add,
    /// `remove`
    Remove,
    /// `replace`
    Replace,
}

/// A JSON Patch held as its RFC 6902 JSON text (members in the order
/// json-patch writes them: `op`, `path`, `value`), written as the diff finds
/// each operation, so an operation costs no allocation of its own.
#[derive(Clone, Debug, PartialEq)]
pub struct Ops {
    /// Always a complete JSON array.
    json: Vec<u8>,
    len: usize,
}

impl Default for Ops {
    fn default() -> Self {
        Ops {
            json: b"[]".to_vec(),
            len: 0,
        }
    }
}

impl Ops {
    /// No operations yet, room for `bytes` of JSON.
    pub(super) fn with_capacity(bytes: usize) -> Self {
        let mut json = Vec::with_capacity(bytes.max(2));
        json.extend_from_slice(b"[]");
        Ops { json, len: 0 }
    }

    /// No operations.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many operations.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The JSON array.
    pub fn as_json(&self) -> &[u8] {
        &self.json
    }

    /// Append the JSON array to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.json);
    }

    /// The same operations as json-patch's typed [`Patch`] (parsed from the
    /// text, which also checks every path).
    pub fn to_patch(&self) -> Result<Patch, SnapshotError> {
        Ok(serde_json::from_slice(&self.json)?)
    }

    /// Open an operation at `path` (escaped JSON Pointer text); the caller
    /// writes its value, if any, then calls [`Ops::close`].
    pub(super) fn open(&mut self, kind: OpKind, path: &str) -> &mut Vec<u8> {
        self.json.pop(); // the closing `]`
        if self.len > 0 {
            self.json.push(b',');
        }
        self.len += 1;
        self.json.extend_from_slice(match kind {
            OpKind::Add => br#"{"op":"add","path":"#.as_slice(),
            OpKind::Remove => br#"{"op":"remove","path":"#.as_slice(),
            OpKind::Replace => br#"{"op":"replace","path":"#.as_slice(),
        });
        crate::json::write_str(&mut self.json, path);
        if kind != OpKind::Remove {
            self.json.extend_from_slice(br#","value":"#);
        }
        &mut self.json
    }

    pub(super) fn close(&mut self) {
        self.json.extend_from_slice(b"}]");
    }

    pub(super) fn remove(&mut self, path: &str) {
        self.open(OpKind::Remove, path);
        self.close();
    }

    pub(super) fn with_str(&mut self, kind: OpKind, path: &str, value: &str) {
        crate::json::write_str(self.open(kind, path), value);
        self.close();
    }

    pub(super) fn with_value(&mut self, kind: OpKind, path: &str, value: &Value) {
        crate::json::write_value(self.open(kind, path), value);
        self.close();
    }

    pub(super) fn with_serde<T: Serialize + ?Sized>(
        &mut self,
        kind: OpKind,
        path: &str,
        value: &T,
    ) -> Result<(), SnapshotError> {
        serde_json::to_writer(self.open(kind, path), value)?;
        self.close();
        Ok(())
    }
}

/// A JSON Pointer being built by the diff: tokens are escaped as they are
/// pushed (`~` as `~0`, `/` as `~1`) and popping is a truncation, which is
/// much cheaper than editing a [`json_patch::jsonptr::PointerBuf`] token by token.
#[derive(Default)]
pub(crate) struct Path {
    pub(crate) text: String,
}

impl Path {
    /// Append `token`; returns the length to [`Path::truncate`] back to.
    pub(crate) fn push(&mut self, token: &str) -> usize {
        let len = self.text.len();
        self.text.push('/');
        let mut rest = token;
        // Copy runs between the bytes to escape (both ASCII, so every split
        // is at a character boundary).
        while let Some(i) = rest.bytes().position(|b| b == b'~' || b == b'/') {
            self.text.push_str(&rest[..i]);
            self.text.push_str(if rest.as_bytes()[i] == b'~' {
                "~0"
            } else {
                "~1"
            });
            rest = &rest[i + 1..];
        }
        self.text.push_str(rest);
        len
    }

    /// Append `key`, a JSON field name known to need no escaping (checked
    /// at compile time by the macros that pass one, see `plain_key`).
    pub(crate) fn push_plain(&mut self, key: &'static str) -> usize {
        let len = self.text.len();
        self.text.push('/');
        self.text.push_str(key);
        len
    }

    pub(crate) fn push_index(&mut self, i: usize) -> usize {
        let len = self.text.len();
        self.text.push('/');
        self.text.push_str(itoa::Buffer::new().format(i));
        len
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        self.text.truncate(len);
    }

    /// `token` appended for the duration of `f` (a map key).
    pub(crate) fn at<R>(&mut self, token: &str, f: impl FnOnce(&str) -> R) -> R {
        let at = self.push(token);
        let r = f(&self.text);
        self.truncate(at);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn ops_write_the_json_json_patch_writes() {
        let mut ops = Ops::default();
        ops.with_str(
            OpKind::Add,
            "/metadata/annotations/nemutator.io~1resources-applied",
            "app: cpu 500m->260m\n\"x\"",
        );
        ops.remove("/a~0b");
        ops.with_value(
            OpKind::Replace,
            "/spec/containers/0/resources",
            &json!({"requests": {"cpu": "1"}, "n": [1, null, true, 1.5]}),
        );
        ops.with_serde(OpKind::Add, "/spec/x", &BTreeMap::from([("k", "v")]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ops.len(), 4);
        let mut out = Vec::new();
        ops.write_json(&mut out);
        let typed = ops.to_patch().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(typed.0.len(), 4);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&serde_json::to_vec(&typed).unwrap_or_default())
        );
        let mut empty = Vec::new();
        Ops::default().write_json(&mut empty);
        assert_eq!(empty, b"[]");
        assert!(Ops::default().is_empty());
        assert_eq!(Ops::default().to_patch().map(|p| p.0.len()).ok(), Some(0));
    }
}
