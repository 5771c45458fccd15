//! Docker's event feed as [`RuntimeEvent`]s, as an explicit state machine:
//!
//! - `Connect`: ping the daemon, subscribe (replaying from the last event
//!   seen, when there was one) and emit `Resync`, since events in a gap may
//!   be lost; on failure, back off and try again;
//! - `Streaming`: map each service, node and container event to the pool it
//!   names (or `Nodes`), dropping the rest; when the stream breaks or ends,
//!   back off and connect again.
//!
//! The backoff doubles from [`BACKOFF_BASE`] to [`BACKOFF_MAX`] and resets
//! on the first event received after a (re)connection. Node events and
//! reconnections drop the cached node list, so capacity is recomputed.

use std::sync::Arc;
use std::time::Duration;

use bollard::models::{EventMessage, EventMessageTypeEnum};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tracing::{debug, info, warn};

use super::Shared;
use crate::runtime::{Result, RuntimeEvent};

pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The label swarm puts on a task's container.
const SERVICE_NAME_LABEL: &str = "com.docker.swarm.service.name";

/// The pool a service name serves: the name without `prefix`.
pub fn pool_of<'a>(prefix: &str, service: &'a str) -> Option<&'a str> {
    service.strip_prefix(prefix).filter(|p| !p.is_empty())
}

/// What an event means to the controller; `None`: nothing skep scales.
pub fn classify(prefix: &str, msg: &EventMessage) -> Option<RuntimeEvent> {
    let attr = |k: &str| msg.actor.as_ref()?.attributes.as_ref()?.get(k).map(String::as_str);
    let pool = |name: Option<&str>| Some(RuntimeEvent::Pool(pool_of(prefix, name?)?.to_owned()));
    match msg.typ? {
        EventMessageTypeEnum::NODE => Some(RuntimeEvent::Nodes),
        EventMessageTypeEnum::SERVICE => pool(attr("name")),
        EventMessageTypeEnum::CONTAINER => pool(attr(SERVICE_NAME_LABEL)),
        _ => None,
    }
}

enum State {
    Connect,
    Streaming(BoxStream<'static, Result<EventMessage>>),
}

pub(crate) struct Watch {
    shared: Arc<Shared>,
    state: State,
    /// Unix seconds of the last event seen, to replay from on reconnect.
    since: Option<i64>,
    failures: u32,
}

impl Watch {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            state: State::Connect,
            since: None,
            failures: 0,
        }
    }

    pub fn into_stream(self) -> impl Stream<Item = RuntimeEvent> + Send + 'static {
        futures::stream::unfold(self, |mut w| async move {
            let ev = w.next().await;
            Some((ev, w))
        })
    }

    async fn back_off(&mut self) {
        let delay = BACKOFF_BASE
            .checked_mul(1u32.checked_shl(self.failures.min(16)).unwrap_or(u32::MAX))
            .unwrap_or(BACKOFF_MAX)
            .min(BACKOFF_MAX);
        self.failures = self.failures.saturating_add(1);
        tokio::time::sleep(delay).await;
    }

    async fn next(&mut self) -> RuntimeEvent {
        loop {
            match &mut self.state {
                State::Connect => match self.shared.api.ping().await {
                    Ok(()) => {
                        debug!(since = ?self.since, "subscribed to docker events");
                        self.state = State::Streaming(self.shared.api.events(self.since));
                        self.shared.nodes.invalidate();
                        return RuntimeEvent::Resync;
                    }
                    Err(error) => {
                        warn!(%error, failures = self.failures, "cannot subscribe to docker events; retrying");
                        self.back_off().await;
                    }
                },
                State::Streaming(stream) => match stream.next().await {
                    Some(Ok(msg)) => {
                        self.failures = 0;
                        if let Some(t) = msg.time {
                            self.since = Some(t);
                        }
                        match classify(&self.shared.cfg.service_prefix, &msg) {
                            Some(RuntimeEvent::Nodes) => {
                                self.shared.nodes.invalidate();
                                return RuntimeEvent::Nodes;
                            }
                            Some(ev) => return ev,
                            None => {}
                        }
                    }
                    Some(Err(error)) => {
                        warn!(%error, "docker event stream broke; reconnecting");
                        self.state = State::Connect;
                        self.back_off().await;
                    }
                    None => {
                        info!("docker event stream ended; reconnecting");
                        self.state = State::Connect;
                        self.back_off().await;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use bollard::models::{EventActor, Node, Service, ServiceSpec, Task};

    use super::super::api::SwarmApi;
    use super::super::{SwarmConfig, SwarmRuntime};
    use super::*;
    use crate::runtime::RuntimeError;

    fn event(typ: EventMessageTypeEnum, attrs: &[(&str, &str)], time: i64) -> EventMessage {
        EventMessage {
            typ: Some(typ),
            action: Some("update".into()),
            actor: Some(EventActor {
                id: Some("x".into()),
                attributes: Some(attrs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()),
            }),
            time: Some(time),
            ..Default::default()
        }
    }

    #[test]
    fn events_name_their_pool() {
        let p = "skep-worker-";
        let svc = event(EventMessageTypeEnum::SERVICE, &[("name", "skep-worker-scans")], 1);
        assert_eq!(classify(p, &svc), Some(RuntimeEvent::Pool("scans".into())));
        let ctr = event(
            EventMessageTypeEnum::CONTAINER,
            &[
                (SERVICE_NAME_LABEL, "skep-worker-default"),
                ("name", "skep-worker-default.1.abc"),
            ],
            1,
        );
        assert_eq!(classify(p, &ctr), Some(RuntimeEvent::Pool("default".into())));
        let node = event(EventMessageTypeEnum::NODE, &[("name", "vm")], 1);
        assert_eq!(classify(p, &node), Some(RuntimeEvent::Nodes));
        let other = event(EventMessageTypeEnum::SERVICE, &[("name", "web")], 1);
        assert_eq!(classify(p, &other), None, "not one of ours");
        let plain = event(EventMessageTypeEnum::CONTAINER, &[("name", "skep-worker-x")], 1);
        assert_eq!(classify(p, &plain), None, "not a swarm task");
        assert_eq!(classify(p, &event(EventMessageTypeEnum::IMAGE, &[], 1)), None);
        assert_eq!(pool_of(p, "skep-worker-"), None);
    }

    /// Each subscription plays the next script; a script ends in an error
    /// or, for the last one, hangs.
    struct ScriptedApi {
        scripts: Mutex<VecDeque<Vec<Result<EventMessage>>>>,
        subscriptions: Mutex<Vec<Option<i64>>>,
        pings_failing: Mutex<u32>,
    }

    #[async_trait]
    impl SwarmApi for ScriptedApi {
        async fn inspect_service(&self, _: &str) -> Result<Option<Service>> {
            Ok(None)
        }
        async fn create_service(&self, _: ServiceSpec) -> Result<()> {
            Ok(())
        }
        async fn update_service(&self, _: &str, _: ServiceSpec, _: u64) -> Result<()> {
            Ok(())
        }
        async fn list_nodes(&self) -> Result<Vec<Node>> {
            Ok(Vec::new())
        }
        async fn list_tasks(&self, _: &str) -> Result<Vec<Task>> {
            Ok(Vec::new())
        }
        async fn ensure_secret(&self, _name: &str, _data: &[u8]) -> Result<String> {
            unreachable!("events do not make secrets")
        }

        async fn ping(&self) -> Result<()> {
            let mut n = self.pings_failing.lock().unwrap_or_else(|p| p.into_inner());
            if *n > 0 {
                *n -= 1;
                return Err(RuntimeError::Unavailable("connection refused".into()));
            }
            Ok(())
        }
        fn events(&self, since: Option<i64>) -> BoxStream<'static, Result<EventMessage>> {
            self.subscriptions.lock().unwrap_or_else(|p| p.into_inner()).push(since);
            let next = self.scripts.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
            match next {
                Some(items) => futures::stream::iter(items).boxed(),
                None => futures::stream::pending().boxed(),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reconnects_after_a_break_and_resyncs() {
        let svc = |t| Ok(event(EventMessageTypeEnum::SERVICE, &[("name", "skep-worker-a")], t));
        let api = Arc::new(ScriptedApi {
            scripts: Mutex::new(VecDeque::from([
                vec![svc(10), svc(11), Err(RuntimeError::Unavailable("reset".into()))],
                vec![],
                vec![Ok(event(EventMessageTypeEnum::NODE, &[("name", "n")], 12))],
            ])),
            subscriptions: Mutex::new(Vec::new()),
            pings_failing: Mutex::new(2),
        });
        let rt = SwarmRuntime::with_api(api.clone(), SwarmConfig::default());
        let got: Vec<RuntimeEvent> = rt.events().take(7).collect().await;
        use RuntimeEvent::*;
        assert_eq!(
            got,
            vec![
                Resync,
                Pool("a".into()),
                Pool("a".into()),
                Resync,
                Resync,
                Nodes,
                Resync
            ]
        );
        let subs = api.subscriptions.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(
            subs,
            vec![None, Some(11), Some(11), Some(12)],
            "replays from the last event seen"
        );
    }
}
