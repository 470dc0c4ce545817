//! The desired ruleset kept up to date for a few changed service-ports at a time, with the
//! transaction that carries the change out: the engine's partial syncs. Computing it costs
//! what the changed service-ports cost, not what the whole node costs.
//!
//! Every service-port contributes a fragment (its chains, its affinity sets, its elements of
//! the shared sets and maps). The state counts the service-ports that contribute an element
//! when there are more than one (two Services can share a hairpin element), so removing one
//! contributor never removes an element another still needs; an element without a count has
//! one contributor. Nearly every element has one (endpoint-map elements always do: their
//! chain's tag), so the counts stay small: counting every element cost about 4 MB at 10 000
//! Services. The result equals [`desired`](crate::desired) of the same
//! services (tested as a property), and the transaction equals what [`plan`] would find
//! between the two, restricted to what changed.

use crate::desired::{desired_table_counted, port_fragment, Fragment};
use crate::names::is_endpoint_map;
use crate::plan::plan;
use crate::transaction::Transaction;
use crate::types::{ElemKey, Family, Ruleset, Set, Table, TableId};
use crate::Options;
use model::{FamilyServices, IpFamily, NodeServices, ServicePortView};
use std::collections::{BTreeMap, BTreeSet};

/// The desired ruleset with the number of service-ports that contribute each element that more
/// than one contributes.
#[derive(Debug, Clone)]
pub struct DesiredState {
    ruleset: Ruleset,
    /// Contributors of the elements that have two or more (absent: one).
    counts: BTreeMap<(Family, String, ElemKey), u32>,
    options: Options,
}

impl DesiredState {
    /// The desired state of these services (what [`desired`](crate::desired) gives, counted).
    pub fn new(services: &NodeServices, options: &Options) -> DesiredState {
        DesiredState::from_services(services.clone(), options)
    }

    /// [`DesiredState::new`], consuming the services: each service-port's view is dropped as
    /// soon as its part of the ruleset is built (at 10 000 Services the views are about 8 MB,
    /// and building the ruleset is when a full computation needs the most memory).
    pub fn from_services(services: NodeServices, options: &Options) -> DesiredState {
        let mut ruleset = Ruleset::default();
        let mut counts = BTreeMap::new();
        for fam in [services.ipv4, services.ipv6] {
            let family: Family = fam.family.into();
            let (table, table_counts) = desired_table_counted(fam, options);
            ruleset.tables.insert(table_id(family, options), table);
            counts.extend(
                table_counts
                    .into_iter()
                    .map(|((set, key), n)| ((family, set, key), n)),
            );
        }
        DesiredState {
            ruleset,
            counts,
            options: options.clone(),
        }
    }

    /// The desired ruleset.
    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }

    /// Replaces the contributions of the service-ports `old` (as they were) by those of `new`
    /// (as they are now; `services` gives the node-level facts, which must not have changed),
    /// and returns the transaction from the previous desired ruleset to the new one.
    pub fn update(
        &mut self,
        services: &NodeServices,
        old: &[&ServicePortView],
        new: &[&ServicePortView],
    ) -> Transaction {
        let fam_of = |f: IpFamily| -> &FamilyServices { services.family(f) };
        let fragments = |views: &[&ServicePortView]| -> Vec<(Family, Fragment)> {
            views
                .iter()
                .map(|v| {
                    let fam = fam_of(v.family);
                    (fam.family.into(), port_fragment(v, fam, &self.options))
                })
                .collect()
        };
        let old = fragments(old);
        let new = fragments(new);

        // What the touched parts looked like before.
        let before = self.touched(&old, &new);

        // Remove the old contributions, then add the new ones.
        for (family, frag) in &old {
            let Some(table) = self.table_mut(*family) else {
                continue;
            };
            for name in frag.chains.keys() {
                table.chains.remove(name);
            }
            for name in frag.sets.keys() {
                table.sets.remove(name);
            }
            for (set, key, _) in &frag.elements {
                let slot = (*family, set.clone(), key.clone());
                match self.counts.get_mut(&slot) {
                    // Others still contribute it.
                    Some(n) if *n > 2 => *n -= 1,
                    Some(_) => {
                        self.counts.remove(&slot);
                    }
                    // Its only contributor.
                    None => {
                        if let Some(s) = self.table_mut(*family).and_then(|t| t.sets.get_mut(set)) {
                            s.elements_mut().remove(key);
                        }
                    }
                }
            }
        }
        for (family, frag) in &new {
            let Some(table) = self.table_mut(*family) else {
                continue;
            };
            for (name, chain) in &frag.chains {
                table.chains.insert(name.clone(), chain.clone());
            }
            for (name, set) in &frag.sets {
                table.sets.insert(name.clone(), set.clone());
            }
            for (set, key, value) in &frag.elements {
                let Some(s) = self.table_mut(*family).and_then(|t| t.sets.get_mut(set)) else {
                    continue;
                };
                if !s.elements.contains_key(key) {
                    s.elements_mut().insert(key.clone(), value.clone());
                } else if !is_endpoint_map(set) {
                    // Another contributor (an endpoint-map element has only its chain's tag).
                    *self
                        .counts
                        .entry((*family, set.clone(), key.clone()))
                        .or_insert(1) += 1;
                }
            }
        }

        let after = self.touched(&old, &new);
        plan(&before, &after)
    }

    fn table_mut(&mut self, family: Family) -> Option<&mut Table> {
        let id = table_id(family, &self.options);
        self.ruleset.tables.get_mut(&id)
    }

    /// The parts of the current ruleset the fragments touch: their chains and sets, and their
    /// elements (with the declarations of the sets holding them).
    fn touched(&self, old: &[(Family, Fragment)], new: &[(Family, Fragment)]) -> Ruleset {
        let mut out = Ruleset::default();
        let families: BTreeSet<Family> = old.iter().chain(new).map(|(f, _)| *f).collect();
        for family in families {
            let id = table_id(family, &self.options);
            let Some(table) = self.ruleset.tables.get(&id) else {
                continue;
            };
            let mut part = Table {
                comment: table.comment.clone(),
                ..Table::default()
            };
            for (_, frag) in old.iter().chain(new).filter(|(f, _)| *f == family) {
                for name in frag.chains.keys() {
                    if let Some(chain) = table.chains.get(name) {
                        part.chains.insert(name.clone(), chain.clone());
                    }
                }
                for name in frag.sets.keys() {
                    if let Some(set) = table.sets.get(name) {
                        part.sets.insert(name.clone(), set.clone());
                    }
                }
                for (set_name, key, _) in &frag.elements {
                    let Some(set) = table.sets.get(set_name) else {
                        continue;
                    };
                    let entry = part.sets.entry(set_name.clone()).or_insert_with(|| Set {
                        spec: set.spec.clone(),
                        elements: Default::default(),
                    });
                    if let Some(value) = set.elements.get(key) {
                        entry.elements_mut().insert(key.clone(), value.clone());
                    }
                }
            }
            out.tables.insert(id, part);
        }
        out
    }
}

fn table_id(family: Family, options: &Options) -> TableId {
    TableId {
        family,
        name: options.table_name.clone(),
    }
}
