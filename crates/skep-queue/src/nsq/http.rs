//! The HTTP APIs of nsqd (`/stats`, `/topic/delete`) and nsqlookupd
//! (`/lookup`, `/nodes`): plain HTTP on a trusted network, every call with a
//! timeout and a bounded response.

use std::time::Duration;

use serde::Deserialize;

use super::NsqError;
use super::url::Nsqd;
use crate::Depth;

/// Largest response read. `/stats` of one topic without clients is a few
/// KiB; `/nodes` of a big cluster a few hundred.
const MAX_RESPONSE: usize = 4 << 20;

#[derive(Clone)]
pub(super) struct Http {
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Stats {
    #[serde(default)]
    topics: Option<Vec<TopicStats>>,
}

#[derive(Deserialize)]
struct TopicStats {
    topic_name: String,
    depth: u64,
    #[serde(default)]
    channels: Option<Vec<ChannelStats>>,
}

#[derive(Deserialize)]
struct ChannelStats {
    channel_name: String,
    depth: u64,
    in_flight_count: u64,
    deferred_count: u64,
}

#[derive(Deserialize)]
struct Producers {
    #[serde(default)]
    producers: Option<Vec<Producer>>,
}

#[derive(Deserialize)]
struct Producer {
    broadcast_address: String,
    tcp_port: u16,
    http_port: u16,
}

impl Producer {
    fn nsqd(&self) -> Nsqd {
        let host = if self.broadcast_address.contains(':') && !self.broadcast_address.starts_with('[') {
            format!("[{}]", self.broadcast_address)
        } else {
            self.broadcast_address.clone()
        };
        Nsqd {
            tcp: format!("{host}:{}", self.tcp_port),
            http: format!("{host}:{}", self.http_port),
        }
    }
}

impl Http {
    pub(super) fn new(timeout: Duration) -> Result<Self, NsqError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| NsqError::Http {
                url: String::new(),
                what: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(Self { client })
    }

    /// Sends a request; the status and the body (at most
    /// [`MAX_RESPONSE`] bytes).
    async fn call(&self, method: reqwest::Method, url: &str) -> Result<(u16, Vec<u8>), NsqError> {
        let err = |what: String| NsqError::Http {
            url: url.to_owned(),
            what,
        };
        let mut resp = self
            .client
            .request(method, url)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| err(e.to_string()))? {
            if body.len() + chunk.len() > MAX_RESPONSE {
                return Err(err(format!("response over {MAX_RESPONSE} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, url: &str) -> Result<Option<T>, NsqError> {
        let (status, body) = self.call(reqwest::Method::GET, url).await?;
        match status {
            200 => serde_json::from_slice(&body).map(Some).map_err(|e| NsqError::Http {
                url: url.to_owned(),
                what: format!("unexpected answer: {e}"),
            }),
            404 => Ok(None),
            other => Err(NsqError::Http {
                url: url.to_owned(),
                what: format!(
                    "answered {other}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
            }),
        }
    }

    /// A topic's messages on one nsqd; zero if the nsqd does not know it.
    ///
    /// `ready` is the topic's own depth (messages not yet copied to a
    /// channel; all of them while the topic has none) plus the channel's.
    /// NB: every channel of a topic gets a copy of each message; the
    /// channel with the most messages is the one that has the most work
    /// left, and counting the others too would count messages twice.
    pub(super) async fn depth(&self, nsqd: &Nsqd, topic: &str, channel: Option<&str>) -> Result<Depth, NsqError> {
        let url = format!(
            "http://{}/stats?format=json&topic={}&include_clients=false&include_mem=false",
            nsqd.http,
            query(topic)
        );
        let stats: Option<Stats> = self.get_json(&url).await?;
        let mut depth = Depth::default();
        let topics = stats.and_then(|s| s.topics).unwrap_or_default();
        for t in topics.into_iter().filter(|t| t.topic_name == topic) {
            let channels = t.channels.unwrap_or_default();
            let named = channel.and_then(|name| channels.iter().find(|c| c.channel_name == name));
            let counted = named.or_else(|| {
                channels
                    .iter()
                    .max_by_key(|c| c.depth + c.in_flight_count + c.deferred_count)
            });
            depth.ready += t.depth;
            if let Some(c) = counted {
                depth.ready += c.depth;
                depth.in_flight += c.in_flight_count;
                depth.deferred += c.deferred_count;
            }
        }
        Ok(depth)
    }

    /// Deletes a topic, its channels and messages from one nsqd; a topic it
    /// does not know is fine.
    pub(super) async fn delete_topic(&self, nsqd: &Nsqd, topic: &str) -> Result<(), NsqError> {
        let url = format!("http://{}/topic/delete?topic={}", nsqd.http, query(topic));
        match self.call(reqwest::Method::POST, &url).await? {
            (200 | 404, _) => Ok(()),
            (status, body) => Err(NsqError::Http {
                url,
                what: format!(
                    "answered {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
            }),
        }
    }

    /// The nsqds a lookupd knows to have `topic`; empty if it knows none.
    pub(super) async fn lookup(&self, lookupd: &str, topic: &str) -> Result<Vec<Nsqd>, NsqError> {
        let url = format!("http://{lookupd}/lookup?topic={}", query(topic));
        let found: Option<Producers> = self.get_json(&url).await?;
        Ok(nsqds(found))
    }

    /// Every nsqd a lookupd knows.
    pub(super) async fn nodes(&self, lookupd: &str) -> Result<Vec<Nsqd>, NsqError> {
        let url = format!("http://{lookupd}/nodes");
        let found: Option<Producers> = self.get_json(&url).await?;
        Ok(nsqds(found))
    }
}

/// A valid topic name as a query value: only the `#` of `#ephemeral`
/// needs escaping.
fn query(topic: &str) -> String {
    topic.replace('#', "%23")
}

fn nsqds(found: Option<Producers>) -> Vec<Nsqd> {
    let mut v: Vec<Nsqd> = found
        .and_then(|p| p.producers)
        .unwrap_or_default()
        .iter()
        .map(Producer::nsqd)
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookupd_answers_become_nsqd_addresses() {
        let body = br#"{"channels":["c"],"producers":[
            {"remote_address":"10.0.0.5:3333","hostname":"h","broadcast_address":"nsq-1","tcp_port":4150,"http_port":4151,"version":"1.3.0"},
            {"remote_address":"x","hostname":"h","broadcast_address":"fd00::1","tcp_port":4150,"http_port":4151,"version":"1.3.0"},
            {"remote_address":"10.0.0.5:3333","hostname":"h","broadcast_address":"nsq-1","tcp_port":4150,"http_port":4151,"version":"1.3.0"}]}"#;
        let p: Producers = serde_json::from_slice(body).expect("parses");
        let got = nsqds(Some(p));
        assert_eq!(
            got,
            vec![
                Nsqd {
                    tcp: "[fd00::1]:4150".into(),
                    http: "[fd00::1]:4151".into()
                },
                Nsqd {
                    tcp: "nsq-1:4150".into(),
                    http: "nsq-1:4151".into()
                },
            ]
        );
        let none: Producers = serde_json::from_slice(br#"{"producers":null}"#).expect("parses");
        assert!(nsqds(Some(none)).is_empty());
    }
}
