//! Label and field selectors, as the API server parses them from `labelSelector` and
//! `fieldSelector`.

use serde_json::Value;
use std::collections::BTreeSet;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelRequirement {
    /// `key`: the label exists.
    Exists(String),
    /// `!key`: the label does not exist.
    NotExists(String),
    /// `key=value`, `key==value`.
    Equals(String, String),
    /// `key!=value`: absent, or another value.
    NotEquals(String, String),
    /// `key in (a,b)`.
    In(String, BTreeSet<String>),
    /// `key notin (a,b)`: absent, or none of the values.
    NotIn(String, BTreeSet<String>),
}

/// A parsed label selector: every requirement must hold. Empty: matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelRequirement>);

/// Splits at commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn key(text: &str) -> Result<String, String> {
    let key = text.trim();
    if valid_key(key) {
        Ok(key.to_owned())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

/// `(a, b)` → {a, b}.
fn value_set(text: &str) -> Result<BTreeSet<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set of values, got {text:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    /// Parses `labelSelector`: comma-separated `key`, `!key`, `key=value`, `key==value`,
    /// `key!=value`, `key in (a,b)`, `key notin (a,b)`.
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let requirement = if let Some(rest) = part.strip_prefix('!') {
                LabelRequirement::NotExists(key(rest)?)
            } else if let Some((k, values)) = part.split_once(" notin ") {
                LabelRequirement::NotIn(key(k)?, value_set(values)?)
            } else if let Some((k, values)) = part.split_once(" in ") {
                LabelRequirement::In(key(k)?, value_set(values)?)
            } else if let Some((k, v)) = part.split_once("!=") {
                LabelRequirement::NotEquals(key(k)?, v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once("==") {
                LabelRequirement::Equals(key(k)?, v.trim().to_owned())
            } else if let Some((k, v)) = part.split_once('=') {
                LabelRequirement::Equals(key(k)?, v.trim().to_owned())
            } else {
                LabelRequirement::Exists(key(part)?)
            };
            requirements.push(requirement);
        }
        Ok(LabelSelector(requirements))
    }

    /// Whether the object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelRequirement::Exists(k) => label(k).is_some(),
            LabelRequirement::NotExists(k) => label(k).is_none(),
            LabelRequirement::Equals(k, v) => label(k) == Some(v.as_str()),
            LabelRequirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            LabelRequirement::In(k, set) => label(k).is_some_and(|l| set.contains(l)),
            LabelRequirement::NotIn(k, set) => !label(k).is_some_and(|l| set.contains(l)),
        })
    }
}

/// One requirement of a field selector: `field=value` (`==`) or `field!=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldRequirement {
    /// JSON pointer of the field (`/metadata/name`).
    pointer: &'static str,
    value: String,
    equal: bool,
}

/// A parsed field selector over `metadata.name` and `metadata.namespace` (the fields every kind
/// supports). Empty: matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<FieldRequirement>);

impl FieldSelector {
    /// Parses `fieldSelector`: comma-separated `metadata.name=X`, `metadata.namespace==X`,
    /// `metadata.name!=X`. Other fields are refused, as the API server refuses fields a kind
    /// does not index.
    pub fn parse(text: &str) -> Result<FieldSelector, String> {
        let mut requirements = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, value, equal) = if let Some((f, v)) = part.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, v, true)
            } else {
                return Err(format!("invalid field selector requirement {part:?}"));
            };
            let pointer = match field.trim() {
                "metadata.name" => "/metadata/name",
                "metadata.namespace" => "/metadata/namespace",
                other => return Err(format!("field label not supported: {other}")),
            };
            requirements.push(FieldRequirement {
                pointer,
                value: value.trim().to_owned(),
                equal,
            });
        }
        Ok(FieldSelector(requirements))
    }

    /// Whether the object's fields satisfy every requirement (a missing field is `""`).
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|r| {
            let actual = object
                .pointer(r.pointer)
                .and_then(Value::as_str)
                .unwrap_or("");
            (actual == r.value) == r.equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "labels": labels}})
    }

    #[test]
    fn label_selector_forms() {
        let plain = obj(json!({"app": "web"}));
        let headless = obj(json!({"app": "web", "service.kubernetes.io/headless": ""}));
        let none = json!({"metadata": {"name": "x"}});
        let sel = |s: &str| LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));

        let ours = sel("!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless");
        assert!(ours.matches(&plain) && ours.matches(&none) && !ours.matches(&headless));
        assert!(sel("service.kubernetes.io/headless").matches(&headless));
        assert!(!sel("service.kubernetes.io/headless").matches(&plain));
        assert!(sel("app=web").matches(&plain) && sel("app==web").matches(&plain));
        assert!(!sel("app=db").matches(&plain) && !sel("app=web").matches(&none));
        assert!(sel("app!=db").matches(&plain) && sel("app!=db").matches(&none));
        assert!(sel("app in (db, web)").matches(&plain) && !sel("app in (db)").matches(&none));
        assert!(!sel("app notin (web,db)").matches(&plain) && sel("app notin (x)").matches(&none));
        assert!(sel("app in (web),!service.kubernetes.io/headless").matches(&plain));
        assert!(sel("").matches(&none));
        assert!(LabelSelector::parse("a b").is_err());
    }

    #[test]
    fn field_selector_forms() {
        let o = obj(json!({}));
        let sel = |s: &str| FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(sel("metadata.name=web").matches(&o));
        assert!(sel("metadata.name==web,metadata.namespace=default").matches(&o));
        assert!(!sel("metadata.name=other").matches(&o));
        assert!(sel("metadata.name!=other").matches(&o));
        assert!(!sel("metadata.namespace=kube-system").matches(&o));
        assert!(FieldSelector::parse("spec.nodeName=a").is_err());
    }
}
