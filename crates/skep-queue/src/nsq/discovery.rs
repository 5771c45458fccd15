//! Which nsqds to speak to: the ones an `nsq://` URL lists, or the ones the
//! nsqlookupds of an `nsqlookup://` URL know.
//!
//! Producers and `depth` use every nsqd the lookupds know (`/nodes`, read
//! again after [`REFRESH`]; at once while none is known). Consumers use the
//! nsqds that have their topic (`/lookup?topic=`), polled by the
//! subscription. A lookupd that does not answer is skipped as long as
//! another one does.

use std::sync::Mutex;
use std::time::Duration;

use futures::future::join_all;
use tokio::time::Instant;

use super::http::Http;
use super::url::{Nodes, Nsqd};
use super::{NsqError, lock};

/// How long a list of nsqds from the lookupds is used before it is read
/// again.
pub(super) const REFRESH: Duration = Duration::from_secs(15);

pub(super) struct Discovery {
    nodes: Nodes,
    http: Http,
    /// The lookupds' nsqds and when they were read.
    known: Mutex<Option<(Instant, Vec<Nsqd>)>>,
}

impl Discovery {
    pub(super) fn new(nodes: Nodes, http: Http) -> Self {
        Self {
            nodes,
            http,
            known: Mutex::new(None),
        }
    }

    pub(super) fn is_lookup(&self) -> bool {
        matches!(self.nodes, Nodes::Lookup(_))
    }

    /// Every nsqd.
    pub(super) async fn all(&self) -> Result<Vec<Nsqd>, NsqError> {
        let lookupds = match &self.nodes {
            Nodes::Direct(nsqds) => return Ok(nsqds.clone()),
            Nodes::Lookup(l) => l,
        };
        if let Some((at, nsqds)) = lock(&self.known).as_ref()
            && !nsqds.is_empty()
            && at.elapsed() < REFRESH
        {
            return Ok(nsqds.clone());
        }
        let asked = union(join_all(lookupds.iter().map(|l| self.http.nodes(l))).await);
        let mut known = lock(&self.known);
        match asked {
            Ok(nsqds) if !nsqds.is_empty() => {
                *known = Some((Instant::now(), nsqds.clone()));
                Ok(nsqds)
            }
            // NB: no lookupd answered, or one that has just restarted knows
            // no nsqd yet: the nsqds known before are still the best guess
            // (they keep taking publishes while lookupd is away).
            asked => match known.as_ref() {
                Some((_, last)) if !last.is_empty() => {
                    tracing::debug!(?asked, "nsqlookupd gave no nsqds; using the last known ones");
                    Ok(last.clone())
                }
                _ => asked,
            },
        }
    }

    /// The nsqds a consumer of `topic` should be connected to (for a lookup
    /// URL: those that have the topic now; none before it is published).
    pub(super) async fn for_topic(&self, topic: &str) -> Result<Vec<Nsqd>, NsqError> {
        match &self.nodes {
            Nodes::Direct(nsqds) => Ok(nsqds.clone()),
            Nodes::Lookup(lookupds) => union(join_all(lookupds.iter().map(|l| self.http.lookup(l, topic))).await),
        }
    }
}

/// The nsqds of every answer, if any lookupd answered.
fn union(answers: Vec<Result<Vec<Nsqd>, NsqError>>) -> Result<Vec<Nsqd>, NsqError> {
    let mut nsqds = Vec::new();
    let mut first_error = None;
    let mut answered = false;
    for a in answers {
        match a {
            Ok(found) => {
                answered = true;
                nsqds.extend(found);
            }
            Err(e) => {
                tracing::debug!(error = %e, "an nsqlookupd did not answer");
                first_error.get_or_insert(e);
            }
        }
    }
    if !answered && let Some(e) = first_error {
        return Err(e);
    }
    nsqds.sort();
    nsqds.dedup();
    Ok(nsqds)
}
