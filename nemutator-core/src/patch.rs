//! A structural JSON diff that emits RFC 6902 operations.
//!
//! Objects are compared key by key (`add`, `remove`, `replace`), arrays index
//! by index (`replace` for common indices, then `add` at the end or `remove`
//! from the back). That is exactly what a mutation that edits fields in place
//! needs, and it is an order of magnitude cheaper than general diff algorithms,
//! which matters on the admission path. Keys are escaped (`~` as `~0`, `/` as
//! `~1`) as paths are built.
//!
//! The diff writes [`Ops`], the patch's JSON text, as it finds each
//! operation; [`Ops::to_patch`] gives json-patch's typed [`Patch`] where one
//! is wanted (the CLI, tests), at the cost of parsing that text (which checks
//! every path again).

use json_patch::Patch;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceClaim, ResourceRequirements};
use serde::Serialize;
use serde_json::Value;

use crate::mutate::{ContainerView, PodView};

/// The string maps of a snapshot (labels, annotations, resource requests
/// and limits) copied into one buffer, in key order: two allocations for all
/// of them instead of two per entry and a tree per map.
#[derive(Clone, Debug, Default, PartialEq)]
struct Flat {
    text: String,
    /// Per entry, where its key starts and where its key and its value end
    /// in `text`.
    entries: Vec<[usize; 3]>,
}

/// One map of a [`Flat`]: a run of its entries.
#[derive(Clone, Copy, Debug, PartialEq)]
struct FlatMap {
    from: usize,
    to: usize,
}

impl Flat {
    fn add<V: MapValue>(&mut self, map: Option<&BTreeMap<String, V>>) -> Option<FlatMap> {
        let map = map?;
        let from = self.entries.len();
        for (k, v) in map {
            let start = self.text.len();
            self.text.push_str(k);
            let key_end = self.text.len();
            self.text.push_str(v.text());
            self.entries.push([start, key_end, self.text.len()]);
        }
        Some(FlatMap {
            from,
            to: self.entries.len(),
        })
    }

    fn entry(&self, i: usize) -> (&str, &str) {
        let [start, key_end, end] = self.entries.get(i).copied().unwrap_or_default();
        (
            self.text.get(start..key_end).unwrap_or_default(),
            self.text.get(key_end..end).unwrap_or_default(),
        )
    }

    fn entries(&self, m: FlatMap) -> impl Iterator<Item = (&str, &str)> {
        (m.from..m.to).map(|i| self.entry(i))
    }

    /// Whether `m` holds what `b` holds.
    fn same<V: MapValue>(&self, m: Option<FlatMap>, b: Option<&BTreeMap<String, V>>) -> bool {
        match (m, b) {
            (None, None) => true,
            (Some(m), Some(b)) => {
                m.to - m.from == b.len()
                    && self
                        .entries(m)
                        .zip(b)
                        .all(|((k, v), (bk, bv))| k == bk && v == bv.text())
            }
            _ => false,
        }
    }

    /// Whether `m` has `key` (entries are in key order).
    fn contains_key(&self, m: FlatMap, key: &str) -> bool {
        let (mut lo, mut hi) = (m.from, m.to);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.entry(mid).0.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }
}

/// A container's `resources` as snapshotted.
#[derive(Clone, Debug, PartialEq)]
struct ResourcesSnapshot {
    claims: Option<Vec<ResourceClaim>>,
    limits: Option<FlatMap>,
    requests: Option<FlatMap>,
}

/// The fields of a container that mutation layers may change.
#[derive(Clone, Debug, PartialEq)]
struct ContainerSnapshot {
    resources: Option<ResourcesSnapshot>,
    env: Option<Vec<EnvVar>>,
}

impl ContainerSnapshot {
    fn of(c: &ContainerView, flat: &mut Flat) -> Self {
        ContainerSnapshot {
            resources: c.resources.as_ref().map(|r| ResourcesSnapshot {
                claims: r.claims.clone(),
                limits: flat.add(r.limits.as_ref()),
                requests: flat.add(r.requests.as_ref()),
            }),
            env: c.env.clone(),
        }
    }

    /// Whether `c` still has what was snapshotted.
    fn same(&self, flat: &Flat, c: &ContainerView) -> bool {
        self.env == c.env
            && match (&self.resources, &c.resources) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    a.claims == b.claims
                        && flat.same(a.limits, b.limits.as_ref())
                        && flat.same(a.requests, b.requests.as_ref())
                }
                _ => false,
            }
    }
}

/// The parts of a pod that mutation layers may change: labels, annotations,
/// and each container's `resources` and `env`. Taking this instead of a
/// whole-pod clone before the mutation chain keeps the admission path cheap;
/// [`PodSnapshot::diff`] gives the same patch as [`diff_pods`] as long as the
/// layers change nothing else (debug builds check that on every review).
#[derive(Clone, Debug, PartialEq)]
pub struct PodSnapshot {
    flat: Flat,
    labels: Option<FlatMap>,
    annotations: Option<FlatMap>,
    containers: Vec<ContainerSnapshot>,
    init_containers: Option<Vec<ContainerSnapshot>>,
    has_spec: bool,
}

/// A mutation changed the pod outside what [`PodSnapshot`] covers.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Containers were added or removed.
    #[error("a mutation added or removed containers, which the patch cannot express")]
    Shape,
    /// Serialising a changed field failed, or the patch text did not read
    /// back as a JSON Patch (a bug in the escaping).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl PodSnapshot {
    /// Snapshot the mutable parts of `pod`.
    pub fn of(pod: &PodView) -> Self {
        let spec = pod.spec.as_ref();
        let mut flat = Flat {
            text: String::with_capacity(256),
            entries: Vec::with_capacity(16),
        };
        let labels = flat.add(pod.metadata.labels.as_ref());
        let annotations = flat.add(pod.metadata.annotations.as_ref());
        let containers = spec
            .map(|s| {
                s.containers
                    .iter()
                    .map(|c| ContainerSnapshot::of(c, &mut flat))
                    .collect()
            })
            .unwrap_or_default();
        let init_containers = spec.and_then(|s| s.init_containers.as_ref()).map(|v| {
            v.iter()
                .map(|c| ContainerSnapshot::of(c, &mut flat))
                .collect()
        });
        PodSnapshot {
            flat,
            labels,
            annotations,
            containers,
            init_containers,
            has_spec: spec.is_some(),
        }
    }

    /// The operations that turn the snapshotted pod into `pod`, as a typed
    /// json-patch [`Patch`].
    pub fn diff(&self, pod: &PodView) -> Result<Patch, SnapshotError> {
        self.diff_ops(pod)?.to_patch()
    }

    /// The operations that turn the snapshotted pod into `pod`.
    pub fn diff_ops(&self, pod: &PodView) -> Result<Ops, SnapshotError> {
        let mut ops = Ops::with_capacity(1024);
        let mut path = Path {
            text: String::with_capacity(128),
        };
        let meta = &pod.metadata;
        let at = path.push("metadata");
        let flat = &self.flat;
        map_field(
            &mut path,
            "annotations",
            flat,
            self.annotations,
            meta.annotations.as_ref(),
            &mut ops,
        )?;
        map_field(
            &mut path,
            "labels",
            flat,
            self.labels,
            meta.labels.as_ref(),
            &mut ops,
        )?;
        path.truncate(at);
        let Some(spec) = pod.spec.as_ref() else {
            return if self.has_spec {
                Err(SnapshotError::Shape)
            } else {
                Ok(ops)
            };
        };
        path.push("spec");
        let lists = [
            ("containers", Some(&self.containers), Some(&spec.containers)),
            (
                "initContainers",
                self.init_containers.as_ref(),
                spec.init_containers.as_ref(),
            ),
        ];
        for (key, before, after) in lists {
            match (before, after) {
                (None, None) => {}
                (Some(b), Some(a)) if b.len() == a.len() => {
                    let list = path.push(key);
                    for (i, (b, a)) in b.iter().zip(a).enumerate() {
                        if b.same(flat, a) {
                            continue;
                        }
                        let item = path.push_index(i);
                        resources_field(
                            &mut path,
                            flat,
                            b.resources.as_ref(),
                            a.resources.as_ref(),
                            &mut ops,
                        )?;
                        field(&mut path, "env", b.env.as_ref(), a.env.as_ref(), &mut ops)?;
                        path.truncate(item);
                    }
                    path.truncate(list);
                }
                _ => return Err(SnapshotError::Shape),
            }
        }
        Ok(ops)
    }
}

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
    fn with_capacity(bytes: usize) -> Self {
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
    fn open(&mut self, kind: OpKind, path: &str) -> &mut Vec<u8> {
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

    fn close(&mut self) {
        self.json.extend_from_slice(b"}]");
    }

    fn remove(&mut self, path: &str) {
        self.open(OpKind::Remove, path);
        self.close();
    }

    fn with_str(&mut self, kind: OpKind, path: &str, value: &str) {
        crate::json::write_str(self.open(kind, path), value);
        self.close();
    }

    fn with_value(&mut self, kind: OpKind, path: &str, value: &Value) {
        crate::json::write_value(self.open(kind, path), value);
        self.close();
    }

    fn with_serde<T: Serialize + ?Sized>(
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
struct Path {
    text: String,
}

impl Path {
    /// Append `token`; returns the length to [`Path::truncate`] back to.
    fn push(&mut self, token: &str) -> usize {
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

    fn push_index(&mut self, i: usize) -> usize {
        let len = self.text.len();
        self.text.push('/');
        self.text.push_str(itoa::Buffer::new().format(i));
        len
    }

    fn truncate(&mut self, len: usize) {
        self.text.truncate(len);
    }

    /// `token` appended for the duration of `f` (a map key).
    fn at<R>(&mut self, token: &str, f: impl FnOnce(&str) -> R) -> R {
        let at = self.push(token);
        let r = f(&self.text);
        self.truncate(at);
        r
    }
}

/// The operations that turn pod `from` into pod `to`: [`diff`] of their JSON
/// forms. The reference [`PodSnapshot::diff`] is checked against.
pub fn diff_pods(from: &PodView, to: &PodView) -> Result<Patch, SnapshotError> {
    diff(&serde_json::to_value(from)?, &serde_json::to_value(to)?)
}

/// A value of a string-keyed map the snapshot covers (labels, annotations,
/// resource quantities): a JSON string.
trait MapValue: Serialize + PartialEq {
    fn text(&self) -> &str;
}

impl MapValue for String {
    fn text(&self) -> &str {
        self
    }
}

impl MapValue for k8s_openapi::apimachinery::pkg::api::resource::Quantity {
    fn text(&self) -> &str {
        &self.0
    }
}

/// Diff an optional string-keyed map field key by key, writing only the
/// values that changed.
fn map_field<V: MapValue>(
    path: &mut Path,
    key: &str,
    flat: &Flat,
    a: Option<FlatMap>,
    b: Option<&BTreeMap<String, V>>,
    ops: &mut Ops,
) -> Result<(), SnapshotError> {
    let (a, b) = match (a, b) {
        (None, None) => return Ok(()),
        (Some(_), None) => {
            path.at(key, |p| ops.remove(p));
            return Ok(());
        }
        (None, Some(b)) => return path.at(key, |p| ops.with_serde(OpKind::Add, p, b)),
        (Some(a), Some(b)) => (a, b),
    };
    if flat.same(Some(a), Some(b)) {
        return Ok(());
    }
    let at = path.push(key);
    for (k, va) in flat.entries(a) {
        match b.get(k) {
            None => path.at(k, |p| ops.remove(p)),
            Some(vb) if vb.text() != va => {
                path.at(k, |p| ops.with_str(OpKind::Replace, p, vb.text()))
            }
            Some(_) => {}
        }
    }
    for (k, vb) in b {
        if !flat.contains_key(a, k) {
            path.at(k, |p| ops.with_str(OpKind::Add, p, vb.text()));
        }
    }
    path.truncate(at);
    Ok(())
}

/// Diff a container's `resources`, its request and limit maps key by key.
fn resources_field(
    path: &mut Path,
    flat: &Flat,
    a: Option<&ResourcesSnapshot>,
    b: Option<&ResourceRequirements>,
    ops: &mut Ops,
) -> Result<(), SnapshotError> {
    let (a, b) = match (a, b) {
        (None, None) => return Ok(()),
        (Some(_), None) => {
            path.at("resources", |p| ops.remove(p));
            return Ok(());
        }
        (None, Some(b)) => return path.at("resources", |p| ops.with_serde(OpKind::Add, p, b)),
        (Some(a), Some(b)) => (a, b),
    };
    let at = path.push("resources");
    field(path, "claims", a.claims.as_ref(), b.claims.as_ref(), ops)?;
    map_field(path, "limits", flat, a.limits, b.limits.as_ref(), ops)?;
    map_field(path, "requests", flat, a.requests, b.requests.as_ref(), ops)?;
    path.truncate(at);
    Ok(())
}

/// Diff a field as a whole: added, removed, or (both present) walked as
/// JSON values.
fn field<T: Serialize + PartialEq>(
    path: &mut Path,
    key: &str,
    a: Option<&T>,
    b: Option<&T>,
    ops: &mut Ops,
) -> Result<(), SnapshotError> {
    if a == b {
        return Ok(());
    }
    let at = path.push(key);
    let result = match (a, b) {
        (Some(a), Some(b)) => {
            walk(
                &serde_json::to_value(a)?,
                &serde_json::to_value(b)?,
                path,
                ops,
            );
            Ok(())
        }
        (None, Some(b)) => ops.with_serde(OpKind::Add, &path.text, b),
        (Some(_), None) => {
            ops.remove(&path.text);
            Ok(())
        }
        (None, None) => Ok(()),
    };
    path.truncate(at);
    result
}

/// The operations that turn `from` into `to`.
pub fn diff(from: &Value, to: &Value) -> Result<Patch, SnapshotError> {
    let mut ops = Ops::default();
    walk(from, to, &mut Path::default(), &mut ops);
    ops.to_patch()
}

fn walk(from: &Value, to: &Value, path: &mut Path, ops: &mut Ops) {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                match b.get(k) {
                    Some(vb) => {
                        let at = path.push(k);
                        walk(va, vb, path, ops);
                        path.truncate(at);
                    }
                    None => path.at(k, |p| ops.remove(p)),
                }
            }
            for (k, vb) in b {
                if !a.contains_key(k) {
                    path.at(k, |p| ops.with_value(OpKind::Add, p, vb));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            let common = a.len().min(b.len());
            for i in 0..common {
                let at = path.push_index(i);
                walk(&a[i], &b[i], path, ops);
                path.truncate(at);
            }
            for (i, vb) in b.iter().enumerate().skip(common) {
                let at = path.push_index(i);
                ops.with_value(OpKind::Add, &path.text, vb);
                path.truncate(at);
            }
            for i in (common..a.len()).rev() {
                let at = path.push_index(i);
                ops.remove(&path.text);
                path.truncate(at);
            }
        }
        (a, b) if a == b => {}
        (_, b) => ops.with_value(OpKind::Replace, &path.text, b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`diff`], which cannot fail on paths it built itself.
    fn diff(a: &Value, b: &Value) -> Patch {
        super::diff(a, b).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn snapshot_diff_matches_the_full_diff() {
        let pod: PodView = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "annotations": {"a/b": "1"}},
            "spec": {
                "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}, {"name": "d"}],
                "initContainers": [{"name": "i", "restartPolicy": "Always"}]
            }
        }))
        .unwrap_or_default();
        let snap = PodSnapshot::of(&pod);
        let mut after = pod.clone();
        if let Some(spec) = after.spec.as_mut() {
            spec.containers[0].resources = None;
            spec.containers[1].env = Some(vec![EnvVar {
                name: "X".into(),
                value: Some("y".into()),
                value_from: None,
            }]);
            if let Some(init) = spec.init_containers.as_mut() {
                init[0].resources = Some(ResourceRequirements::default());
            }
        }
        after.metadata.labels = Some([("l".to_string(), "v".to_string())].into());
        after.metadata.annotations = None;
        let fast = snap.diff(&after).unwrap_or_else(|e| panic!("{e}"));
        let full = diff_pods(&pod, &after).unwrap_or_else(|e| panic!("{e}"));
        let key = |p: &Patch| {
            let mut v: Vec<String> =
                p.0.iter()
                    .map(|op| serde_json::to_string(op).unwrap_or_default())
                    .collect();
            v.sort();
            v
        };
        assert_eq!(key(&fast), key(&full));
        // Adding a container is outside what a snapshot can express.
        let mut grown = pod.clone();
        if let Some(spec) = grown.spec.as_mut() {
            spec.containers.push(ContainerView::default());
        }
        assert!(matches!(snap.diff(&grown), Err(SnapshotError::Shape)));
    }
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use proptest::prelude::*;
    use serde_json::json;

    fn roundtrip(a: Value, b: Value) {
        let p = diff(&a, &b);
        let mut x = a.clone();
        json_patch::patch(&mut x, &p).unwrap_or_else(|e| panic!("{e}: {p:?}"));
        assert_eq!(x, b, "{p:?}");
    }

    #[test]
    fn object_and_array_edits() {
        let a = json!({"a": 1, "b": {"c": [1, 2, 3]}, "gone": true});
        let b = json!({"a": 2, "b": {"c": [1, 5]}, "new": {"x": 1}});
        let p = diff(&a, &b);
        let ops = serde_json::to_value(&p).unwrap_or_default();
        assert_eq!(
            ops,
            json!([
                {"op": "replace", "path": "/a", "value": 2},
                {"op": "replace", "path": "/b/c/1", "value": 5},
                {"op": "remove", "path": "/b/c/2"},
                {"op": "remove", "path": "/gone"},
                {"op": "add", "path": "/new", "value": {"x": 1}},
            ])
        );
        roundtrip(a, b);
    }

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

    #[test]
    fn keys_are_escaped() {
        let a = json!({"metadata": {"annotations": {}}});
        let b = json!({"metadata": {"annotations": {"nemutator.io/x": "1", "a~b": "2"}}});
        let p = serde_json::to_value(diff(&a, &b)).unwrap_or_default();
        assert_eq!(p[0]["path"], "/metadata/annotations/a~0b");
        assert_eq!(p[1]["path"], "/metadata/annotations/nemutator.io~1x");
        roundtrip(a, b);
    }

    #[test]
    fn equal_values_give_no_ops() {
        let a = json!({"x": [1, {"y": null}]});
        assert!(diff(&a, &a.clone()).0.is_empty());
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-100i64..100).prop_map(Value::from),
            "[a-z/~]{0,4}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-c/~]{0,3}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn sorted_ops(p: &Patch) -> Vec<String> {
        let mut v: Vec<String> =
            p.0.iter()
                .map(|op| serde_json::to_string(op).unwrap_or_default())
                .collect();
        v.sort();
        v
    }

    /// A container's requests, limits, and whether it has `resources`.
    type ContainerMaps = (
        Option<BTreeMap<String, String>>,
        Option<BTreeMap<String, String>>,
        bool,
    );

    fn arb_map() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
        proptest::option::of(proptest::collection::btree_map(
            "[a-c/~.]{0,4}",
            "[xy]{0,2}",
            0..4,
        ))
    }

    proptest! {
        #[test]
        fn snapshot_diff_of_maps_matches_the_full_diff(
            (labels, annotations, labels2, annotations2) in (arb_map(), arb_map(), arb_map(), arb_map())
        ) {
            let mut pod = PodView::default();
            pod.metadata.labels = labels;
            pod.metadata.annotations = annotations;
            let snap = PodSnapshot::of(&pod);
            let mut after = pod.clone();
            after.metadata.labels = labels2;
            after.metadata.annotations = annotations2;
            let fast = snap.diff(&after).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let full = diff_pods(&pod, &after).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(sorted_ops(&fast), sorted_ops(&full));
        }

        /// Requests and limits of several containers, each map present or
        /// not, before and after: the snapshot's diff is the full diff.
        #[test]
        fn snapshot_diff_of_resources_matches_the_full_diff(
            before in proptest::collection::vec((arb_map(), arb_map(), any::<bool>()), 1..4),
            after in proptest::collection::vec((arb_map(), arb_map(), any::<bool>()), 1..4),
            labels in arb_map(),
        ) {
            let n = before.len().min(after.len());
            let pod_of = |maps: &[ContainerMaps]| {
                let q = |m: &Option<BTreeMap<String, String>>| {
                    m.as_ref().map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), Quantity(v.clone())))
                            .collect::<BTreeMap<_, _>>()
                    })
                };
                let containers = maps[..n]
                    .iter()
                    .enumerate()
                    .map(|(i, (requests, limits, has))| ContainerView {
                        name: format!("c{i}"),
                        resources: has.then(|| ResourceRequirements {
                            claims: None,
                            limits: q(limits),
                            requests: q(requests),
                        }),
                        ..ContainerView::default()
                    })
                    .collect();
                let mut pod = PodView::default();
                pod.metadata.labels = labels.clone();
                pod.spec = Some(crate::mutate::PodSpecView {
                    containers,
                    init_containers: None,
                });
                pod
            };
            let (pod, changed) = (pod_of(&before), pod_of(&after));
            let snap = PodSnapshot::of(&pod);
            let fast = snap.diff(&changed).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let full = diff_pods(&pod, &changed).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(sorted_ops(&fast), sorted_ops(&full));
            prop_assert!(snap.diff(&pod).map(|p| p.0.is_empty()).unwrap_or(false));
        }

        #[test]
        fn patch_turns_from_into_to(a in arb_json(), b in arb_json()) {
            let p = diff(&a, &b);
            let mut x = a.clone();
            prop_assert!(json_patch::patch(&mut x, &p).is_ok());
            prop_assert_eq!(x, b);
        }
    }
}
