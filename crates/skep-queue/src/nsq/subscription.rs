//! A consumer: one connection per nsqd that has the topic, each kept alive
//! by its own task, and a table of the messages received.
//!
//! nsqd tracks each message it sent with a deadline (its `msg_timeout`, the
//! subscription's visibility timeout) and hands it out again once that
//! passes. This side keeps the same deadline for every message received
//! (extended by TOUCH up to nsqd's `max_msg_timeout`), so that a FIN, REQ
//! or TOUCH is only ever sent for a message nsqd still holds for this
//! connection: a settle after the deadline, or of a message whose
//! connection has died since, does nothing and returns `Ok` (the message
//! comes, or came, back). Whoever takes a message out of the table (a
//! settle, the deadline sweep, a lost connection) is the only one that
//! settles it. One that races nsqd's own timer is refused softly (see
//! [`super::conn`]) and counted.
//!
//! `max_in_flight` is kept twice: the RDY counts of the connections add up
//! to it ([`plan_rdy`]), and `next` waits while that many deliveries
//! it handed out are unsettled. A delivery that waited in the table for
//! more than a quarter of the timeout before `next` handed it out is
//! TOUCHed then, so its taker gets (nearly) the whole timeout.
//!
//! A connection that fails is opened again with backoff (100 ms doubling to
//! 5 s, for ever) and subscribes and sets RDY again. For an `nsqlookup://`
//! URL the subscription polls the lookupds for the topic's nsqds
//! ([`LOOKUP_EVERY`], every [`LOOKUP_WHILE_NONE`] while none has it) and
//! connects to new ones; one the lookupds stop naming is given up when its
//! connection fails. `next` returns `None` only once the queue is closed.
//!
//! Dropping the subscription hands back (REQ 0) what was received and not
//! taken, and sends CLS; deliveries already taken can still be settled,
//! and each connection closes once nothing taken from it is left (settled,
//! or past its deadline). Closing the queue hands back everything at once.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::conn::{Conn, Dial, Inbox};
use super::protocol::{Command, Message, MessageId};
use super::url::Nsqd;
use super::{Inner, MAX_DEFER, NsqError, lock};
use crate::{Acker, Delivery, Subscription};

/// How often deadlines are swept and RDY is reviewed.
const TICK: Duration = Duration::from_millis(200);
/// How often an `nsqlookup://` subscription asks for its topic's nsqds.
pub(super) const LOOKUP_EVERY: Duration = Duration::from_secs(15);
/// How often it asks while no nsqd has the topic (it may appear any time).
pub(super) const LOOKUP_WHILE_NONE: Duration = Duration::from_secs(1);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A connection that lived this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(1);
/// With fewer RDY than connections, a connection that got nothing for
/// this long passes its RDY on to another.
const ROTATE_AFTER: Duration = Duration::from_secs(1);
/// How long a dropped subscription waits for nsqd's answer to CLS.
const CLS_WAIT: Duration = Duration::from_secs(2);

pub(super) struct NsqSubscription {
    shared: Arc<Shared>,
}

pub(super) struct Shared {
    queue: Arc<Inner>,
    topic: String,
    channel: String,
    max_in_flight: usize,
    msg_timeout: Duration,
    state: Mutex<State>,
    /// Wakes `next` and draining connections: a delivery arrived, one was
    /// settled, the subscription ended.
    changed: Notify,
    /// The subscription was dropped or the queue closed.
    stop: CancellationToken,
    runtime: Handle,
}

#[derive(Default)]
struct State {
    held: HashMap<u64, Held>,
    /// Deliveries not yet taken, in arrival order (some may have left
    /// `held` since; they are skipped).
    waiting: VecDeque<u64>,
    /// Deliveries taken and neither settled, past their deadline nor lost.
    taken: usize,
    conns: BTreeMap<u64, Link>,
    next_seq: u64,
    /// Where the low-RDY rotation goes on.
    rotation: u64,
    /// The subscription was dropped: arrivals are handed back at once.
    dropped: bool,
    /// The queue was closed: `next` returns `None`.
    ended: bool,
}

/// A message received and not settled.
struct Held {
    conn: u64,
    id: MessageId,
    received: Instant,
    deadline: Instant,
    /// Until `next` hands it out.
    waiting: Option<(Bytes, u16)>,
}

/// One subscribed connection.
struct Link {
    conn: Arc<Conn>,
    rdy: Rdy,
    /// Messages taken out of the table whose FIN or REQ is not queued yet.
    settling: usize,
    /// Its RDY changed and could not be queued yet.
    unsent: bool,
}

impl State {
    /// Takes a message out of the table; its connection if it may still be
    /// settled there (counted as settling until the [`Claim`] is dropped).
    fn take(&mut self, seq: u64, now: Instant) -> Option<(Arc<Conn>, MessageId, Instant)> {
        let held = self.held.remove(&seq)?;
        if held.waiting.is_none() {
            self.taken -= 1;
        }
        let link = self.conns.get_mut(&held.conn)?;
        link.rdy.held -= 1;
        if held.deadline <= now {
            return None;
        }
        link.settling += 1;
        Some((link.conn.clone(), held.id, held.deadline))
    }

    /// Forgets every message `pick` selects (nsqd hands them out again).
    fn forget_where(&mut self, pick: impl Fn(&Held) -> bool) -> usize {
        let gone: Vec<u64> = self.held.iter().filter(|(_, h)| pick(h)).map(|(s, _)| *s).collect();
        for seq in &gone {
            if let Some(h) = self.held.remove(seq) {
                if h.waiting.is_none() {
                    self.taken -= 1;
                }
                if let Some(link) = self.conns.get_mut(&h.conn) {
                    link.rdy.held -= 1;
                }
            }
        }
        if !gone.is_empty() {
            let held = &self.held;
            self.waiting.retain(|s| held.contains_key(s));
        }
        gone.len()
    }

    /// Brings the connections' RDY to [`plan_rdy`]'s plan.
    ///
    /// NB: RDY is queued here, under the state lock and without waiting,
    /// so that two reviews cannot reach nsqd in the opposite order of their
    /// plans; one that finds its connection's queue full is sent by a
    /// later review.
    fn review_rdy(&mut self, max_in_flight: usize, now: Instant) {
        let mut links: Vec<(u64, &mut Rdy)> = self.conns.iter_mut().map(|(id, l)| (*id, &mut l.rdy)).collect();
        let changed = plan_rdy(&mut links, max_in_flight, self.dropped, &mut self.rotation, now);
        for id in changed {
            if let Some(link) = self.conns.get_mut(&id) {
                link.unsent = true;
            }
        }
        for link in self.conns.values_mut().filter(|l| l.unsent) {
            link.unsent = link.conn.try_send(Command::Rdy(link.rdy.rdy)).is_err();
        }
    }
}

/// A connection's RDY and what it bounds.
#[derive(Clone, Copy, Debug)]
struct Rdy {
    rdy: u32,
    /// Messages of the table received on it.
    held: usize,
    /// When it last got a message or a new RDY.
    active: Instant,
    /// nsqd's `max_rdy_count`.
    max: u32,
}

/// Sets each connection's RDY (`links` in ascending id order) so that they
/// add up to `max_in_flight`, within each nsqd's `max_rdy_count`; the ids
/// whose RDY changed. A stopped subscription gets RDY 0 everywhere.
///
/// With fewer RDY than connections, at most `max_in_flight` connections
/// have RDY 1, and one that got nothing for [`ROTATE_AFTER`] passes it on
/// (round robin from `rotation`), so every nsqd is served in turn. RDY is
/// only granted while the messages held plus the RDY still open stay
/// within `max_in_flight`.
fn plan_rdy(
    links: &mut [(u64, &mut Rdy)],
    max_in_flight: usize,
    stopped: bool,
    rotation: &mut u64,
    now: Instant,
) -> Vec<u64> {
    let mut changed = Vec::new();
    let mut set = |id: u64, link: &mut Rdy, rdy: u32| {
        if link.rdy != rdy {
            link.rdy = rdy;
            link.active = now;
            changed.push(id);
        }
    };
    let n = links.len();
    if stopped || n == 0 {
        for (id, link) in links.iter_mut() {
            set(*id, link, 0);
        }
        return changed;
    }
    if max_in_flight >= n {
        for (i, (id, link)) in links.iter_mut().enumerate() {
            let share = max_in_flight / n + usize::from(i < max_in_flight % n);
            let rdy = u32::try_from(share).unwrap_or(u32::MAX).min(link.max);
            set(*id, link, rdy);
        }
        return changed;
    }
    let mut revoked = HashSet::new();
    for (id, link) in links.iter_mut() {
        if link.rdy > 0 && link.held == 0 && now.duration_since(link.active) >= ROTATE_AFTER {
            set(*id, link, 0);
            revoked.insert(*id);
        }
    }
    loop {
        let used: usize = links.iter().map(|(_, l)| (l.rdy as usize).max(l.held)).sum();
        if used >= max_in_flight {
            break;
        }
        let after = *rotation;
        let next = links
            .iter()
            .enumerate()
            .filter(|(_, (id, l))| l.rdy == 0 && !revoked.contains(id))
            .min_by_key(|(_, (id, _))| (*id <= after, *id))
            .map(|(i, _)| i);
        let Some(i) = next else { break };
        let (id, link) = &mut links[i];
        *rotation = *id;
        set(*id, link, 1);
    }
    changed
}

impl Inbox for Shared {
    fn deliver(&self, conn: u64, msg: Message) {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let dropped = state.dropped;
        let Some(link) = state.conns.get_mut(&conn) else {
            return;
        };
        if dropped {
            // NB: nobody will take it; nsqd would hold it until its timeout.
            let _ = link.conn.try_send(Command::Req(msg.id, Duration::ZERO));
            return;
        }
        link.rdy.held += 1;
        link.rdy.active = now;
        let deadline = now + link.conn.negotiated.msg_timeout;
        let seq = state.next_seq;
        state.next_seq += 1;
        state.held.insert(
            seq,
            Held {
                conn,
                id: msg.id,
                received: now,
                deadline,
                waiting: Some((msg.body, msg.attempts)),
            },
        );
        state.waiting.push_back(seq);
        drop(state);
        self.changed.notify_waiters();
    }
}

impl Shared {
    fn spawn(&self, task: &'static str, fut: impl Future<Output = ()> + Send + 'static) {
        let span = info_span!("nsq", task, topic = %self.topic, channel = %self.channel);
        self.runtime.spawn(fut.instrument(span));
    }

    fn register(&self, conn: Arc<Conn>) {
        let mut state = lock(&self.state);
        state.conns.insert(
            conn.id,
            Link {
                settling: 0,
                unsent: false,
                rdy: Rdy {
                    rdy: 0,
                    held: 0,
                    active: Instant::now(),
                    max: conn.negotiated.max_rdy_count,
                },
                conn,
            },
        );
        state.review_rdy(self.max_in_flight, Instant::now());
    }

    /// Forgets a connection and what it delivered (nsqd hands that out
    /// again after its timeout).
    fn unregister(&self, id: u64) {
        {
            let mut state = lock(&self.state);
            state.forget_where(|h| h.conn == id);
            state.conns.remove(&id);
            state.review_rdy(self.max_in_flight, Instant::now());
        }
        self.changed.notify_waiters();
    }

    /// Forgets what is past its deadline and reviews RDY.
    fn sweep(&self) {
        let now = Instant::now();
        let expired = {
            let mut state = lock(&self.state);
            let expired = state.forget_where(|h| h.deadline <= now);
            state.review_rdy(self.max_in_flight, now);
            expired
        };
        if expired > 0 {
            debug!(expired, "deliveries not settled in time; nsqd hands them out again");
            self.changed.notify_waiters();
        }
    }

    /// Takes a message out of the table to settle it; `None` if it is no
    /// longer this side's to settle.
    fn claim(self: &Arc<Self>, seq: u64) -> Option<Claim> {
        if self.queue.closing.is_cancelled() {
            // NB: the closing queue hands everything back itself.
            return None;
        }
        let claimed = lock(&self.state).take(seq, Instant::now());
        self.changed.notify_waiters();
        claimed.map(|(conn, id, deadline)| Claim {
            shared: self.clone(),
            conn,
            id,
            deadline,
        })
    }

    /// Hands back what was received on `conn` and not taken; `everything`
    /// hands back what was taken too.
    async fn hand_back(self: &Arc<Self>, conn: &Conn, everything: bool) {
        let claims: Vec<Claim> = {
            let mut state = lock(&self.state);
            let seqs: Vec<u64> = state
                .held
                .iter()
                .filter(|(_, h)| h.conn == conn.id && (everything || h.waiting.is_some()))
                .map(|(s, _)| *s)
                .collect();
            let now = Instant::now();
            seqs.into_iter()
                .filter_map(|s| state.take(s, now))
                .map(|(conn, id, deadline)| Claim {
                    shared: self.clone(),
                    conn,
                    id,
                    deadline,
                })
                .collect()
        };
        for c in &claims {
            if conn.send(Command::Req(c.id, Duration::ZERO)).await.is_err() {
                return;
            }
        }
    }

    /// Ends a connection of a subscription that stopped: hands back what
    /// was not taken, CLS, and (unless the queue closed) waits until
    /// nothing taken from it is left.
    async fn drain(self: &Arc<Self>, conn: &Arc<Conn>) {
        let closing = self.queue.closing.is_cancelled();
        if closing {
            // NB: what arrives from now on is handed back at once.
            lock(&self.state).dropped = true;
        }
        self.hand_back(conn, closing).await;
        if let Ok(reply) = conn.request(Command::Cls).await {
            let _ = tokio::time::timeout(CLS_WAIT, reply).await;
        }
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let left = lock(&self.state)
                .conns
                .get(&conn.id)
                .map_or(0, |l| l.rdy.held + l.settling);
            if left == 0 || !conn.is_alive() {
                break;
            }
            if self.queue.closing.is_cancelled() {
                self.hand_back(conn, true).await;
                break;
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep(TICK) => self.sweep(),
                _ = conn.closed() => {}
                _ = self.queue.closing.cancelled() => {}
            }
        }
        conn.close_after_queued(CLS_WAIT).await;
        self.unregister(conn.id);
    }

    fn end(&self) {
        lock(&self.state).ended = true;
        self.changed.notify_waiters();
    }
}

/// A message taken out of the table to be settled on its connection. The
/// connection is not closed by a dropped subscription while a claim on it
/// lives: the FIN or REQ queued before the claim is dropped is written.
struct Claim {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
    id: MessageId,
    deadline: Instant,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(link) = lock(&self.shared.state).conns.get_mut(&self.conn.id) {
            link.settling -= 1;
        }
        self.shared.changed.notify_waiters();
    }
}

impl NsqSubscription {
    /// Starts consuming from `nsqds` (and, for a lookup URL, whatever the
    /// lookupds name later). Fails if there were nsqds and none could be
    /// subscribed to now.
    pub(super) async fn start(
        queue: Arc<Inner>,
        topic: &str,
        channel: &str,
        max_in_flight: usize,
        msg_timeout: Duration,
        nsqds: Vec<Nsqd>,
    ) -> Result<Self, NsqError> {
        let shared = Arc::new(Shared {
            stop: queue.closing.child_token(),
            queue,
            topic: topic.to_owned(),
            channel: channel.to_owned(),
            max_in_flight,
            msg_timeout,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            runtime: Handle::current(),
        });
        let opened = futures::future::join_all(nsqds.iter().map(|n| open(&shared, &n.tcp))).await;
        let mut first_error = None;
        let mut any = false;
        let mut supervised = Supervised::default();
        for (nsqd, result) in nsqds.into_iter().zip(opened) {
            let conn = match result {
                Ok(c) => {
                    any = true;
                    Some(c)
                }
                Err(e) => {
                    warn!(nsqd = %nsqd.tcp, error = %e, "cannot subscribe on nsqd yet; retrying in the background");
                    first_error.get_or_insert(e);
                    None
                }
            };
            supervised.start(&shared, nsqd.tcp, conn);
        }
        if !any && let Some(e) = first_error {
            shared.stop.cancel();
            return Err(e);
        }
        let pump = pump(shared.clone(), supervised);
        shared.spawn("pump", pump);
        Ok(Self { shared })
    }
}

async fn open(shared: &Arc<Shared>, addr: &str) -> Result<Arc<Conn>, NsqError> {
    let inbox: Arc<dyn Inbox> = shared.clone();
    Conn::open(Dial {
        addr,
        connect_timeout: super::CONNECT_TIMEOUT,
        msg_timeout: Some(shared.msg_timeout),
        sub: Some((&shared.topic, &shared.channel, inbox)),
        soft_errors: shared.queue.soft_errors.clone(),
    })
    .await
}

/// The connection tasks, by nsqd address, with whether the address is
/// still wanted.
#[derive(Default)]
struct Supervised {
    tasks: HashMap<String, Arc<AtomicBool>>,
}

impl Supervised {
    fn start(&mut self, shared: &Arc<Shared>, addr: String, conn: Option<Arc<Conn>>) {
        let wanted = Arc::new(AtomicBool::new(true));
        self.tasks.insert(addr.clone(), wanted.clone());
        let fut = supervise(shared.clone(), addr.clone(), conn, wanted);
        let span =
            info_span!("nsq", task = "connection", nsqd = %addr, topic = %shared.topic, channel = %shared.channel);
        shared.runtime.spawn(fut.instrument(span));
    }

    /// Starts tasks for new addresses and marks the others unwanted (they
    /// end when their connection fails).
    fn update(&mut self, shared: &Arc<Shared>, nsqds: &[Nsqd]) {
        self.tasks.retain(|_, wanted| Arc::strong_count(wanted) > 1);
        let now: HashSet<&str> = nsqds.iter().map(|n| n.tcp.as_str()).collect();
        for (addr, wanted) in &self.tasks {
            wanted.store(now.contains(addr.as_str()), Ordering::Relaxed);
        }
        for n in nsqds {
            if !self.tasks.contains_key(&n.tcp) {
                info!(nsqd = %n.tcp, "the topic appeared on an nsqd; subscribing there");
                self.start(shared, n.tcp.clone(), None);
            }
        }
    }
}

/// Keeps one nsqd connection subscribed until the subscription stops.
async fn supervise(shared: Arc<Shared>, addr: String, mut conn: Option<Arc<Conn>>, wanted: Arc<AtomicBool>) {
    let mut backoff = BACKOFF_FIRST;
    let mut failures = 0u32;
    loop {
        if shared.stop.is_cancelled() {
            if let Some(c) = conn {
                c.close();
            }
            return;
        }
        let c = match conn.take() {
            Some(c) => c,
            None => match open(&shared, &addr).await {
                Ok(c) => {
                    if failures > 0 {
                        info!(failures, "subscribed again");
                    }
                    failures = 0;
                    c
                }
                Err(error) => {
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        warn!(%error, failures, retry_in = ?backoff, "cannot subscribe on nsqd");
                    }
                    if !wanted.load(Ordering::Relaxed) {
                        return;
                    }
                    tokio::select! {
                        _ = shared.stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
        };
        let opened = Instant::now();
        shared.register(c.clone());
        tokio::select! {
            _ = c.closed() => {}
            _ = shared.stop.cancelled() => {
                shared.drain(&c).await;
                return;
            }
        }
        shared.unregister(c.id);
        if opened.elapsed() >= STABLE_AFTER {
            backoff = BACKOFF_FIRST;
        }
        if !wanted.load(Ordering::Relaxed) {
            info!("nsqd connection lost and the lookupds no longer name it; giving it up");
            return;
        }
        warn!(retry_in = ?backoff, "nsqd connection lost; subscribing again");
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Sweeps deadlines, reviews RDY and (for a lookup URL) looks for nsqds,
/// until the subscription stops.
async fn pump(shared: Arc<Shared>, mut supervised: Supervised) {
    let lookup = shared.queue.discovery.is_lookup();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_lookup = Instant::now();
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        shared.sweep();
        if lookup && Instant::now() >= next_lookup {
            match shared.queue.discovery.for_topic(&shared.topic).await {
                Ok(nsqds) => {
                    next_lookup = Instant::now()
                        + if nsqds.is_empty() {
                            LOOKUP_WHILE_NONE
                        } else {
                            LOOKUP_EVERY
                        };
                    supervised.update(&shared, &nsqds);
                }
                Err(error) => {
                    next_lookup = Instant::now() + LOOKUP_WHILE_NONE;
                    debug!(%error, "cannot ask the lookupds for nsqds");
                }
            }
        }
    }
    if shared.queue.closing.is_cancelled() {
        shared.end();
    }
}

#[async_trait]
impl Subscription for NsqSubscription {
    async fn next(&mut self) -> Option<Delivery> {
        let shared = &self.shared;
        loop {
            let changed = shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let mut touch = None;
            let mut delivery = None;
            {
                let mut state = lock(&shared.state);
                if state.ended || shared.queue.closing.is_cancelled() {
                    return None;
                }
                let now = Instant::now();
                let State {
                    held: table,
                    waiting,
                    taken,
                    conns,
                    ..
                } = &mut *state;
                while *taken < shared.max_in_flight {
                    let Some(seq) = waiting.pop_front() else { break };
                    let Some(held) = table.get_mut(&seq) else {
                        continue;
                    };
                    if held.deadline <= now {
                        // NB: nsqd has handed it out again; the sweep forgets it.
                        continue;
                    }
                    let Some((body, attempts)) = held.waiting.take() else {
                        continue;
                    };
                    if now.duration_since(held.received) > shared.msg_timeout / 4
                        && let Some(link) = conns.get(&held.conn)
                    {
                        let n = link.conn.negotiated;
                        held.deadline = (now + n.msg_timeout).min(held.received + n.max_msg_timeout);
                        touch = Some((link.conn.clone(), held.id));
                    }
                    *taken += 1;
                    let acker = NsqAcker {
                        shared: shared.clone(),
                        seq,
                        body: body.clone(),
                    };
                    delivery = Some(Delivery::new(
                        body,
                        attempts.into(),
                        held.id.to_string(),
                        Box::new(acker),
                    ));
                    break;
                }
            }
            if let Some((conn, id)) = touch {
                let _ = conn.try_send(Command::Touch(id));
            }
            if delivery.is_some() {
                return delivery;
            }
            changed.await;
        }
    }
}

impl Drop for NsqSubscription {
    fn drop(&mut self) {
        lock(&self.shared.state).dropped = true;
        self.shared.stop.cancel();
    }
}

struct NsqAcker {
    shared: Arc<Shared>,
    seq: u64,
    body: Bytes,
}

#[async_trait]
impl Acker for NsqAcker {
    async fn ack(&self) -> crate::Result<()> {
        if let Some(c) = self.shared.claim(self.seq)
            && c.conn.send(Command::Fin(c.id)).await.is_err()
        {
            debug!(id = %c.id, "FIN on a lost connection; the message comes back");
        }
        Ok(())
    }

    async fn requeue(&self, delay: Duration) -> crate::Result<()> {
        if let Some(c) = self.shared.claim(self.seq)
            && c.conn.send(Command::Req(c.id, delay.min(MAX_DEFER))).await.is_err()
        {
            debug!(id = %c.id, "REQ on a lost connection; the message comes back");
        }
        Ok(())
    }

    async fn touch(&self) -> crate::Result<()> {
        let now = Instant::now();
        let target = {
            let mut state = lock(&self.shared.state);
            let State { held, conns, .. } = &mut *state;
            match held.get_mut(&self.seq) {
                Some(h) if h.deadline > now => conns.get(&h.conn).map(|link| {
                    let n = link.conn.negotiated;
                    h.deadline = (now + n.msg_timeout).min(h.received + n.max_msg_timeout);
                    (link.conn.clone(), h.id)
                }),
                _ => None,
            }
        };
        if let Some((conn, id)) = target {
            let _ = conn.send(Command::Touch(id)).await;
        }
        Ok(())
    }

    async fn dead_letter(&self) -> crate::Result<()> {
        let Some(c) = self.shared.claim(self.seq) else {
            // NB: it came back already; that delivery is dead-lettered in turn.
            return Ok(());
        };
        let (conn, id) = (&c.conn, c.id);
        let dead = crate::dead_letter_topic(&self.shared.topic);
        match self.shared.queue.publish_to(&dead, vec![self.body.clone()]).await {
            Ok(()) => {
                // NB: after the deadline nsqd has handed it out again: the
                // dead-letter topic may get a second copy, nothing is lost.
                if Instant::now() < c.deadline {
                    let _ = conn.send(Command::Fin(id)).await;
                }
                Ok(())
            }
            Err(error) => {
                warn!(%error, %id, "dead-lettering failed; handing the message back");
                let _ = conn.send(Command::Req(id, Duration::ZERO)).await;
                Err(error.into())
            }
        }
    }

    fn release(&self) {
        if let Some(c) = self.shared.claim(self.seq)
            && let Err(cmd) = c.conn.try_send(Command::Req(c.id, Duration::ZERO))
        {
            let shared = self.shared.clone();
            shared.spawn("release", async move {
                let _ = c.conn.send(cmd).await;
                drop(c);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(n: usize, max: u32, at: Instant) -> Vec<(u64, Rdy)> {
        (1..=n as u64)
            .map(|id| {
                (
                    id,
                    Rdy {
                        rdy: 0,
                        held: 0,
                        active: at,
                        max,
                    },
                )
            })
            .collect()
    }

    fn plan(links: &mut [(u64, Rdy)], m: usize, stopped: bool, rotation: &mut u64, now: Instant) -> Vec<u64> {
        let mut refs: Vec<(u64, &mut Rdy)> = links.iter_mut().map(|(id, l)| (*id, l)).collect();
        plan_rdy(&mut refs, m, stopped, rotation, now)
    }

    fn rdys(links: &[(u64, Rdy)]) -> Vec<u32> {
        links.iter().map(|(_, l)| l.rdy).collect()
    }

    #[test]
    fn rdy_adds_up_to_max_in_flight_within_nsqds_limit() {
        let now = Instant::now();
        let mut r = 0;
        let mut one = links(1, 2500, now);
        assert_eq!(plan(&mut one, 256, false, &mut r, now), vec![1]);
        assert_eq!(rdys(&one), vec![256]);
        assert!(
            plan(&mut one, 256, false, &mut r, now).is_empty(),
            "unchanged RDY is not sent again"
        );
        assert_eq!(plan(&mut one, 9000, false, &mut r, now), vec![1]);
        assert_eq!(rdys(&one), vec![2500]);
        let mut three = links(3, 2500, now);
        plan(&mut three, 7, false, &mut r, now);
        assert_eq!(rdys(&three), vec![3, 2, 2]);
        assert_eq!(plan(&mut three, 7, true, &mut r, now), vec![1, 2, 3]);
        assert_eq!(rdys(&three), vec![0, 0, 0]);
    }

    #[test]
    fn low_rdy_rotates_over_idle_connections_without_exceeding_max_in_flight() {
        let t0 = Instant::now();
        let mut r = 0;
        let mut three = links(3, 2500, t0);
        plan(&mut three, 1, false, &mut r, t0);
        assert_eq!(rdys(&three), vec![1, 0, 0]);
        // Busy (holding a message): keeps its RDY however long.
        three[0].1.held = 1;
        plan(&mut three, 1, false, &mut r, t0 + ROTATE_AFTER * 3);
        assert_eq!(rdys(&three), vec![1, 0, 0]);
        // Idle for ROTATE_AFTER: the next connection gets the RDY.
        three[0].1.held = 0;
        let t1 = t0 + ROTATE_AFTER * 4;
        plan(&mut three, 1, false, &mut r, t1);
        assert_eq!(rdys(&three), vec![0, 1, 0]);
        plan(&mut three, 1, false, &mut r, t1 + ROTATE_AFTER);
        assert_eq!(rdys(&three), vec![0, 0, 1]);
        plan(&mut three, 1, false, &mut r, t1 + ROTATE_AFTER * 2);
        assert_eq!(rdys(&three), vec![1, 0, 0]);
        // A connection whose RDY was taken away still holds a message: no
        // RDY is granted until it is settled.
        three[0].1.held = 1;
        three[0].1.rdy = 0;
        plan(&mut three, 1, false, &mut r, t1 + ROTATE_AFTER * 3);
        assert_eq!(rdys(&three), vec![0, 0, 0]);
    }
}
