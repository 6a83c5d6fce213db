//! Label and annotation rules: the `metadata:` section of the configuration
//! (docs/CONFIGURATION.md), applied at admission by
//! [`crate::mutate::MetadataLayer`] and to running pods by the controller's
//! patcher ([`crate::controller::labels`]).
//!
//! What a rule does to a pod is the pure function [`MetadataConfig::apply`]
//! of (namespace, labels, annotations, rules, stage); both places call it, so
//! a running pod converges to what admission would give it now.
//!
//! Ownership: nemutator records what it changed, each key with its value
//! before and after, in the annotation `nemutator.io/metadata-applied`.
//! From it, every pass tells the pod as it was without the rules (a key
//! changed by someone since is theirs, as it is), and applies the rules to
//! that: selectors see the pod without nemutator's changes (so a rule cannot
//! switch itself or another rule on and off), and a rule that no longer
//! applies (removed, or no longer matching) has its changes undone: a label
//! it set is removed, one it overwrote or removed comes back. Applying the
//! rules twice changes nothing the second time.
//!
//! ```
//! use std::collections::BTreeMap;
//! use nemutator_core::metadata::{MetadataConfig, Stage};
//!
//! let rules: MetadataConfig = serde_yaml::from_str(r#"
//! rules:
//!   - name: team
//!     namespaces: ["shop-*"]
//!     selector: { matchLabels: { app: web } }
//!     labels: { team: payments }
//! "#).unwrap();
//! let mut labels = Some(BTreeMap::from([("app".to_string(), "web".to_string())]));
//! let mut annotations = None;
//! let applied = rules.apply("shop-eu", &mut labels, &mut annotations, Stage::Admission);
//! assert_eq!(applied.rules, ["team"]);
//! assert_eq!(labels.unwrap()["team"], "payments");
//! ```

mod reload;
mod selector;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use reload::{ConfigWatch, Reload, SharedRules};
pub use selector::{check_key, check_label_value, Operator, Requirement, Selector};

use crate::annotations::METADATA_APPLIED;
use crate::policy::glob_match;

/// The prefix of the keys nemutator writes itself: refused in rules.
pub const RESERVED_DOMAIN: &str = "nemutator.io";

/// The namespace rules reach only when they name it (no glob covers it).
pub const SYSTEM_NAMESPACE: &str = "kube-system";

/// `metadata:`: label and annotation rules, applied in order (a later rule
/// wins where two change the same key).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawMetadataConfig")]
pub struct MetadataConfig {
    /// The rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<MetadataRule>,
}

/// `metadata:` as written, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetadataConfig {
    #[serde(default)]
    rules: Vec<MetadataRule>,
}

impl TryFrom<RawMetadataConfig> for MetadataConfig {
    type Error = MetadataError;

    fn try_from(raw: RawMetadataConfig) -> Result<Self, MetadataError> {
        let config = MetadataConfig { rules: raw.rules };
        config.validate()?;
        Ok(config)
    }
}

fn all_namespaces() -> Vec<String> {
    vec!["*".to_owned()]
}

fn yes() -> bool {
    true
}

/// One rule under `metadata.rules`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataRule {
    /// Name, shown in errors, logs and the audit annotations.
    pub name: String,
    /// Namespaces covered (globs with `*`; `kube-system` only when named).
    #[serde(default = "all_namespaces")]
    pub namespaces: Vec<String>,
    /// Namespaces never covered (globs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_namespaces: Vec<String>,
    /// Which pods, by their labels (none: every pod of the namespaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<Selector>,
    /// Labels to set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations to set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Label keys to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_labels: Vec<String>,
    /// Annotation keys to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_annotations: Vec<String>,
    /// Also applied to running pods by the controller (default); `false`:
    /// at admission only.
    #[serde(default = "yes")]
    pub running_pods: bool,
}

/// Why `metadata:` is not valid: one line, naming the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata rule {rule:?}: {message}")]
pub struct MetadataError {
    /// Rule name.
    pub rule: String,
    /// One-line reason.
    pub message: String,
}

/// Where rules are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// At admission: every matching rule.
    Admission,
    /// To a running pod: the matching rules with `running_pods`; the keys of
    /// matching admission-only rules are left as they are.
    Running,
}

/// What [`MetadataConfig::apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The rules that matched, in order.
    pub rules: Vec<String>,
    /// What changed, in key order, e.g. `label team=payments`,
    /// `annotation example.com/oncall` (values of annotations are not
    /// repeated), `label -legacy`.
    pub changes: Vec<String>,
}

fn is_reserved(key: &str) -> bool {
    key.split_once('/').is_some_and(|(prefix, _)| {
        prefix == RESERVED_DOMAIN
            || prefix
                .strip_suffix(RESERVED_DOMAIN)
                .is_some_and(|p| p.ends_with('.'))
    })
}

impl MetadataRule {
    /// Does this rule cover `namespace`? `kube-system` only when a
    /// `namespaces` entry is exactly that name.
    pub fn covers(&self, namespace: &str) -> bool {
        let glob = |g: &String| glob_match(g, namespace);
        self.namespaces.iter().any(glob)
            && !self.exclude_namespaces.iter().any(glob)
            && (namespace != SYSTEM_NAMESPACE || self.namespaces.iter().any(|n| n == namespace))
    }

    /// Check what YAML types cannot: names, keys, values, a rule that does
    /// something.
    pub fn validate(&self) -> Result<(), MetadataError> {
        self.check().map_err(|message| MetadataError {
            rule: self.name.clone(),
            message,
        })
    }

    fn check(&self) -> Result<(), String> {
        let MetadataRule {
            name,
            namespaces,
            exclude_namespaces: _,
            selector,
            labels,
            annotations,
            remove_labels,
            remove_annotations,
            running_pods: _,
        } = self;
        if name.trim().is_empty() {
            return Err("name must not be empty".into());
        }
        if namespaces.is_empty() {
            return Err("namespaces must not be empty (\"*\" is every namespace)".into());
        }
        if let Some(s) = selector {
            s.validate()?;
        }
        if labels.is_empty()
            && annotations.is_empty()
            && remove_labels.is_empty()
            && remove_annotations.is_empty()
        {
            return Err(
                "does nothing: give labels, annotations, remove_labels or remove_annotations"
                    .into(),
            );
        }
        let keys = [
            ("label", labels.keys().collect::<Vec<_>>()),
            ("annotation", annotations.keys().collect()),
            ("label", remove_labels.iter().collect()),
            ("annotation", remove_annotations.iter().collect()),
        ];
        for (kind, list) in &keys {
            for key in list {
                check_key(key).map_err(|e| format!("{kind} {e}"))?;
                if is_reserved(key) {
                    return Err(format!(
                        "{kind} key {key:?} is under {RESERVED_DOMAIN}/, which nemutator writes itself"
                    ));
                }
            }
        }
        for v in labels.values() {
            check_label_value(v)?;
        }
        if let Some(k) = remove_labels.iter().find(|k| labels.contains_key(*k)) {
            return Err(format!("label {k:?} is both set and removed"));
        }
        if let Some(k) = remove_annotations
            .iter()
            .find(|k| annotations.contains_key(*k))
        {
            return Err(format!("annotation {k:?} is both set and removed"));
        }
        Ok(())
    }
}

/// What one key becomes under the matching rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op<'a> {
    Set(&'a str),
    Remove,
    /// An admission-only rule's key, on a running pod: left as it is.
    Keep,
}

/// One key nemutator changed: its value before (`from`) and after (`to`);
/// `None` is "absent".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The value before the rules (absent: the key was not there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The value the rules gave it (absent: removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// What nemutator changed on a pod (`nemutator.io/metadata-applied`), so
/// that the pod as it was without the rules can be told.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, Change>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, Change>,
}

impl Record {
    /// The record in `annotations` (an unreadable one counts as none).
    pub fn read(annotations: Option<&BTreeMap<String, String>>) -> Record {
        annotations
            .and_then(|a| a.get(METADATA_APPLIED))
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default()
    }

    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.annotations.is_empty()
    }
}

type Map = BTreeMap<String, String>;

/// The map as it was without the rules: each recorded key still at the
/// value nemutator gave it goes back to its value before. A key changed
/// since is someone else's now: as it is, and its record dropped.
fn original(current: &Map, record: &BTreeMap<String, Change>) -> Map {
    let mut out = current.clone();
    for (k, change) in record {
        if current.get(k) == change.to.as_ref() {
            match &change.from {
                Some(v) => out.insert(k.clone(), v.clone()),
                None => out.remove(k),
            };
        }
    }
    out
}

/// `original` under `ops` (`Keep`: as in `current`), and the record of
/// every key that differs from `original`.
fn desired(
    current: &Map,
    original: &Map,
    ops: &BTreeMap<&str, Op<'_>>,
) -> (Map, BTreeMap<String, Change>) {
    let mut out = original.clone();
    for (&k, op) in ops {
        let value = match *op {
            Op::Set(v) => Some(v.to_owned()),
            Op::Remove => None,
            Op::Keep => current.get(k).cloned(),
        };
        match value {
            Some(v) => out.insert(k.to_owned(), v),
            None => out.remove(k),
        };
    }
    let mut record = BTreeMap::new();
    for k in out.keys().chain(original.keys()) {
        let (from, to) = (original.get(k), out.get(k));
        if from != to {
            let change = Change {
                from: from.cloned(),
                to: to.cloned(),
            };
            record.insert(k.clone(), change);
        }
    }
    (out, record)
}

/// What changed from `old` to `new`, in key order.
fn describe(old: &Map, new: &Map, kind: &str, out: &mut Vec<String>) {
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for k in keys {
        match (old.get(k), new.get(k)) {
            (a, Some(v)) if a != Some(v) => out.push(if kind == "label" {
                format!("{kind} {k}={v}")
            } else {
                format!("{kind} {k}")
            }),
            (Some(_), None) => out.push(format!("{kind} -{k}")),
            _ => {}
        }
    }
}

impl MetadataConfig {
    /// No rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every rule valid, names unique.
    pub fn validate(&self) -> Result<(), MetadataError> {
        for (i, rule) in self.rules.iter().enumerate() {
            rule.validate()?;
            if self.rules[..i].iter().any(|r| r.name == rule.name) {
                return Err(MetadataError {
                    rule: rule.name.clone(),
                    message: "another rule has this name".into(),
                });
            }
        }
        Ok(())
    }

    /// Apply the rules to a pod of `namespace`, whose `labels` and
    /// `annotations` are as a Pod's metadata holds them: the pod as it was
    /// without the rules (told from `nemutator.io/metadata-applied`), under
    /// the sets and removals of the rules whose selectors select it there,
    /// in order; the record says what differs from it.
    pub fn apply(
        &self,
        namespace: &str,
        labels: &mut Option<Map>,
        annotations: &mut Option<Map>,
        stage: Stage,
    ) -> Applied {
        let record = Record::read(annotations.as_ref());
        let mut applied = Applied::default();
        if self.rules.is_empty() && record.is_empty() {
            return applied;
        }
        let current_labels = labels.clone().unwrap_or_default();
        let mut current_annotations = annotations.clone().unwrap_or_default();
        current_annotations.remove(METADATA_APPLIED);
        let original_labels = original(&current_labels, &record.labels);
        let original_annotations = original(&current_annotations, &record.annotations);
        let mut label_ops = BTreeMap::new();
        let mut annotation_ops = BTreeMap::new();
        let select = |k: &str| original_labels.get(k).map(String::as_str);
        for rule in &self.rules {
            if !rule.covers(namespace) || !rule.selector.as_ref().is_none_or(|s| s.matches(select))
            {
                continue;
            }
            applied.rules.push(rule.name.clone());
            let enforce = stage == Stage::Admission || rule.running_pods;
            let gate = |op| if enforce { op } else { Op::Keep };
            for k in &rule.remove_labels {
                label_ops.insert(k.as_str(), gate(Op::Remove));
            }
            for (k, v) in &rule.labels {
                label_ops.insert(k.as_str(), gate(Op::Set(v)));
            }
            for k in &rule.remove_annotations {
                annotation_ops.insert(k.as_str(), gate(Op::Remove));
            }
            for (k, v) in &rule.annotations {
                annotation_ops.insert(k.as_str(), gate(Op::Set(v)));
            }
        }
        let (new_labels, label_record) = desired(&current_labels, &original_labels, &label_ops);
        let (mut new_annotations, annotation_record) =
            desired(&current_annotations, &original_annotations, &annotation_ops);
        describe(&current_labels, &new_labels, "label", &mut applied.changes);
        describe(
            &current_annotations,
            &new_annotations,
            "annotation",
            &mut applied.changes,
        );
        let record = Record {
            labels: label_record,
            annotations: annotation_record,
        };
        if !record.is_empty() {
            if let Ok(text) = serde_json::to_string(&record) {
                new_annotations.insert(METADATA_APPLIED.to_owned(), text);
            }
        }
        // An absent map stays absent when nothing is put in it.
        let put = |map: &mut Option<Map>, new: Map| {
            *map = if new.is_empty() && map.is_none() {
                None
            } else {
                Some(new)
            };
        };
        put(labels, new_labels);
        put(annotations, new_annotations);
        applied
    }
}
