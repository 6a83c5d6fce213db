//! A decoder for the common shape of a pod AdmissionReview, written for the
//! admission path: one pass over the text, field names compared as they
//! are read, unused values skipped by a scanner that only checks them, and
//! strings without escapes copied straight from the input.
//!
//! It gives up ([`None`]) on anything it is not sure of (an escape in a field
//! name, a repeated field, a `null` where a value is required, a number for a
//! quantity, nesting deeper than [`MAX_DEPTH`], any syntax error), and the
//! caller then decodes with serde, which gives the answer or the error
//! message. So it only has to be right when it succeeds: then its result is
//! what serde gives for the same text (tests and the admission fuzz target
//! check this on arbitrary input). It is at least as strict as serde_json
//! about what it skips (strings, escapes, numbers and literals are checked,
//! not just stepped over), so it never accepts text serde rejects.
//!
//! Values it does not model field by field (`env`, resource `claims`) are
//! checked by the scanner and then handed to serde.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceClaim, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::de::DeserializeOwned;

use super::{Gvk, PodRequestIn, PodReviewIn};
use crate::json::plain_run;
use crate::mutate::{ContainerView, MetaView, PodSpecView, PodView};

/// Deepest nesting of arrays and objects decoded here; serde_json's own
/// limit is 128, so what is accepted here never reaches it.
pub(super) const MAX_DEPTH: u32 = 100;

/// Gave up: decode with serde instead.
struct Bail;

type R<T> = Result<T, Bail>;

/// Decode `text` as an AdmissionReview whose object is a pod view, or give up.
pub(super) fn pod_review(text: &str) -> Option<PodReviewIn<'_>> {
    let mut p = Parser {
        text,
        b: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    let review = p.review().ok()?;
    p.ws();
    (p.i == p.b.len()).then_some(review)
}

struct Parser<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    depth: u32,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        // Most calls meet no whitespace at all (every byte of JSON's
        // structure is above the space).
        if self.b.get(self.i).is_none_or(|&c| c > b' ') {
            return;
        }
        self.ws_run();
    }

    /// [`Parser::ws`] past at least one byte of whitespace: runs of spaces
    /// (indentation) up to eight at a time.
    fn ws_run(&mut self) {
        const SPACES: u64 = u64::from_le_bytes([b' '; 8]);
        loop {
            match self.b.get(self.i) {
                Some(b' ') => match self.b.get(self.i..self.i + 8) {
                    Some(chunk) => {
                        let mut word = [0u8; 8];
                        word.copy_from_slice(chunk);
                        // The first byte is a space, so at least 8 trailing
                        // zero bits: one byte or more is skipped.
                        let other = u64::from_le_bytes(word) ^ SPACES;
                        self.i += if other == 0 {
                            8
                        } else {
                            (other.trailing_zeros() / 8) as usize
                        };
                    }
                    None => self.i += 1,
                },
                Some(b'\n' | b'\r' | b'\t') => self.i += 1,
                _ => return,
            }
        }
    }

    /// The next byte after whitespace (not consumed).
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> R<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// `null` (consumed) or not (nothing consumed).
    fn null(&mut self) -> R<bool> {
        if self.peek() != Some(b'n') {
            return Ok(false);
        }
        self.literal(b"null")?;
        Ok(true)
    }

    fn literal(&mut self, word: &[u8]) -> R<()> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// Read field `bit` of `seen` with `read`, once (serde rejects a
    /// repeated field).
    fn once<T>(&mut self, seen: &mut u32, bit: u32, read: impl FnOnce(&mut Self) -> R<T>) -> R<T> {
        if *seen & bit != 0 {
            return Err(Bail);
        }
        *seen |= bit;
        read(self)
    }

    /// `null` as `None`, anything else read by `read`.
    fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> R<T>) -> R<Option<T>> {
        if self.null()? {
            return Ok(None);
        }
        read(self).map(Some)
    }

    /// An array, each element read by `read`.
    fn list<T>(&mut self, mut read: impl FnMut(&mut Self) -> R<T>) -> R<Vec<T>> {
        let mut out = Vec::new();
        self.array(|p| {
            out.push(read(p)?);
            Ok(())
        })?;
        Ok(out)
    }

    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        if self.depth >= MAX_DEPTH {
            return Err(Bail);
        }
        Ok(())
    }

    /// Walk `open` item (`,` item)* `close`, calling `item` positioned at
    /// each item; `item` must consume it.
    fn seq(&mut self, open: u8, close: u8, mut item: impl FnMut(&mut Self) -> R<()>) -> R<()> {
        self.eat(open)?;
        self.enter()?;
        if self.peek() == Some(close) {
            self.i += 1;
        } else {
            loop {
                item(self)?;
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(c) if c == close => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(Bail),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// Walk an object, calling `field` with each key (escape-free keys only)
    /// positioned at its value; `field` must consume the value.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> R<()>) -> R<()> {
        self.seq(b'{', b'}', |p| {
            p.eat(b'"')?;
            let key = p.plain_key()?;
            p.eat(b':')?;
            field(p, key)
        })
    }

    /// Walk an array, calling `item` positioned at each element.
    fn array(&mut self, item: impl FnMut(&mut Self) -> R<()>) -> R<()> {
        self.seq(b'[', b']', item)
    }

    /// After the opening quote: a key without escapes or control characters.
    fn plain_key(&mut self) -> R<&'a str> {
        let start = self.i;
        self.i = plain_run(self.b, self.i);
        if self.b.get(self.i) != Some(&b'"') {
            return Err(Bail);
        }
        let key = self.text.get(start..self.i).ok_or(Bail)?;
        self.i += 1;
        Ok(key)
    }

    /// A JSON string (escapes decoded).
    fn string(&mut self) -> R<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.i;
        self.i = plain_run(self.b, self.i);
        match self.b.get(self.i) {
            Some(b'"') => {
                let s = self.text.get(start..self.i).ok_or(Bail)?;
                self.i += 1;
                return Ok(Cow::Borrowed(s));
            }
            Some(b'\\') => {}
            _ => return Err(Bail),
        }
        let mut out = String::with_capacity(self.i - start + 16);
        out.push_str(self.text.get(start..self.i).ok_or(Bail)?);
        loop {
            let run = self.i;
            self.i = plain_run(self.b, self.i);
            out.push_str(self.text.get(run..self.i).ok_or(Bail)?);
            match self.b.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = match self.b.get(self.i) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.i += 1;
                            let c = self.unicode_escape()?;
                            out.push(c);
                            continue;
                        }
                        _ => return Err(Bail),
                    };
                    self.i += 1;
                    out.push(c);
                }
                _ => return Err(Bail),
            }
        }
    }

    fn hex4(&mut self) -> R<u32> {
        let digits = self.b.get(self.i..self.i + 4).ok_or(Bail)?;
        let mut v = 0;
        for &d in digits {
            v = v * 16 + char::from(d).to_digit(16).ok_or(Bail)?;
        }
        self.i += 4;
        Ok(v)
    }

    /// After `\u`: the character, a surrogate pair joined; a lone surrogate
    /// gives up (serde rejects it in a decoded string).
    fn unicode_escape(&mut self) -> R<char> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                self.literal(b"\\u")?;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(Bail);
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(Bail),
            c => c,
        };
        char::from_u32(code).ok_or(Bail)
    }

    fn owned_string(&mut self) -> R<String> {
        Ok(self.string()?.into_owned())
    }

    fn opt_str(&mut self) -> R<Option<Cow<'a, str>>> {
        if self.null()? {
            return Ok(None);
        }
        self.string().map(Some)
    }

    fn opt_string(&mut self) -> R<Option<String>> {
        Ok(self.opt_str()?.map(Cow::into_owned))
    }

    /// A map of strings; a repeated key keeps the last value, as serde does.
    fn opt_string_map<V>(&mut self, wrap: impl Fn(String) -> V) -> R<Option<BTreeMap<String, V>>> {
        if self.null()? {
            return Ok(None);
        }
        let mut map = BTreeMap::new();
        self.seq(b'{', b'}', |p| {
            let key = p.owned_string()?;
            p.eat(b':')?;
            let value = p.owned_string()?;
            map.insert(key, wrap(value));
            Ok(())
        })?;
        Ok(Some(map))
    }

    /// A value checked by the scanner, then decoded by serde.
    fn with_serde<T: DeserializeOwned>(&mut self) -> R<T> {
        self.ws();
        let start = self.i;
        self.skip()?;
        let raw = self.text.get(start..self.i).ok_or(Bail)?;
        serde_json::from_str(raw).map_err(|_| Bail)
    }

    /// Step over one value, checking it as serde_json would.
    fn skip(&mut self) -> R<()> {
        match self.peek().ok_or(Bail)? {
            b'"' => {
                self.i += 1;
                self.skip_string_body()
            }
            b'{' => self.seq(b'{', b'}', |p| {
                p.eat(b'"')?;
                p.skip_string_body()?;
                p.eat(b':')?;
                p.skip()
            }),
            b'[' => self.seq(b'[', b']', Self::skip),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.skip_number(),
            _ => Err(Bail),
        }
    }

    /// After the opening quote: to just past the closing one.
    fn skip_string_body(&mut self) -> R<()> {
        loop {
            self.i = plain_run(self.b, self.i);
            match self.b.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.b.get(self.i) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            self.i += 1;
                            self.hex4()?;
                        }
                        _ => return Err(Bail),
                    }
                }
                _ => return Err(Bail),
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn skip_number(&mut self) -> R<()> {
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Bail),
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if !matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
                return Err(Bail);
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            if !matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
                return Err(Bail);
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    // The shapes of `super::PodReviewIn` and `crate::mutate::PodView`, field
    // for field (serde's derive is the reference).

    fn review(&mut self) -> R<PodReviewIn<'a>> {
        let mut out = PodReviewIn {
            api_version: None,
            kind: None,
            request: None,
        };
        let mut seen = 0;
        self.object(|p, key| match key {
            "apiVersion" => p
                .once(&mut seen, 1, Self::opt_str)
                .map(|v| out.api_version = v),
            "kind" => p.once(&mut seen, 2, Self::opt_str).map(|v| out.kind = v),
            "request" => p
                .once(&mut seen, 4, |p| p.nullable(Self::request))
                .map(|v| out.request = v),
            _ => p.skip(),
        })?;
        Ok(out)
    }

    fn request(&mut self) -> R<PodRequestIn<'a>> {
        let mut uid = None;
        let mut out = PodRequestIn {
            uid: Cow::Borrowed(""),
            kind: Gvk::default(),
            sub_resource: None,
            namespace: None,
            operation: None,
            object: None,
        };
        let mut seen = 0;
        self.object(|p, key| match key {
            "uid" => p.once(&mut seen, 1, Self::string).map(|v| uid = Some(v)),
            "kind" => p.once(&mut seen, 2, Self::gvk).map(|v| out.kind = v),
            "subResource" => p
                .once(&mut seen, 4, Self::opt_str)
                .map(|v| out.sub_resource = v),
            "namespace" => p
                .once(&mut seen, 8, Self::opt_str)
                .map(|v| out.namespace = v),
            "operation" => p
                .once(&mut seen, 16, Self::opt_str)
                .map(|v| out.operation = v),
            "object" => p
                .once(&mut seen, 32, |p| p.nullable(Self::pod))
                .map(|v| out.object = v),
            _ => p.skip(),
        })?;
        // `uid` is required.
        out.uid = uid.ok_or(Bail)?;
        Ok(out)
    }

    fn gvk(&mut self) -> R<Gvk<'a>> {
        let mut out = Gvk::default();
        let mut seen = 0;
        self.object(|p, key| match key {
            "group" => p.once(&mut seen, 1, Self::string).map(|v| out.group = v),
            "version" => p.once(&mut seen, 2, Self::string).map(|v| out.version = v),
            "kind" => p.once(&mut seen, 4, Self::string).map(|v| out.kind = v),
            _ => p.skip(),
        })?;
        Ok(out)
    }

    fn pod(&mut self) -> R<PodView> {
        let mut out = PodView::default();
        let mut seen = 0;
        self.object(|p, key| match key {
            "metadata" => p.once(&mut seen, 1, Self::meta).map(|v| out.metadata = v),
            "spec" => p
                .once(&mut seen, 2, |p| p.nullable(Self::spec))
                .map(|v| out.spec = v),
            _ => p.skip(),
        })?;
        Ok(out)
    }

    fn meta(&mut self) -> R<MetaView> {
        let mut out = MetaView::default();
        let mut seen = 0;
        self.object(|p, key| match key {
            "name" => p.once(&mut seen, 1, Self::opt_string).map(|v| out.name = v),
            "generateName" => p
                .once(&mut seen, 2, Self::opt_string)
                .map(|v| out.generate_name = v),
            "namespace" => p
                .once(&mut seen, 4, Self::opt_string)
                .map(|v| out.namespace = v),
            "labels" => p
                .once(&mut seen, 8, |p| p.opt_string_map(|v| v))
                .map(|v| out.labels = v),
            "annotations" => p
                .once(&mut seen, 16, |p| p.opt_string_map(|v| v))
                .map(|v| out.annotations = v),
            "ownerReferences" => p
                .once(&mut seen, 32, |p| {
                    p.nullable(|p| p.list(Self::owner_reference))
                })
                .map(|v| out.owner_references = v),
            _ => p.skip(),
        })?;
        Ok(out)
    }

    fn owner_reference(&mut self) -> R<OwnerReference> {
        let (mut api_version, mut kind, mut name, mut uid) = (None, None, None, None);
        let (mut controller, mut block_owner_deletion) = (None, None);
        let mut seen = 0;
        self.object(|p, key| match key {
            "apiVersion" => p
                .once(&mut seen, 1, Self::owned_string)
                .map(|v| api_version = Some(v)),
            "kind" => p
                .once(&mut seen, 2, Self::owned_string)
                .map(|v| kind = Some(v)),
            "name" => p
                .once(&mut seen, 4, Self::owned_string)
                .map(|v| name = Some(v)),
            "uid" => p
                .once(&mut seen, 8, Self::owned_string)
                .map(|v| uid = Some(v)),
            "controller" => p
                .once(&mut seen, 16, Self::opt_bool)
                .map(|v| controller = v),
            "blockOwnerDeletion" => p
                .once(&mut seen, 32, Self::opt_bool)
                .map(|v| block_owner_deletion = v),
            _ => p.skip(),
        })?;
        // The four names are required (k8s-openapi rejects a reference without one).
        Ok(OwnerReference {
            api_version: api_version.ok_or(Bail)?,
            kind: kind.ok_or(Bail)?,
            name: name.ok_or(Bail)?,
            uid: uid.ok_or(Bail)?,
            controller,
            block_owner_deletion,
        })
    }

    fn opt_bool(&mut self) -> R<Option<bool>> {
        match self.peek() {
            Some(b'n') => self.literal(b"null").map(|()| None),
            Some(b't') => self.literal(b"true").map(|()| Some(true)),
            Some(b'f') => self.literal(b"false").map(|()| Some(false)),
            _ => Err(Bail),
        }
    }

    fn spec(&mut self) -> R<PodSpecView> {
        let mut out = PodSpecView::default();
        let mut seen = 0;
        self.object(|p, key| match key {
            "containers" => p
                .once(&mut seen, 1, Self::containers)
                .map(|v| out.containers = v),
            "initContainers" => p
                .once(&mut seen, 2, |p| p.nullable(Self::containers))
                .map(|v| out.init_containers = v),
            _ => p.skip(),
        })?;
        Ok(out)
    }

    fn containers(&mut self) -> R<Vec<ContainerView>> {
        self.list(Self::container)
    }

    fn container(&mut self) -> R<ContainerView> {
        let mut out = ContainerView::default();
        let mut seen = 0;
        self.object(|p, key| match key {
            "name" => p
                .once(&mut seen, 1, Self::owned_string)
                .map(|v| out.name = v),
            "restartPolicy" => p
                .once(&mut seen, 2, Self::opt_string)
                .map(|v| out.restart_policy = v),
            "resources" => p
                .once(&mut seen, 4, |p| p.nullable(Self::resources))
                .map(|v| out.resources = v),
            "env" => p
                .once(&mut seen, 8, Self::with_serde::<Option<Vec<EnvVar>>>)
                .map(|v| out.env = v),
            _ => p.skip(),
        })?;
        Ok(out)
    }

    fn resources(&mut self) -> R<ResourceRequirements> {
        let mut out = ResourceRequirements::default();
        let mut seen = 0;
        self.object(|p, key| match key {
            "claims" => p
                .once(&mut seen, 1, Self::with_serde::<Option<Vec<ResourceClaim>>>)
                .map(|v| out.claims = v),
            "limits" => p
                .once(&mut seen, 2, |p| p.opt_string_map(Quantity))
                .map(|v| out.limits = v),
            "requests" => p
                .once(&mut seen, 4, |p| p.opt_string_map(Quantity))
                .map(|v| out.requests = v),
            _ => p.skip(),
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_decode(text: &str) -> Option<PodReviewIn<'_>> {
        serde_json::from_str(text).ok()
    }

    /// What the fast decoder gives must be what serde gives.
    fn check(text: &str) -> Option<PodReviewIn<'_>> {
        let fast = pod_review(text);
        if let Some(fast) = &fast {
            assert_eq!(Some(fast), serde_decode(text).as_ref(), "{text}");
        }
        fast
    }

    const EXAMPLE: &str = include_str!("../../../examples/admission-review.json");

    #[test]
    fn decodes_the_example_as_serde_does() {
        let review = check(EXAMPLE).expect("the example takes the fast path");
        let pod = review.request.and_then(|r| r.object).expect("a pod");
        assert_eq!(pod.spec.map(|s| s.containers.len()), Some(1));
    }

    #[test]
    fn decodes_compact_text_and_escapes() {
        let compact = serde_json::to_string(
            &serde_json::from_str::<serde_json::Value>(EXAMPLE).expect("JSON"),
        )
        .expect("JSON");
        assert!(check(&compact).is_some());
        let escaped = EXAMPLE.replace(
            r#""example.com/owner": "team-a""#,
            r#""example.com/owner": "t\"e\\a\/m\n\u00e9\ud83d\ude00\u003c""#,
        );
        let review = check(&escaped).expect("escapes in values take the fast path");
        let ann = review
            .request
            .and_then(|r| r.object)
            .and_then(|p| p.metadata.annotations)
            .expect("annotations");
        assert_eq!(ann["example.com/owner"], "t\"e\\a/m\né😀<");
    }

    #[test]
    fn gives_up_where_serde_must_decide() {
        for (what, text) in [
            (
                "repeated field",
                EXAMPLE.replace(
                    r#""operation": "CREATE","#,
                    r#""operation": "CREATE", "operation": "CREATE","#,
                ),
            ),
            (
                "escaped field name",
                EXAMPLE.replace(r#""operation""#, r#""op\u0065ration""#),
            ),
            ("lone surrogate", EXAMPLE.replace("team-a", r"\ud800")),
            (
                "numeric quantity",
                EXAMPLE.replace(r#""cpu": "500m""#, r#""cpu": 2"#),
            ),
            ("control character", EXAMPLE.replace("team-a", "team\u{1}a")),
            (
                "bad number",
                EXAMPLE.replace(r#""containerPort": 8080"#, r#""containerPort": 08080"#),
            ),
            ("trailing text", format!("{EXAMPLE} x")),
            (
                "null uid",
                EXAMPLE.replace(r#""705ab4f5-6393-11e8-b7cc-42010a800002""#, "null"),
            ),
            (
                "deep nesting",
                EXAMPLE.replace(
                    r#""dryRun": false"#,
                    &format!(r#""dryRun": {}{}"#, "[".repeat(120), "]".repeat(120)),
                ),
            ),
        ] {
            assert!(check(&text).is_none(), "{what}");
        }
    }

    #[test]
    fn owner_references_and_env_as_serde_reads_them() {
        for (from, to) in [
            (
                r#""controller": true"#,
                r#""controller": null, "extra": [1, {"a": "b"}]"#,
            ),
            (
                r#""controller": true, "blockOwnerDeletion": true"#,
                r#""controller": false"#,
            ),
            (
                r#""ownerReferences": ["#,
                r#""ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "u"}, "#,
            ),
            (
                r#""restartPolicy": "Always","#,
                r#""restartPolicy": "Always", "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],"#,
            ),
            (
                r#""ownerReferences": ["#,
                r#""ownerReferences": null, "x": ["#,
            ),
        ] {
            let text = EXAMPLE.replace(from, to);
            assert_ne!(text, EXAMPLE, "{from}");
            assert!(check(&text).is_some(), "{to}");
        }
    }

    proptest::proptest! {
        /// Any strings serde writes (escapes, control characters, any
        /// Unicode) in labels, annotations and skipped fields, pretty or
        /// compact: the fast path takes them and reads what serde reads.
        #[test]
        fn strings_of_any_text_read_as_serde_reads_them(
            labels in proptest::collection::btree_map(".{0,12}", ".{0,24}", 0..6),
            skipped in ".{0,40}",
            pretty in proptest::bool::ANY,
        ) {
            let mut v: serde_json::Value = serde_json::from_str(EXAMPLE).expect("JSON");
            v["request"]["object"]["metadata"]["labels"] = serde_json::json!(labels);
            v["request"]["userInfo"]["username"] = serde_json::json!(skipped);
            let text = if pretty {
                serde_json::to_string_pretty(&v)
            } else {
                serde_json::to_string(&v)
            }
            .expect("JSON");
            let fast = check(&text);
            proptest::prop_assert!(fast.is_some());
            let read = fast
                .and_then(|r| r.request)
                .and_then(|r| r.object)
                .and_then(|p| p.metadata.labels);
            proptest::prop_assert_eq!(read, Some(labels));
        }

        /// Whitespace of any kind and length between the tokens (before and
        /// after the document too): the fast path takes it and reads what
        /// serde reads.
        #[test]
        fn any_whitespace_between_tokens_reads_as_serde_reads_it(
            gaps in proptest::collection::vec("[ \t\r\n]{0,19}", 1..400),
        ) {
            let compact = serde_json::to_string(
                &serde_json::from_str::<serde_json::Value>(EXAMPLE).expect("JSON"),
            )
            .expect("JSON");
            // A gap after every structural character outside strings (the
            // example's strings have no escaped quotes).
            let mut text = gaps[0].clone();
            let mut next = gaps.iter().cycle().skip(1);
            let mut in_string = false;
            for c in compact.chars() {
                text.push(c);
                if c == '"' {
                    in_string = !in_string;
                } else if !in_string && "{}[],:".contains(c) {
                    text.push_str(next.next().map_or("", String::as_str));
                }
            }
            let fast = check(&text);
            proptest::prop_assert!(fast.is_some(), "{}", text);
            proptest::prop_assert_eq!(fast, serde_decode(&compact));
        }
    }

    #[test]
    fn skipping_is_as_strict_as_serde() {
        for value in [
            "1",
            "-0.5e+3",
            "1E9",
            "true",
            "null",
            r#""a\u00ZZ""#,
            "01",
            "1.",
            "-",
            ".5",
            "1e",
            "tru",
            "[1,]",
            "{\"a\":1,}",
            "[1 2]",
            r#"{"a" 1}"#,
            "\"\t\"",
            r#""\x""#,
            "[]",
            "{}",
            r#"[{"a":[{"b":null}]}]"#,
        ] {
            let text = EXAMPLE.replace(r#""dryRun": false"#, &format!(r#""dryRun": {value}"#));
            let fast = check(&text);
            assert_eq!(fast.is_some(), serde_decode(&text).is_some(), "{value}");
        }
    }
}
