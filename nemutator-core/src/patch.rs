//! A structural JSON diff that emits RFC 6902 operations.
//!
//! Objects are compared key by key (`add`, `remove`, `replace`), arrays index
//! by index (`replace` for common indices, then `add` at the end or `remove`
//! from the back). That is exactly what a mutation that edits fields in place
//! needs, and it is an order of magnitude cheaper than general diff algorithms,
//! which matters on the admission path. Keys are escaped (`~` as `~0`, `/` as
//! `~1`) as paths are built.
//!
//! The diff emits [`Ops`], whose paths are already-escaped text and which
//! write themselves as JSON directly; [`Ops::to_patch`] gives json-patch's
//! typed [`Patch`] where one is wanted (the CLI, tests), at the cost of
//! validating every path again.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use serde::Serialize;
use serde_json::Value;

use crate::mutate::{ContainerView, PodView};

/// The fields of a container that mutation layers may change.
#[derive(Clone, Debug, PartialEq)]
struct ContainerSnapshot {
    resources: Option<ResourceRequirements>,
    env: Option<Vec<EnvVar>>,
}

impl ContainerSnapshot {
    fn of(c: &ContainerView) -> Self {
        ContainerSnapshot {
            resources: c.resources.clone(),
            env: c.env.clone(),
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
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
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
    /// Serialising a changed field failed.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A path did not make a valid JSON Pointer (a bug in the escaping).
    #[error("invalid JSON pointer: {0}")]
    Pointer(String),
}

impl PodSnapshot {
    /// Snapshot the mutable parts of `pod`.
    pub fn of(pod: &PodView) -> Self {
        let spec = pod.spec.as_ref();
        PodSnapshot {
            labels: pod.metadata.labels.clone(),
            annotations: pod.metadata.annotations.clone(),
            containers: spec
                .map(|s| s.containers.iter().map(ContainerSnapshot::of).collect())
                .unwrap_or_default(),
            init_containers: spec
                .and_then(|s| s.init_containers.as_ref())
                .map(|v| v.iter().map(ContainerSnapshot::of).collect()),
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
        let mut ops = Vec::new();
        let mut path = Path::default();
        let meta = &pod.metadata;
        let at = path.push("metadata");
        map_field(
            &mut path,
            "annotations",
            self.annotations.as_ref(),
            meta.annotations.as_ref(),
            &mut ops,
        )?;
        map_field(
            &mut path,
            "labels",
            self.labels.as_ref(),
            meta.labels.as_ref(),
            &mut ops,
        )?;
        path.truncate(at);
        let Some(spec) = pod.spec.as_ref() else {
            return if self.has_spec {
                Err(SnapshotError::Shape)
            } else {
                Ok(Ops(ops))
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
                        if b.resources == a.resources && b.env == a.env {
                            continue;
                        }
                        let item = path.push_index(i);
                        resources_field(
                            &mut path,
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
        Ok(Ops(ops))
    }
}

/// What an [`Op`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// `add`
    Add,
    /// `remove`
    Remove,
    /// `replace`
    Replace,
}

/// One RFC 6902 operation with its path as escaped JSON Pointer text.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    /// The operation.
    pub kind: OpKind,
    /// The JSON Pointer (`/metadata/annotations/nemutator.io~1season`).
    pub path: String,
    /// The value (`add` and `replace`).
    pub value: Option<Value>,
}

/// A list of operations: a JSON Patch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ops(pub Vec<Op>);

impl Ops {
    /// No operations.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Append the RFC 6902 JSON array (members in the order json-patch
    /// writes them: `op`, `path`, `value`).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, op) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(match op.kind {
                OpKind::Add => br#"{"op":"add","path":"#.as_slice(),
                OpKind::Remove => br#"{"op":"remove","path":"#.as_slice(),
                OpKind::Replace => br#"{"op":"replace","path":"#.as_slice(),
            });
            crate::json::write_str(out, &op.path);
            if let Some(v) = &op.value {
                out.extend_from_slice(br#","value":"#);
                crate::json::write_value(out, v);
            }
            out.push(b'}');
        }
        out.push(b']');
    }

    /// The same operations as json-patch's typed [`Patch`].
    pub fn to_patch(&self) -> Result<Patch, SnapshotError> {
        self.0
            .iter()
            .map(|op| {
                let path = PointerBuf::parse(op.path.as_str())
                    .map_err(|e| SnapshotError::Pointer(e.to_string()))?;
                let value = op.value.clone().unwrap_or_default();
                Ok(match op.kind {
                    OpKind::Add => PatchOperation::Add(AddOperation { path, value }),
                    OpKind::Remove => PatchOperation::Remove(RemoveOperation { path }),
                    OpKind::Replace => PatchOperation::Replace(ReplaceOperation { path, value }),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Patch)
    }
}

/// A JSON Pointer being built by the diff: tokens are escaped as they are
/// pushed (`~` as `~0`, `/` as `~1`) and popping is a truncation, which is
/// much cheaper than editing a [`PointerBuf`] token by token.
#[derive(Default)]
struct Path {
    text: String,
}

impl Path {
    /// Append `token`; returns the length to [`Path::truncate`] back to.
    fn push(&mut self, token: &str) -> usize {
        let len = self.text.len();
        self.text.push('/');
        if token.contains(['~', '/']) {
            for ch in token.chars() {
                match ch {
                    '~' => self.text.push_str("~0"),
                    '/' => self.text.push_str("~1"),
                    c => self.text.push(c),
                }
            }
        } else {
            self.text.push_str(token);
        }
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

    /// An operation at this path.
    fn op(&self, kind: OpKind, value: Option<Value>) -> Op {
        Op {
            kind,
            path: self.text.clone(),
            value,
        }
    }

    /// An operation at this path with `token` appended (a map key).
    fn op_at(&mut self, token: &str, kind: OpKind, value: Option<Value>) -> Op {
        let at = self.push(token);
        let op = self.op(kind, value);
        self.truncate(at);
        op
    }
}

/// The operations that turn pod `from` into pod `to`: [`diff`] of their JSON
/// forms. The reference [`PodSnapshot::diff`] is checked against.
pub fn diff_pods(from: &PodView, to: &PodView) -> Result<Patch, SnapshotError> {
    diff(&serde_json::to_value(from)?, &serde_json::to_value(to)?)
}

/// Diff an optional string-keyed map field key by key, serialising only the
/// values that changed.
fn map_field<V: Serialize + PartialEq>(
    path: &mut Path,
    key: &str,
    a: Option<&BTreeMap<String, V>>,
    b: Option<&BTreeMap<String, V>>,
    ops: &mut Vec<Op>,
) -> Result<(), SnapshotError> {
    let (Some(a), Some(b)) = (a, b) else {
        return field(path, key, a, b, ops);
    };
    if a == b {
        return Ok(());
    }
    let at = path.push(key);
    for (k, va) in a {
        match b.get(k) {
            None => ops.push(path.op_at(k, OpKind::Remove, None)),
            Some(vb) if vb != va => {
                let value = serde_json::to_value(vb)?;
                ops.push(path.op_at(k, OpKind::Replace, Some(value)));
            }
            Some(_) => {}
        }
    }
    for (k, vb) in b {
        if !a.contains_key(k) {
            let value = serde_json::to_value(vb)?;
            ops.push(path.op_at(k, OpKind::Add, Some(value)));
        }
    }
    path.truncate(at);
    Ok(())
}

/// Diff a container's `resources`, its request and limit maps key by key.
fn resources_field(
    path: &mut Path,
    a: Option<&ResourceRequirements>,
    b: Option<&ResourceRequirements>,
    ops: &mut Vec<Op>,
) -> Result<(), SnapshotError> {
    let (Some(a), Some(b)) = (a, b) else {
        return field(path, "resources", a, b, ops);
    };
    if a == b {
        return Ok(());
    }
    let at = path.push("resources");
    field(path, "claims", a.claims.as_ref(), b.claims.as_ref(), ops)?;
    map_field(path, "limits", a.limits.as_ref(), b.limits.as_ref(), ops)?;
    map_field(
        path,
        "requests",
        a.requests.as_ref(),
        b.requests.as_ref(),
        ops,
    )?;
    path.truncate(at);
    Ok(())
}

/// Diff one optional field of the object at `path`.
fn field<T: Serialize + PartialEq>(
    path: &mut Path,
    key: &str,
    a: Option<&T>,
    b: Option<&T>,
    ops: &mut Vec<Op>,
) -> Result<(), SnapshotError> {
    if a == b {
        return Ok(());
    }
    let at = path.push(key);
    match (a, b) {
        (Some(a), Some(b)) => walk(
            &serde_json::to_value(a)?,
            &serde_json::to_value(b)?,
            path,
            ops,
        ),
        (None, Some(b)) => ops.push(path.op(OpKind::Add, Some(serde_json::to_value(b)?))),
        (Some(_), None) => ops.push(path.op(OpKind::Remove, None)),
        (None, None) => {}
    }
    path.truncate(at);
    Ok(())
}

/// The operations that turn `from` into `to`.
pub fn diff(from: &Value, to: &Value) -> Result<Patch, SnapshotError> {
    let mut ops = Vec::new();
    walk(from, to, &mut Path::default(), &mut ops);
    Ops(ops).to_patch()
}

fn walk(from: &Value, to: &Value, path: &mut Path, ops: &mut Vec<Op>) {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                match b.get(k) {
                    Some(vb) => {
                        let at = path.push(k);
                        walk(va, vb, path, ops);
                        path.truncate(at);
                    }
                    None => ops.push(path.op_at(k, OpKind::Remove, None)),
                }
            }
            for (k, vb) in b {
                if !a.contains_key(k) {
                    ops.push(path.op_at(k, OpKind::Add, Some(vb.clone())));
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
                ops.push(path.op(OpKind::Add, Some(vb.clone())));
                path.truncate(at);
            }
            for i in (common..a.len()).rev() {
                let at = path.push_index(i);
                ops.push(path.op(OpKind::Remove, None));
                path.truncate(at);
            }
        }
        (a, b) if a == b => {}
        (_, b) => ops.push(path.op(OpKind::Replace, Some(b.clone()))),
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
        let op = |kind, path: &str, value: Option<Value>| Op {
            kind,
            path: path.to_string(),
            value,
        };
        let ops = Ops(vec![
            op(
                OpKind::Add,
                "/metadata/annotations/nemutator.io~1resources-applied",
                Some(Value::from("app: cpu 500m->260m\n\"x\"")),
            ),
            op(OpKind::Remove, "/a~0b", None),
            op(
                OpKind::Replace,
                "/spec/containers/0/resources",
                Some(json!({"requests": {"cpu": "1"}, "n": [1, null, true, 1.5]})),
            ),
        ]);
        let mut out = Vec::new();
        ops.write_json(&mut out);
        let typed = ops.to_patch().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&serde_json::to_vec(&typed).unwrap_or_default())
        );
        let mut empty = Vec::new();
        Ops::default().write_json(&mut empty);
        assert_eq!(empty, b"[]");
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

        #[test]
        fn patch_turns_from_into_to(a in arb_json(), b in arb_json()) {
            let p = diff(&a, &b);
            let mut x = a.clone();
            prop_assert!(json_patch::patch(&mut x, &p).is_ok());
            prop_assert_eq!(x, b);
        }
    }
}
