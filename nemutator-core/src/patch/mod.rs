//! RFC 6902 JSON Patch from the difference of two pod views.
//!
//! The patch is written by [`Diff`], implemented for every type a field of
//! the view ([`crate::mutate::PodView`]) can have, so a field cannot be
//! added to the view without saying how it is patched (it fails to compile):
//!
//! - a map of strings (labels, annotations, resource quantities): key by key;
//! - a list of named elements (containers, init containers, volumes, env
//!   vars, volume mounts, image pull secrets): elements are matched by name
//!   (volume mounts by `mountPath`, the API's list key), an element that is
//!   new is added whole (`add` at its index, or at `-` at the end), one that
//!   is gone removed, and a kept one patched field by field. Elements the
//!   view models only in part (containers) are so never rewritten, and the
//!   fields of the object the view does not model are never touched;
//! - an atomic list (`command`, `args`, `ownerReferences`): replaced whole;
//! - a list layers only append to (affinity terms, `tolerations`): new
//!   elements added at `-` after the kept ones, which stay as they are; any
//!   other change replaces it whole;
//! - anything else: added, removed, or walked as JSON values ([`diff`]).
//!
//! Keys are escaped (`~` as `~0`, `/` as `~1`) as paths are built. The diff
//! writes [`Ops`], the patch's JSON text, as it finds each operation;
//! [`Ops::to_patch`] gives json-patch's typed [`Patch`] where one is wanted
//! (the CLI, tests), at the cost of parsing that text (which checks every
//! path again).

mod diff;
mod k8s;
mod lists;
mod ops;

use json_patch::Patch;
use serde_json::Value;

pub(crate) use diff::{plain_key, view_struct, Arena, Diff};
pub(crate) use ops::Path;
pub use ops::{OpKind, Ops};

use crate::mutate::PodView;

/// The pod as it came in, to diff the mutated pod against: its strings in
/// one buffer, not a clone of the view (see [`diff`]).
pub struct PodSnapshot {
    arena: Arena,
    pod: <PodView as Diff>::Snap,
    /// The view itself, for the check of every patch in debug builds.
    #[cfg(debug_assertions)]
    original: PodView,
}

impl std::fmt::Debug for PodSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodSnapshot")
            .field("bytes", &self.arena.len())
            .finish_non_exhaustive()
    }
}

/// A mutation changed the pod in a way a patch cannot express.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Elements of a named list kept by the mutation changed their order
    /// (the path of the list): moving them would mean rewriting them whole,
    /// and losing the fields of theirs the view does not model.
    #[error("a mutation reordered the elements of {0}, which the patch does not express")]
    Reordered(String),
    /// Serialising a changed field failed, or the patch text did not read
    /// back as a JSON Patch (a bug in the escaping).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl PodSnapshot {
    /// Keep `pod` as it is before the mutation chain.
    pub fn of(pod: &PodView) -> Self {
        let mut arena = Arena::with_capacity(512);
        let snap = pod.snap(&mut arena);
        PodSnapshot {
            arena,
            pod: snap,
            #[cfg(debug_assertions)]
            original: pod.clone(),
        }
    }

    /// The pod as snapshotted (debug builds only).
    #[cfg(debug_assertions)]
    pub fn original(&self) -> &PodView {
        &self.original
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
        pod.diff(&self.pod, &self.arena, &mut path, &mut ops)?;
        Ok(ops)
    }
}

/// The operations that turn view `from` into view `to` (see the module
/// documentation for how each kind of field is patched).
pub fn diff_views(from: &PodView, to: &PodView) -> Result<Ops, SnapshotError> {
    PodSnapshot::of(from).diff_ops(to)
}

/// The operations that turn pod `from` into pod `to`: [`diff`] of their JSON
/// forms, lists index by index (what [`diff_views`] gives where the layers
/// only edit maps and fields in place; the tests compare them).
pub fn diff_pods(from: &PodView, to: &PodView) -> Result<Patch, SnapshotError> {
    diff(&serde_json::to_value(from)?, &serde_json::to_value(to)?)
}

/// The operations that turn `from` into `to`.
pub fn diff(from: &Value, to: &Value) -> Result<Patch, SnapshotError> {
    let mut ops = Ops::default();
    walk(from, to, &mut Path::default(), &mut ops);
    ops.to_patch()
}

pub(crate) fn walk(from: &Value, to: &Value, path: &mut Path, ops: &mut Ops) {
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
    use crate::mutate::ContainerView;
    use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
    use std::collections::BTreeMap;

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
                    ..Default::default()
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
