//! The in-memory object map behind the API double.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::{NamespaceResourceScope, Resource};
use serde::Serialize;
use serde_json::{json, Value};

/// Identifies a kind of object the way its URL does: the group/version
/// prefix (`/api/v1`, `/apis/coordination.k8s.io/v1`) and the plural
/// (`pods`, `leases`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey {
    /// `/api/v1` or `/apis/<group>/<version>`.
    pub prefix: String,
    /// The plural in the URL, e.g. `pods`.
    pub plural: String,
}

impl ResourceKey {
    /// The key of a `k8s-openapi` type.
    pub fn of<K: Resource>() -> Self {
        let prefix = if K::GROUP.is_empty() {
            format!("/api/{}", K::VERSION)
        } else {
            format!("/apis/{}/{}", K::GROUP, K::VERSION)
        };
        ResourceKey {
            prefix,
            plural: K::URL_PATH_SEGMENT.to_owned(),
        }
    }
}

/// What the store knows about a kind of object.
#[derive(Debug, Clone)]
pub(crate) struct Kind {
    pub api_version: String,
    pub kind: String,
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub kinds: BTreeMap<ResourceKey, Kind>,
    /// (kind, namespace, name) -> object.
    pub objects: BTreeMap<(ResourceKey, String, String), Value>,
    /// The last resourceVersion handed out.
    pub revision: u64,
}

/// The objects the API double serves, shared between the test and the server.
///
/// Objects are kept as JSON exactly as seeded, plus what the API server
/// itself would set: `apiVersion`, `kind`, `metadata.resourceVersion`
/// (a counter over the whole store), `metadata.uid` and
/// `metadata.creationTimestamp` when missing.
#[derive(Debug, Clone, Default)]
pub struct Store {
    inner: Arc<Mutex<Inner>>,
}

/// Why an object could not be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

impl Store {
    /// A store that knows Pods.
    pub fn new() -> Self {
        let s = Store::default();
        s.register::<k8s_openapi::api::core::v1::Pod>();
        s
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked while holding the lock must not hide the
        // objects from the others.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the routes of a namespaced kind answer (empty lists, 404s)
    /// before any object of it is inserted.
    pub fn register<K: Resource<Scope = NamespaceResourceScope>>(&self) {
        self.lock().kinds.insert(
            ResourceKey::of::<K>(),
            Kind {
                api_version: K::API_VERSION.to_owned(),
                kind: K::KIND.to_owned(),
            },
        );
    }

    /// Inserts or replaces a namespaced object; returns the stored JSON
    /// (with its new `resourceVersion`). The object needs
    /// `metadata.namespace` and `metadata.name`.
    pub fn insert<K>(&self, object: &K) -> Result<Value, StoreError>
    where
        K: Resource<Scope = NamespaceResourceScope> + Serialize,
    {
        self.register::<K>();
        let mut value =
            serde_json::to_value(object).map_err(|e| StoreError(format!("serialising: {e}")))?;
        let meta = &value["metadata"];
        let (Some(ns), Some(name)) = (meta["namespace"].as_str(), meta["name"].as_str()) else {
            return Err(StoreError(format!(
                "a {} needs metadata.namespace and metadata.name",
                K::KIND
            )));
        };
        let (ns, name) = (ns.to_owned(), name.to_owned());
        let mut inner = self.lock();
        inner.revision += 1;
        let rv = inner.revision;
        value["apiVersion"] = json!(K::API_VERSION);
        value["kind"] = json!(K::KIND);
        let meta = &mut value["metadata"];
        meta["resourceVersion"] = json!(rv.to_string());
        if meta["uid"].is_null() {
            meta["uid"] = json!(format!("00000000-0000-4000-8000-{rv:012}"));
        }
        if meta["creationTimestamp"].is_null() {
            meta["creationTimestamp"] = json!("2024-01-01T00:00:00Z");
        }
        inner
            .objects
            .insert((ResourceKey::of::<K>(), ns, name), value.clone());
        Ok(value)
    }

    /// Removes an object; whether it was there.
    pub fn remove<K: Resource<Scope = NamespaceResourceScope>>(
        &self,
        namespace: &str,
        name: &str,
    ) -> bool {
        self.lock()
            .objects
            .remove(&(ResourceKey::of::<K>(), namespace.into(), name.into()))
            .is_some()
    }

    /// The stored JSON of an object.
    pub fn get<K: Resource<Scope = NamespaceResourceScope>>(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        self.lock()
            .objects
            .get(&(ResourceKey::of::<K>(), namespace.into(), name.into()))
            .cloned()
    }

    /// How many objects are stored.
    pub fn len(&self) -> usize {
        self.lock().objects.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
