//! A pool's state from its service's tasks.
//!
//! `running` counts tasks that are running now and meant to keep running.
//! A task still starting (pending, preparing, starting) is not counted: the
//! controller sizes each pool's dispatch window from `running`, and a
//! replica that is not yet reading the queue should not widen it. A task
//! told to shut down (a scale-down) is not counted either: it takes no new
//! work while it finishes its file.

use std::collections::{BTreeSet, HashMap};

use bollard::models::{Task, TaskState};

use super::capacity::NodeInfo;
use crate::runtime::PoolState;

/// Whether a task counts as a running replica.
pub fn is_running(t: &Task) -> bool {
    t.desired_state == Some(TaskState::RUNNING) && t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
}

/// `desired` from the service spec; `nodes` are the hostnames of the
/// running tasks' nodes (a node not in `nodes` shows as its ID).
pub fn pool_state(desired: u32, tasks: &[Task], nodes: &[NodeInfo]) -> PoolState {
    let hostnames: HashMap<&str, &str> = nodes.iter().map(|n| (n.id.as_str(), n.hostname.as_str())).collect();
    let running: Vec<&Task> = tasks.iter().filter(|t| is_running(t)).collect();
    let on: BTreeSet<String> = running
        .iter()
        .filter_map(|t| t.node_id.as_deref())
        .map(|id| hostnames.get(id).copied().unwrap_or(id).to_owned())
        .collect();
    PoolState {
        desired,
        running: u32::try_from(running.len()).unwrap_or(u32::MAX),
        nodes: on.into_iter().collect(),
    }
}

/// Whether some running task is on a node missing from `nodes` (the node
/// list is stale).
pub fn has_unknown_node(tasks: &[Task], nodes: &[NodeInfo]) -> bool {
    tasks
        .iter()
        .filter(|t| is_running(t))
        .filter_map(|t| t.node_id.as_deref())
        .any(|id| !nodes.iter().any(|n| n.id == id))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bollard::models::TaskStatus;

    use super::super::capacity::{Availability, Role};
    use super::*;

    fn task(node: &str, desired: TaskState, state: TaskState) -> Task {
        Task {
            node_id: Some(node.into()),
            desired_state: Some(desired),
            status: Some(TaskStatus {
                state: Some(state),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn node(id: &str, host: &str) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            hostname: host.into(),
            role: Role::Worker,
            labels: BTreeMap::new(),
            ready: true,
            availability: Availability::Active,
            nano_cpus: 0,
            memory_bytes: 0,
        }
    }

    #[test]
    fn counts_running_tasks_that_are_meant_to_run() {
        use TaskState::*;
        let tasks = [
            task("n2", RUNNING, RUNNING),
            task("n1", RUNNING, RUNNING),
            task("n1", RUNNING, RUNNING),
            task("n1", RUNNING, STARTING),
            task("n1", RUNNING, PREPARING),
            task("n2", SHUTDOWN, RUNNING),
            task("n3", RUNNING, FAILED),
        ];
        let nodes = [node("n1", "alpha"), node("n2", "beta"), node("n3", "gamma")];
        let s = pool_state(5, &tasks, &nodes);
        assert_eq!(s.desired, 5);
        assert_eq!(s.running, 3);
        assert_eq!(s.nodes, vec!["alpha".to_owned(), "beta".to_owned()], "sorted, unique");
        assert!(!has_unknown_node(&tasks, &nodes));
    }

    #[test]
    fn an_unknown_node_shows_as_its_id() {
        let tasks = [task("n9", TaskState::RUNNING, TaskState::RUNNING)];
        let s = pool_state(1, &tasks, &[]);
        assert_eq!(s.nodes, vec!["n9".to_owned()]);
        assert!(has_unknown_node(&tasks, &[]));
    }

    #[test]
    fn no_tasks_no_nodes() {
        assert_eq!(pool_state(0, &[], &[]), PoolState::default());
    }
}
