//! The embedded backends' in-memory view of every resource, indexed by
//! label.
//!
//! Controllers reconcile one cluster at a time and ask for that cluster's
//! machines, nodes and statuses with a label selector. Answering that by
//! scanning (and, for redb, decoding) every resource of the type makes each
//! reconcile cost O(fleet), and a fleet's round of reconciles O(fleet²). The
//! index answers it from the resources that carry the selector's labels.
//!
//! The embedded backends have one writing process, so the index is exact:
//! it is changed under the backend's commit lock, right after the commit.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use omni_resources::meta::ResourceKey;
use omni_resources::{LabelSelector, Resource};

#[derive(Default)]
pub(crate) struct Index {
    kinds: HashMap<(String, String), KindIndex>,
}

#[derive(Default)]
struct KindIndex {
    items: BTreeMap<String, Resource>,
    /// `(label, value)` → the IDs that carry it.
    by_label: HashMap<(String, String), BTreeSet<String>>,
}

impl KindIndex {
    fn unlabel(&mut self, r: &Resource) {
        for (k, v) in &r.metadata.labels {
            let pair = (k.clone(), v.clone());
            if let Some(ids) = self.by_label.get_mut(&pair) {
                ids.remove(&r.metadata.id);
                if ids.is_empty() {
                    self.by_label.remove(&pair);
                }
            }
        }
    }
}

impl Index {
    pub fn get(&self, key: &ResourceKey) -> Option<&Resource> {
        self.kinds
            .get(&(key.namespace.clone(), key.kind.clone()))?
            .items
            .get(&key.id)
    }

    /// Stores `r`, replacing the resource of the same key.
    pub fn put(&mut self, r: Resource) {
        let kind = self
            .kinds
            .entry((r.metadata.namespace.clone(), r.metadata.kind.clone()))
            .or_default();
        if let Some(old) = kind.items.remove(&r.metadata.id) {
            kind.unlabel(&old);
        }
        for (k, v) in &r.metadata.labels {
            kind.by_label
                .entry((k.clone(), v.clone()))
                .or_default()
                .insert(r.metadata.id.clone());
        }
        kind.items.insert(r.metadata.id.clone(), r);
    }

    pub fn remove(&mut self, key: &ResourceKey) -> Option<Resource> {
        let ns_kind = (key.namespace.clone(), key.kind.clone());
        let kind = self.kinds.get_mut(&ns_kind)?;
        let gone = kind.items.remove(&key.id)?;
        kind.unlabel(&gone);
        if kind.items.is_empty() {
            self.kinds.remove(&ns_kind);
        }
        Some(gone)
    }

    /// The resources of one type in one namespace that `selector` matches,
    /// ordered by ID. With `key=value` terms only the resources carrying
    /// the rarest of those pairs are looked at.
    pub fn list(&self, namespace: &str, kind: &str, selector: &LabelSelector) -> Vec<Resource> {
        let Some(kind) = self.kinds.get(&(namespace.to_string(), kind.to_string())) else {
            return Vec::new();
        };
        let narrowest = selector
            .terms()
            .filter_map(|(k, op, v)| (op == "=").then_some((k, v?)))
            .map(|(k, v)| kind.by_label.get(&(k.to_string(), v.to_string())))
            .min_by_key(|ids| ids.map_or(0, BTreeSet::len));
        let matches = |r: &&Resource| selector.matches(&r.metadata.labels);
        match narrowest {
            None => kind.items.values().filter(matches).cloned().collect(),
            // A pair nobody carries: nothing matches.
            Some(None) => Vec::new(),
            Some(Some(ids)) => ids
                .iter()
                .filter_map(|id| kind.items.get(id))
                .filter(matches)
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(id: &str, labels: &[(&str, &str)]) -> Resource {
        let mut r = Resource::new("Things", "default", id, serde_json::json!({}));
        for (k, v) in labels {
            r.metadata.labels.insert(k.to_string(), v.to_string());
        }
        r
    }

    fn ids(v: Vec<Resource>) -> Vec<String> {
        v.into_iter().map(|r| r.metadata.id).collect()
    }

    #[test]
    fn selects_by_label_and_follows_relabels_and_removals() {
        let mut ix = Index::default();
        ix.put(res("a", &[("cluster", "c1"), ("role", "cp")]));
        ix.put(res("b", &[("cluster", "c1")]));
        ix.put(res("c", &[("cluster", "c2"), ("role", "cp")]));
        let sel = |s: &str| LabelSelector::parse(s).unwrap();
        let list = |ix: &Index, s: &str| ids(ix.list("default", "Things", &sel(s)));
        assert_eq!(list(&ix, "cluster=c1"), ["a", "b"]);
        assert_eq!(list(&ix, "cluster=c1,role"), ["a"]);
        assert_eq!(list(&ix, "role=cp,cluster!=c1"), ["c"]);
        assert_eq!(list(&ix, ""), ["a", "b", "c"]);
        assert!(list(&ix, "cluster=none").is_empty());
        assert!(ix.list("other", "Things", &sel("")).is_empty());
        // Moving b to c2 takes it out of c1's set.
        ix.put(res("b", &[("cluster", "c2")]));
        assert_eq!(list(&ix, "cluster=c1"), ["a"]);
        assert_eq!(list(&ix, "cluster=c2"), ["b", "c"]);
        let gone = ix.remove(&ResourceKey::new("default", "Things", "c"));
        assert_eq!(gone.map(|r| r.metadata.id).as_deref(), Some("c"));
        assert_eq!(list(&ix, "role=cp"), ["a"]);
        assert!(ix
            .get(&ResourceKey::new("default", "Things", "c"))
            .is_none());
        assert!(ix
            .remove(&ResourceKey::new("default", "Things", "c"))
            .is_none());
    }
}
