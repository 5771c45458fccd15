//! How many replicas of a pool the swarm can run: a pure function of the
//! node list, the service's placement constraints and its reservations.
//!
//! A node counts when it is `ready`, its availability is `active` (not
//! `pause` or `drain`) and the constraints allow it. On such a node,
//! `min(node CPUs / CPU reservation, node memory / memory reservation)`
//! replicas fit (each over the reservations that are set; with none set,
//! one replica per core), times a per-node factor, rounded down. What
//! other services have reserved is not subtracted: this is the ceiling the
//! pool may be scaled to, and the swarm leaves replicas that do not fit
//! pending.

use std::collections::BTreeMap;

use bollard::models::{Node, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState, ServiceSpec};

use crate::runtime::Capacity;

const NANOS_PER_CPU: i64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Manager,
    Worker,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    Active,
    Pause,
    Drain,
}

/// A swarm node, as capacity and observe see it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    pub role: Role,
    pub labels: BTreeMap<String, String>,
    /// Status.State is `ready`.
    pub ready: bool,
    pub availability: Availability,
    pub nano_cpus: i64,
    pub memory_bytes: i64,
}

impl NodeInfo {
    /// `None` for a node without an ID (never sent by a real daemon).
    pub fn from_node(n: &Node) -> Option<Self> {
        let spec = n.spec.clone().unwrap_or_default();
        let desc = n.description.clone().unwrap_or_default();
        let res = desc.resources.unwrap_or_default();
        Some(Self {
            id: n.id.clone()?,
            hostname: desc.hostname.unwrap_or_default(),
            role: match spec.role {
                Some(NodeSpecRoleEnum::MANAGER) => Role::Manager,
                _ => Role::Worker,
            },
            labels: spec.labels.unwrap_or_default().into_iter().collect(),
            ready: n.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY),
            availability: match spec.availability {
                Some(NodeSpecAvailabilityEnum::ACTIVE) => Availability::Active,
                Some(NodeSpecAvailabilityEnum::PAUSE) => Availability::Pause,
                // NB: unknown or empty: not schedulable, as far as we know.
                _ => Availability::Drain,
            },
            nano_cpus: res.nano_cpus.unwrap_or(0),
            memory_bytes: res.memory_bytes.unwrap_or(0),
        })
    }
}

/// What one replica reserves; `None` (or 0 in a spec) is "not set".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reservation {
    pub nano_cpus: Option<i64>,
    pub memory_bytes: Option<i64>,
}

impl Reservation {
    /// The reservations of a service spec's task template.
    pub fn of_spec(spec: &ServiceSpec) -> Self {
        let r = spec
            .task_template
            .as_ref()
            .and_then(|t| t.resources.as_ref())
            .and_then(|r| r.reservations.as_ref());
        Self {
            nano_cpus: r.and_then(|r| r.nano_cpus).filter(|n| *n > 0),
            memory_bytes: r.and_then(|r| r.memory_bytes).filter(|n| *n > 0),
        }
    }
}

/// The placement constraints of a service spec, as written.
pub fn constraints_of_spec(spec: &ServiceSpec) -> Vec<String> {
    spec.task_template
        .as_ref()
        .and_then(|t| t.placement.as_ref())
        .and_then(|p| p.constraints.clone())
        .unwrap_or_default()
}

/// What a constraint tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    Id,
    Hostname,
    Role,
    Label(String),
}

/// One placement constraint, e.g. `node.role == manager`,
/// `node.labels.ocr!=false`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Constraint {
    Match {
        field: Field,
        equal: bool,
        value: String,
    },
    /// Not understood here (`engine.labels.*`, `node.platform.*`, …): it
    /// allows every node, so capacity may be too high, never too low.
    Unknown(String),
}

impl Constraint {
    pub fn parse(raw: &str) -> Self {
        let unknown = || Constraint::Unknown(raw.to_owned());
        let (key, value, equal) = match (raw.split_once("!="), raw.split_once("==")) {
            (Some((k, v)), _) => (k, v, false),
            (None, Some((k, v))) => (k, v, true),
            (None, None) => return unknown(),
        };
        let (key, value) = (key.trim(), value.trim());
        let field = match key {
            "node.id" => Field::Id,
            "node.hostname" => Field::Hostname,
            "node.role" => Field::Role,
            k => match k.strip_prefix("node.labels.") {
                Some(label) if !label.is_empty() => Field::Label(label.to_owned()),
                _ => return unknown(),
            },
        };
        if value.is_empty() {
            return unknown();
        }
        Constraint::Match {
            field,
            equal,
            value: value.to_owned(),
        }
    }

    pub fn is_unknown(&self) -> bool {
        matches!(self, Constraint::Unknown(_))
    }

    /// As swarmkit matches: values compare case-insensitively; a missing
    /// label is unequal to everything.
    pub fn allows(&self, node: &NodeInfo) -> bool {
        let Constraint::Match { field, equal, value } = self else {
            return true;
        };
        let actual = match field {
            Field::Id => Some(node.id.as_str()),
            Field::Hostname => Some(node.hostname.as_str()),
            Field::Role => Some(match node.role {
                Role::Manager => "manager",
                Role::Worker => "worker",
            }),
            Field::Label(k) => node.labels.get(k).map(String::as_str),
        };
        let same = actual.is_some_and(|a| a.eq_ignore_ascii_case(value));
        same == *equal
    }
}

/// Replicas that fit on one node (before the per-node factor).
fn fits(node: &NodeInfo, r: &Reservation) -> u64 {
    let per = |have: i64, need: Option<i64>| need.map(|n| (have.max(0) / n) as u64);
    match (per(node.nano_cpus, r.nano_cpus), per(node.memory_bytes, r.memory_bytes)) {
        (Some(c), Some(m)) => c.min(m),
        (Some(c), None) => c,
        (None, Some(m)) => m,
        (None, None) => (node.nano_cpus.max(0) / NANOS_PER_CPU) as u64,
    }
}

/// The pool's capacity on these nodes. `factor` scales each node's count
/// (e.g. 2.0 to run two single-slot replicas per reserved share); `nodes`
/// counts the usable nodes on which at least one replica fits.
pub fn capacity(nodes: &[NodeInfo], constraints: &[Constraint], reservation: &Reservation, factor: f64) -> Capacity {
    let factor = if factor.is_finite() && factor > 0.0 {
        factor
    } else {
        1.0
    };
    let mut replicas = 0u64;
    let mut used = 0u32;
    for n in nodes {
        if !n.ready || n.availability != Availability::Active || !constraints.iter().all(|c| c.allows(n)) {
            continue;
        }
        let here = (fits(n, reservation) as f64 * factor).floor() as u64;
        if here > 0 {
            replicas = replicas.saturating_add(here);
            used += 1;
        }
    }
    Capacity {
        replicas: u32::try_from(replicas).unwrap_or(u32::MAX),
        nodes: used,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: i64 = 1 << 30;
    const MIB: i64 = 1 << 20;

    fn node(host: &str, cpus: i64, mem: i64) -> NodeInfo {
        NodeInfo {
            id: format!("id-{host}"),
            hostname: host.to_owned(),
            role: Role::Worker,
            labels: BTreeMap::new(),
            ready: true,
            availability: Availability::Active,
            nano_cpus: cpus * NANOS_PER_CPU,
            memory_bytes: mem,
        }
    }

    fn res(cpus: f64, mem: i64) -> Reservation {
        Reservation {
            nano_cpus: Some((cpus * NANOS_PER_CPU as f64) as i64).filter(|n| *n > 0),
            memory_bytes: Some(mem).filter(|m| *m > 0),
        }
    }

    fn cap(nodes: &[NodeInfo], constraints: &[&str], r: Reservation) -> (u32, u32) {
        let cs: Vec<Constraint> = constraints.iter().map(|c| Constraint::parse(c)).collect();
        let c = capacity(nodes, &cs, &r, 1.0);
        (c.replicas, c.nodes)
    }

    #[test]
    fn without_reservations_one_replica_per_core() {
        assert_eq!(cap(&[node("a", 2, 4 * GIB)], &[], Reservation::default()), (2, 1));
    }

    #[test]
    fn cpu_bound_and_memory_bound() {
        let n = [node("a", 4, 8 * GIB)];
        assert_eq!(cap(&n, &[], res(0.5, 256 * MIB)), (8, 1), "cpu-bound: 4/0.5");
        assert_eq!(cap(&n, &[], res(0.5, 3 * GIB)), (2, 1), "memory-bound: 8G/3G");
        assert_eq!(cap(&n, &[], res(0.0, 3 * GIB)), (2, 1), "memory only");
        assert_eq!(cap(&n, &[], res(3.0, 0)), (1, 1), "cpu only, rounded down");
        assert_eq!(cap(&n, &[], res(8.0, 0)), (0, 0), "too small a node is not counted");
    }

    #[test]
    fn multi_node_sums() {
        let n = [node("a", 2, 4 * GIB), node("b", 8, 4 * GIB), node("c", 16, 64 * GIB)];
        // a: min(4, 4)=4; b: min(16, 4)=4; c: min(32, 64)=32
        assert_eq!(cap(&n, &[], res(0.5, GIB)), (40, 3));
    }

    #[test]
    fn drained_paused_and_down_nodes_do_not_count() {
        let mut drained = node("drained", 4, 4 * GIB);
        drained.availability = Availability::Drain;
        let mut paused = node("paused", 4, 4 * GIB);
        paused.availability = Availability::Pause;
        let mut down = node("down", 4, 4 * GIB);
        down.ready = false;
        let n = [drained, paused, down, node("ok", 2, 4 * GIB)];
        assert_eq!(cap(&n, &[], Reservation::default()), (2, 1));
    }

    #[test]
    fn placement_constraints_filter_nodes() {
        let mut m = node("mgr", 2, 4 * GIB);
        m.role = Role::Manager;
        let mut w1 = node("w1", 4, 4 * GIB);
        w1.labels.insert("ocr".into(), "true".into());
        let w2 = node("w2", 8, 4 * GIB);
        let n = [m, w1, w2];
        let none = Reservation::default();
        assert_eq!(cap(&n, &["node.role==manager"], none), (2, 1));
        assert_eq!(cap(&n, &["node.role != manager"], none), (12, 2));
        assert_eq!(cap(&n, &["node.role == worker"], none), (12, 2));
        assert_eq!(cap(&n, &["node.hostname==w2"], none), (8, 1));
        assert_eq!(cap(&n, &["node.hostname!=w2"], none), (6, 2));
        assert_eq!(cap(&n, &["node.labels.ocr==true"], none), (4, 1));
        assert_eq!(
            cap(&n, &["node.labels.ocr!=true"], none),
            (10, 2),
            "a missing label is not equal"
        );
        assert_eq!(cap(&n, &["node.labels.ocr==TRUE"], none), (4, 1), "values ignore case");
        assert_eq!(cap(&n, &["node.role==worker", "node.labels.ocr==true"], none), (4, 1));
        assert_eq!(cap(&n, &["node.id==id-w1"], none), (4, 1));
    }

    #[test]
    fn unknown_constraints_allow_every_node() {
        let c = Constraint::parse("engine.labels.gpu==yes");
        assert!(c.is_unknown());
        assert!(Constraint::parse("node.platform.os==linux").is_unknown());
        assert!(Constraint::parse("nonsense").is_unknown());
        assert!(Constraint::parse("node.labels.==x").is_unknown());
        assert!(Constraint::parse("node.role==").is_unknown());
        assert_eq!(
            cap(
                &[node("a", 2, GIB)],
                &["engine.labels.gpu==yes"],
                Reservation::default()
            ),
            (2, 1)
        );
    }

    #[test]
    fn parses_both_operators_with_spaces() {
        assert_eq!(
            Constraint::parse(" node.labels.zone != eu-1 "),
            Constraint::Match {
                field: Field::Label("zone".into()),
                equal: false,
                value: "eu-1".into()
            }
        );
        assert_eq!(
            Constraint::parse("node.role==manager"),
            Constraint::Match {
                field: Field::Role,
                equal: true,
                value: "manager".into()
            }
        );
    }

    #[test]
    fn factor_scales_each_node() {
        let n = [node("a", 2, 4 * GIB), node("b", 3, 4 * GIB)];
        let cs: [Constraint; 0] = [];
        let r = Reservation::default();
        assert_eq!(capacity(&n, &cs, &r, 2.0).replicas, 10);
        assert_eq!(capacity(&n, &cs, &r, 1.5).replicas, 7, "3 + floor(4.5)");
        assert_eq!(capacity(&n, &cs, &r, 0.5).replicas, 2, "1 + floor(1.5)");
        assert_eq!(capacity(&n, &cs, &r, f64::NAN).replicas, 5, "a nonsense factor is 1");
    }

    #[test]
    fn from_node_reads_the_api_shape() {
        let json = serde_json::json!({
            "ID": "v59s", "Version": {"Index": 9},
            "Spec": {"Labels": {"ocr": "true"}, "Role": "manager", "Availability": "active"},
            "Description": {"Hostname": "vm", "Resources": {"NanoCPUs": 2_000_000_000i64, "MemoryBytes": 25_276_502_016i64}},
            "Status": {"State": "ready", "Addr": "127.0.0.1"}
        });
        let n: Node = serde_json::from_value(json).expect("node json");
        let info = NodeInfo::from_node(&n).expect("has id");
        assert_eq!(info.hostname, "vm");
        assert_eq!(info.role, Role::Manager);
        assert!(info.ready);
        assert_eq!(info.availability, Availability::Active);
        assert_eq!(info.nano_cpus, 2 * NANOS_PER_CPU);
        assert_eq!(info.labels.get("ocr").map(String::as_str), Some("true"));
    }
}
