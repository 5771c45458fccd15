//! Scaling a service: read the whole spec, change the replica count only,
//! write it back at the version it was read at. Whatever else is in the
//! spec (set by a stack file, by hand, by another tool) survives, and a
//! write that raced another one is retried on a fresh read rather than
//! overwriting it.

use std::time::Duration;

use bollard::models::{ServiceSpec, ServiceSpecModeReplicated};

use super::api::SwarmApi;
use crate::runtime::{Result, RuntimeError};

/// Reads and writes tried before a conflict is given up on.
pub const MAX_ATTEMPTS: u32 = 5;
/// Wait before re-reading after a conflict (times the attempt number).
const CONFLICT_PAUSE: Duration = Duration::from_millis(50);

/// What [`scale`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scaled {
    /// Already at the count: nothing was written.
    Unchanged,
    Updated {
        from: u32,
    },
    Created,
}

/// The replica count of a replicated service spec; `None` for other modes.
pub fn replicas_of(spec: &ServiceSpec) -> Option<u32> {
    // NB: no mode and a replicated mode with no count are both the API's
    // default: replicated, 1.
    let Some(m) = spec.mode.as_ref() else {
        return Some(1);
    };
    if m.global.is_some() || m.replicated_job.is_some() || m.global_job.is_some() {
        return None;
    }
    let n = m.replicated.as_ref().map_or(Some(1), |r| r.replicas).unwrap_or(1);
    Some(u32::try_from(n.max(0)).unwrap_or(u32::MAX))
}

/// Scales service `name` to `replicas`. When it does not exist, creates
/// `create` (a spec already at `replicas`), or fails with
/// [`RuntimeError::UnknownPool`] for `pool` without one.
pub async fn scale(
    api: &dyn SwarmApi,
    name: &str,
    pool: &str,
    replicas: u32,
    create: Option<ServiceSpec>,
) -> Result<Scaled> {
    let mut last_conflict = String::new();
    for attempt in 1..=MAX_ATTEMPTS {
        if attempt > 1 {
            tokio::time::sleep(CONFLICT_PAUSE * (attempt - 1)).await;
        }
        let Some(service) = api.inspect_service(name).await? else {
            let Some(spec) = create.clone() else {
                return Err(RuntimeError::UnknownPool(pool.to_owned()));
            };
            match api.create_service(spec).await {
                Ok(()) => return Ok(Scaled::Created),
                // NB: created by someone else since we looked: scale theirs.
                Err(RuntimeError::Conflict(m)) => {
                    last_conflict = m;
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        let version = service
            .version
            .and_then(|v| v.index)
            .ok_or_else(|| RuntimeError::Unavailable(format!("service {name} has no version index")))?;
        let mut spec = service
            .spec
            .ok_or_else(|| RuntimeError::Unavailable(format!("service {name} has no spec")))?;
        let from = replicas_of(&spec).ok_or_else(|| {
            RuntimeError::Unavailable(format!(
                "service {name} is not a replicated service; skep scales replicated services only"
            ))
        })?;
        if from == replicas {
            return Ok(Scaled::Unchanged);
        }
        let mode = spec.mode.get_or_insert_with(Default::default);
        mode.replicated = Some(ServiceSpecModeReplicated {
            replicas: Some(i64::from(replicas)),
        });
        match api.update_service(name, spec, version).await {
            Ok(()) => return Ok(Scaled::Updated { from }),
            Err(RuntimeError::Conflict(m)) => {
                tracing::debug!(service = name, attempt, conflict = %m, "service changed under us; reading it again");
                last_conflict = m;
            }
            Err(e) => return Err(e),
        }
    }
    Err(RuntimeError::Conflict(format!(
        "service {name} kept changing: gave up after {MAX_ATTEMPTS} attempts ({last_conflict})"
    )))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use bollard::models::{
        EventMessage, Node, ObjectVersion, Service, ServiceSpecMode, Task, TaskSpec, TaskSpecContainerSpec,
    };
    use futures::stream::BoxStream;

    use super::*;

    /// One service, in memory, with the daemon's versioning; can be told to
    /// let "someone else" write between our read and our write.
    #[derive(Default)]
    pub struct FakeApi {
        pub state: Mutex<FakeState>,
    }

    #[derive(Default)]
    pub struct FakeState {
        pub service: Option<Service>,
        /// Updates that find their version stale because another writer
        /// got in first (which bumps the version and adds a label).
        pub interleave: u32,
        /// Every update sent: (spec, version).
        pub updates: Vec<(ServiceSpec, u64)>,
        pub creates: Vec<ServiceSpec>,
        /// Answer creates with a name conflict, as if created concurrently.
        pub create_races: bool,
        pub nodes: Vec<Node>,
        pub tasks: Vec<Task>,
        /// Secrets made: (name, data).
        pub secrets: Vec<(String, Vec<u8>)>,
    }

    impl FakeApi {
        pub fn with_service(spec: ServiceSpec, version: u64) -> Arc<Self> {
            let api = Self::default();
            api.lock().service = Some(Service {
                id: Some("svc-id".into()),
                version: Some(ObjectVersion { index: Some(version) }),
                spec: Some(spec),
                ..Default::default()
            });
            Arc::new(api)
        }

        pub fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
            self.state.lock().unwrap_or_else(|p| p.into_inner())
        }

        fn bump(st: &mut FakeState, change: impl FnOnce(&mut ServiceSpec)) {
            if let Some(svc) = st.service.as_mut() {
                let v = svc.version.as_ref().and_then(|v| v.index).unwrap_or(0);
                svc.version = Some(ObjectVersion { index: Some(v + 1) });
                if let Some(spec) = svc.spec.as_mut() {
                    change(spec);
                }
            }
        }
    }

    #[async_trait]
    impl SwarmApi for FakeApi {
        async fn inspect_service(&self, name: &str) -> Result<Option<Service>> {
            let st = self.lock();
            Ok(st
                .service
                .clone()
                .filter(|s| s.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name)))
        }

        async fn create_service(&self, spec: ServiceSpec) -> Result<()> {
            let mut st = self.lock();
            st.creates.push(spec.clone());
            if st.create_races {
                st.create_races = false;
                let mut theirs = spec;
                if let Some(r) = theirs.mode.as_mut().and_then(|m| m.replicated.as_mut()) {
                    r.replicas = Some(1);
                }
                st.service = Some(Service {
                    version: Some(ObjectVersion { index: Some(100) }),
                    spec: Some(theirs),
                    ..Default::default()
                });
                return Err(RuntimeError::Conflict("name conflicts with an existing object".into()));
            }
            st.service = Some(Service {
                version: Some(ObjectVersion { index: Some(1) }),
                spec: Some(spec),
                ..Default::default()
            });
            Ok(())
        }

        async fn update_service(&self, _name: &str, spec: ServiceSpec, version: u64) -> Result<()> {
            let mut st = self.lock();
            st.updates.push((spec.clone(), version));
            if st.interleave > 0 {
                st.interleave -= 1;
                let n = st.interleave;
                Self::bump(&mut st, |s| {
                    s.labels
                        .get_or_insert_with(HashMap::new)
                        .insert(format!("other-writer-{n}"), "yes".into());
                });
            }
            let current = st
                .service
                .as_ref()
                .and_then(|s| s.version.as_ref())
                .and_then(|v| v.index);
            if current != Some(version) {
                return Err(RuntimeError::Conflict(
                    "rpc error: code = Unknown desc = update out of sequence".into(),
                ));
            }
            Self::bump(&mut st, |s| *s = spec);
            Ok(())
        }

        async fn list_nodes(&self) -> Result<Vec<Node>> {
            Ok(self.lock().nodes.clone())
        }

        async fn list_tasks(&self, _service: &str) -> Result<Vec<Task>> {
            Ok(self.lock().tasks.clone())
        }

        async fn ping(&self) -> Result<()> {
            Ok(())
        }

        async fn ensure_secret(&self, name: &str, data: &[u8]) -> Result<String> {
            let mut st = self.lock();
            if !st.secrets.iter().any(|(n, _)| n == name) {
                st.secrets.push((name.to_owned(), data.to_vec()));
            }
            Ok(format!("id-of-{name}"))
        }

        fn events(&self, _since: Option<i64>) -> BoxStream<'static, Result<EventMessage>> {
            Box::pin(futures::stream::pending())
        }
    }

    /// A spec as a stack file would leave it: labels, env, mounts.
    pub fn stack_spec(name: &str, replicas: i64) -> ServiceSpec {
        ServiceSpec {
            name: Some(name.into()),
            labels: Some(HashMap::from([("com.docker.stack.namespace".into(), "skep".into())])),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some("skep-worker:dev@sha256:abc".into()),
                    env: Some(vec!["SKEP_QUEUE=amqp://rabbit".into(), "SKEP_POOL=default".into()]),
                    mounts: Some(vec![bollard::models::Mount {
                        source: Some("/data".into()),
                        target: Some("/data".into()),
                        typ: Some(bollard::models::MountType::BIND),
                        read_only: Some(true),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                force_update: Some(3),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated {
                    replicas: Some(replicas),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn with_replicas(mut spec: ServiceSpec, n: i64) -> ServiceSpec {
        spec.mode = Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(n) }),
            ..Default::default()
        });
        spec
    }

    #[tokio::test]
    async fn an_update_sends_the_full_spec_with_only_replicas_changed() {
        let before = stack_spec("skep-worker-default", 1);
        let api = FakeApi::with_service(before.clone(), 7);
        let out = scale(api.as_ref(), "skep-worker-default", "default", 4, None).await;
        assert_eq!(out.ok(), Some(Scaled::Updated { from: 1 }));
        let st = api.lock();
        assert_eq!(st.updates.len(), 1);
        let (sent, version) = &st.updates[0];
        assert_eq!(*version, 7, "written at the version read");
        assert_eq!(sent, &with_replicas(before, 4), "everything but the count survives");
    }

    #[tokio::test(start_paused = true)]
    async fn update_out_of_sequence_is_retried_on_a_fresh_read() {
        let api = FakeApi::with_service(stack_spec("skep-worker-default", 1), 7);
        api.lock().interleave = 1;
        let out = scale(api.as_ref(), "skep-worker-default", "default", 4, None).await;
        assert_eq!(out.ok(), Some(Scaled::Updated { from: 1 }));
        let st = api.lock();
        assert_eq!(st.updates.len(), 2);
        assert_eq!(st.updates[0].1, 7);
        assert_eq!(st.updates[1].1, 8, "the retry used the re-inspected version");
        let labels = st.updates[1].0.labels.clone().unwrap_or_default();
        assert!(
            labels.contains_key("other-writer-0"),
            "the other writer's change survives: {labels:?}"
        );
        let svc = st.service.as_ref().and_then(|s| s.spec.as_ref()).expect("service");
        assert_eq!(replicas_of(svc), Some(4));
    }

    #[tokio::test(start_paused = true)]
    async fn endless_conflicts_give_up_with_a_conflict() {
        let api = FakeApi::with_service(stack_spec("s", 1), 1);
        api.lock().interleave = u32::MAX;
        let out = scale(api.as_ref(), "s", "p", 2, None).await;
        assert!(matches!(out, Err(RuntimeError::Conflict(_))), "{out:?}");
        assert_eq!(api.lock().updates.len(), MAX_ATTEMPTS as usize);
    }

    #[tokio::test]
    async fn the_same_count_writes_nothing() {
        let api = FakeApi::with_service(stack_spec("s", 3), 1);
        let out = scale(api.as_ref(), "s", "p", 3, None).await;
        assert_eq!(out.ok(), Some(Scaled::Unchanged));
        assert!(api.lock().updates.is_empty());
    }

    #[tokio::test]
    async fn a_missing_service_without_template_is_an_unknown_pool() {
        let api = Arc::new(FakeApi::default());
        let out = scale(api.as_ref(), "skep-worker-p", "p", 2, None).await;
        assert!(
            matches!(out, Err(RuntimeError::UnknownPool(ref p)) if p == "p"),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn a_missing_service_is_created_from_the_template() {
        let api = Arc::new(FakeApi::default());
        let spec = stack_spec("skep-worker-p", 2);
        let out = scale(api.as_ref(), "skep-worker-p", "p", 2, Some(spec.clone())).await;
        assert_eq!(out.ok(), Some(Scaled::Created));
        assert_eq!(api.lock().creates, vec![spec]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_created_concurrently_is_scaled_instead() {
        let api = Arc::new(FakeApi::default());
        api.lock().create_races = true;
        let out = scale(
            api.as_ref(),
            "skep-worker-p",
            "p",
            2,
            Some(stack_spec("skep-worker-p", 2)),
        )
        .await;
        assert_eq!(out.ok(), Some(Scaled::Updated { from: 1 }));
        assert_eq!(api.lock().updates[0].1, 100);
    }

    #[tokio::test]
    async fn global_services_are_refused() {
        let mut spec = stack_spec("s", 1);
        spec.mode = Some(ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        });
        let api = FakeApi::with_service(spec, 1);
        let out = scale(api.as_ref(), "s", "p", 2, None).await;
        assert!(matches!(out, Err(RuntimeError::Unavailable(_))), "{out:?}");
        assert!(api.lock().updates.is_empty());
    }

    #[test]
    fn replicas_default_to_one() {
        let mut spec = stack_spec("s", 1);
        spec.mode = Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: None }),
            ..Default::default()
        });
        assert_eq!(replicas_of(&spec), Some(1));
    }
}
