//! Mail between shards: couriers that send each shard's durable outbox, and the desks that
//! take mail in. What the mail says and the rules of the exchange are in
//! `ringflow_core::remote`; this module only moves it.
//!
//! ```text
//! shard A                                              shard B
//! command ─▶ engine puts mail in the outbox ─▶ journal ─▶ durable
//!   release: mail_out[B] += (seq, mail) ─▶ courier for B
//!   courier: up to MAIL_BATCH_MAX mails      ──deliver──▶ desk (channel) or
//!            and MAIL_BATCH_BYTES_MAX bytes                 ShardMailRequest (TCP)
//!                                                         take_mail: Receive per mail
//!                                                         (journaled, in order, duplicates
//!                                                         and gaps refused) ─▶ durable
//!            ◀──────────── the highest number B has taken from A ──
//!   mail_acknowledged: drop up to it, journal Acknowledge
//!   failed or unanswered: wait MAIL_RETRY_MILLIS_MIN, doubling up to MAIL_RETRY_MILLIS_MAX,
//!   and send again from the oldest unacknowledged mail
//! ```
//!
//! One delivery per destination is in flight at a time, so mail arrives in order. After a
//! restart the recovered outbox is sent again; the receiver refuses what it has taken
//! already (and answers its number, so the sender drops it). Nothing leaves before the
//! record that made it is durable, and nothing is dropped before the receiver's record is.
//!
//! Links: shards of one node talk over glommio's bounded shared channels (one request channel
//! and one answer channel per ordered pair of shards); shards of other nodes over the wire
//! protocol's `ShardMailRequest`, on one TCP connection per destination shard.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use ringflow_wire::frame::FrameReader;
use ringflow_wire::{FrameEncoder, Message, Request, Response, Topology};

use crate::shard::{Shard, SubmitError};
use crate::storage::Dir;

/// Most mails in one delivery.
pub const MAIL_BATCH_MAX: usize = 256;
/// Most bytes of mail in one delivery (one mail alone may be larger: it fit in a journal
/// record, so it fits in a frame).
pub const MAIL_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// First wait after a failed delivery, in milliseconds.
pub const MAIL_RETRY_MILLIS_MIN: u64 = 50;
/// Longest wait between tries, in milliseconds.
pub const MAIL_RETRY_MILLIS_MAX: u64 = 5_000;
/// A delivery not answered in this long counts as failed (and is sent again), in
/// milliseconds.
pub const MAIL_DELIVERY_TIMEOUT_MILLIS: u64 = 30_000;
/// Deliveries that fit in one shard-to-shard channel of a node.
pub const MAIL_CHANNEL_DEPTH: usize = 4;
/// Longest answer frame read from another node, in bytes.
pub const MAIL_ANSWER_BYTES_MAX: usize = 64 * 1024;

/// A delivery's future: the highest number the receiver has taken from the sender.
pub type Delivery<'a> = Pin<Box<dyn Future<Output = Result<u64, String>> + 'a>>;

/// How mail reaches another shard.
pub trait Link {
    /// Delivers `mails` (in order) from shard `from` to shard `to`; answers the highest number
    /// `to` has taken from `from`, once that is durable there.
    fn deliver(&self, from: u16, to: u16, mails: Vec<(u64, Vec<u8>)>) -> Delivery<'_>;
}

/// Runs the couriers of a shard until it stops: one per destination with mail, each
/// delivering one batch at a time.
pub async fn run_post<D: Dir + 'static>(shard: Rc<Shard<D>>, link: Rc<dyn Link>) {
    let active: Rc<RefCell<BTreeSet<u16>>> = Rc::default();
    loop {
        let ready = shard.mail_ready();
        if shard.stopped().is_some() {
            return;
        }
        for to in shard.mail_destinations() {
            if active.borrow_mut().insert(to) {
                let courier = courier(Rc::clone(&shard), Rc::clone(&link), to, active.clone());
                glommio::spawn_local(courier).detach();
            }
        }
        ready.await;
    }
}

async fn courier<D: Dir + 'static>(
    shard: Rc<Shard<D>>,
    link: Rc<dyn Link>,
    to: u16,
    active: Rc<RefCell<BTreeSet<u16>>>,
) {
    let from = shard.id();
    let mut retry = MAIL_RETRY_MILLIS_MIN;
    let mut failing = false;
    loop {
        if shard.stopped().is_some() {
            break;
        }
        let batch = shard.mail_for(to, MAIL_BATCH_MAX, MAIL_BATCH_BYTES_MAX);
        let Some(first) = batch.first().map(|(seq, _)| *seq) else {
            break;
        };
        let last = batch.last().map(|(seq, _)| *seq).unwrap_or(first);
        let timeout = Duration::from_millis(MAIL_DELIVERY_TIMEOUT_MILLIS);
        let delivered = futures_lite::future::or(link.deliver(from, to, batch), async {
            glommio::timer::sleep(timeout).await;
            Err(format!("no answer in {MAIL_DELIVERY_TIMEOUT_MILLIS} ms"))
        })
        .await;
        let outcome = match delivered {
            Ok(taken) if taken >= first => {
                let taken = taken.min(last);
                shard
                    .mail_acknowledged(to, taken)
                    .await
                    .map_err(|error| error.to_string())
            }
            Ok(taken) => Err(format!(
                "shard {to} has taken mail up to {taken} only, before {first}: it lost mail; \
                 sending again"
            )),
            Err(error) => Err(error),
        };
        match outcome {
            Ok(()) => {
                if failing {
                    tracing::info!(shard = from, to, "mail goes through again");
                }
                failing = false;
                retry = MAIL_RETRY_MILLIS_MIN;
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(shard = from, to, %error, "mail delivery failed; retrying");
                }
                failing = true;
                glommio::timer::sleep(Duration::from_millis(retry)).await;
                retry = (retry * 2).min(MAIL_RETRY_MILLIS_MAX);
            }
        }
    }
    active.borrow_mut().remove(&to);
    // Mail that became durable while this courier was ending starts a new one.
    if !shard.mail_destinations().is_empty() {
        shard.wake_mail();
    }
}

/// A delivery within the node: the sender's mails, answered on the paired answer channel.
pub struct LocalDelivery {
    mails: Vec<(u64, Vec<u8>)>,
}

/// A desk's answer: the highest number taken, or why not.
type Answer = Result<u64, String>;

/// The channels of one shard: to and from every other shard of its node.
pub struct ShardChannels {
    outgoing: Vec<(u16, SharedSender<LocalDelivery>, SharedReceiver<Answer>)>,
    incoming: Vec<(u16, SharedReceiver<LocalDelivery>, SharedSender<Answer>)>,
}

/// Builds the channel mesh of a node's shards (ids `first..first + count`): by shard id.
pub fn channel_mesh(first: u16, count: u16) -> BTreeMap<u16, ShardChannels> {
    let mut mesh: BTreeMap<u16, ShardChannels> = (first..first + count)
        .map(|id| {
            let channels = ShardChannels {
                outgoing: Vec::new(),
                incoming: Vec::new(),
            };
            (id, channels)
        })
        .collect();
    for from in first..first + count {
        for to in first..first + count {
            if from == to {
                continue;
            }
            let (request_tx, request_rx) = shared_channel::new_bounded(MAIL_CHANNEL_DEPTH);
            let (answer_tx, answer_rx) = shared_channel::new_bounded(MAIL_CHANNEL_DEPTH);
            let sender = mesh.get_mut(&from).expect("in the mesh");
            sender.outgoing.push((to, request_tx, answer_rx));
            let receiver = mesh.get_mut(&to).expect("in the mesh");
            receiver.incoming.push((from, request_rx, answer_tx));
        }
    }
    mesh
}

struct Connected {
    requests: ConnectedSender<LocalDelivery>,
    answers: ConnectedReceiver<Answer>,
}

/// A channel pair to a shard of the node, connected by a task of its own (connecting waits
/// for the peer to connect its end, so nothing at startup may wait for it).
#[derive(Default)]
struct LocalPeer {
    connected: RefCell<Option<Rc<Connected>>>,
    ready: crate::wait::WaitList,
}

/// The link of one shard of a node: channels to the shards of its node, TCP to the others.
pub struct NodeLink {
    local: BTreeMap<u16, Rc<LocalPeer>>,
    topology: Option<Topology>,
    remote: RefCell<BTreeMap<u16, Rc<RemoteConnection>>>,
}

impl NodeLink {
    /// Connects this shard's channels (on its own executor) and starts a desk per peer that
    /// takes its mail. `topology`: the cluster, for shards of other nodes.
    pub fn start<D: Dir + 'static>(
        shard: Rc<Shard<D>>,
        channels: ShardChannels,
        topology: Option<Topology>,
    ) -> NodeLink {
        let mut local = BTreeMap::new();
        for (to, requests, answers) in channels.outgoing {
            let peer = Rc::new(LocalPeer::default());
            local.insert(to, Rc::clone(&peer));
            glommio::spawn_local(async move {
                let connected = Connected {
                    requests: requests.connect().await,
                    answers: answers.connect().await,
                };
                *peer.connected.borrow_mut() = Some(Rc::new(connected));
                peer.ready.wake_all();
            })
            .detach();
        }
        for (from, requests, answers) in channels.incoming {
            let shard = Rc::clone(&shard);
            glommio::spawn_local(async move {
                let requests = requests.connect().await;
                let answers = answers.connect().await;
                while let Some(delivery) = requests.recv().await {
                    let taken = shard
                        .take_mail(from, delivery.mails)
                        .await
                        .map_err(|error| error.to_string());
                    let stopped = taken.is_err() && shard.stopped().is_some();
                    if answers.send(taken).await.is_err() || stopped {
                        return;
                    }
                }
            })
            .detach();
        }
        NodeLink {
            local,
            topology,
            remote: RefCell::default(),
        }
    }
}

impl Link for NodeLink {
    fn deliver(&self, from: u16, to: u16, mails: Vec<(u64, Vec<u8>)>) -> Delivery<'_> {
        if let Some(peer) = self.local.get(&to).cloned() {
            return Box::pin(async move {
                let connected = loop {
                    let ready = peer.ready.wait();
                    if let Some(connected) = peer.connected.borrow().clone() {
                        break connected;
                    }
                    ready.await;
                };
                if connected
                    .requests
                    .send(LocalDelivery { mails })
                    .await
                    .is_err()
                {
                    return Err(format!("the channel to shard {to} is closed"));
                }
                match connected.answers.recv().await {
                    Some(answer) => answer,
                    None => Err(format!("the channel from shard {to} is closed")),
                }
            });
        }
        let Some((host, port)) = self
            .topology
            .as_ref()
            .and_then(|topology| topology.address_of(to))
            .map(|(host, port)| (host.to_string(), port))
        else {
            return Box::pin(async move { Err(format!("shard {to} is not in the cluster")) });
        };
        Box::pin(async move {
            let connection = self.remote.borrow().get(&to).cloned();
            let connection = match connection {
                Some(connection) => connection,
                None => {
                    let address = format!("{host}:{port}");
                    // Resolved here: glommio's connect panics on a name with no address.
                    // (A blocking lookup, once per connection to another node.)
                    let socket_addr =
                        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                            .map_err(|error| {
                                format!("connecting to shard {to} at {address}: {error}")
                            })?
                            .next()
                            .ok_or_else(|| {
                                format!("connecting to shard {to} at {address}: no address")
                            })?;
                    let stream = glommio::net::TcpStream::connect(socket_addr)
                        .await
                        .map_err(|error| {
                            format!("connecting to shard {to} at {address}: {error}")
                        })?;
                    let _ = stream.set_nodelay(true);
                    let connection = Rc::new(RemoteConnection {
                        stream: RefCell::new(Some(stream)),
                        next_id: std::cell::Cell::new(1),
                    });
                    self.remote.borrow_mut().insert(to, Rc::clone(&connection));
                    connection
                }
            };
            let answer = connection.exchange(from, to, mails).await;
            if answer.is_err() {
                // A broken or confused connection is not used again.
                self.remote.borrow_mut().remove(&to);
            }
            answer
        })
    }
}

/// One TCP connection to a shard of another node.
struct RemoteConnection {
    stream: RefCell<Option<glommio::net::TcpStream>>,
    next_id: std::cell::Cell<u64>,
}

impl RemoteConnection {
    async fn exchange(
        &self,
        from: u16,
        to: u16,
        mails: Vec<(u64, Vec<u8>)>,
    ) -> Result<u64, String> {
        let mut stream = self
            .stream
            .borrow_mut()
            .take()
            .ok_or_else(|| format!("the connection to shard {to} is in use"))?;
        let request_id = self.next_id.get();
        self.next_id.set(request_id + 1);
        let mut encoder = FrameEncoder::default();
        let request = Request::ShardMail {
            from_shard: from,
            to_shard: to,
            mails,
        };
        encoder.push_request(request_id, &request);
        let mut frame = Vec::new();
        encoder.finish_into(&mut frame);
        stream
            .write_all(&frame)
            .await
            .map_err(|error| format!("sending mail to shard {to}: {error}"))?;
        let mut reader = FrameReader::new(MAIL_ANSWER_BYTES_MAX);
        let mut buffer = vec![0u8; 4096];
        let envelopes = loop {
            match reader.next_frame() {
                Ok(Some(envelopes)) => break envelopes,
                Ok(None) => {}
                Err(error) => return Err(format!("the answer of shard {to}: {error}")),
            }
            let read = stream
                .read(&mut buffer)
                .await
                .map_err(|error| format!("reading the answer of shard {to}: {error}"))?;
            if read == 0 {
                return Err(format!("shard {to} closed the connection"));
            }
            reader.push(&buffer[..read]);
        };
        let answer = envelopes
            .into_iter()
            .find(|envelope| envelope.request_id == request_id)
            .ok_or_else(|| format!("shard {to} answered another request"))?;
        let result = match answer.message {
            Message::Response(Response::Done { key, .. }) => Ok(key),
            Message::Response(Response::Error(error)) => Err(format!(
                "shard {to} refused the mail: {}: {}",
                error.code.name(),
                error.message
            )),
            other => Err(format!("shard {to} answered the mail with {other:?}")),
        };
        if reader.buffered() == 0 {
            *self.stream.borrow_mut() = Some(stream);
        }
        result
    }
}

/// A link that hands mail straight to shards of the same executor: for tests and
/// simulations, where every shard runs on one thread. A shard missing from the map (not
/// started, or crashed and not yet back) fails the delivery.
pub struct DirectLink<D: Dir> {
    shards: RefCell<BTreeMap<u16, Rc<Shard<D>>>>,
}

impl<D: Dir> Default for DirectLink<D> {
    fn default() -> Self {
        DirectLink {
            shards: RefCell::default(),
        }
    }
}

impl<D: Dir + 'static> DirectLink<D> {
    /// Makes `shard` reachable (again, after a restart).
    pub fn attach(&self, shard: Rc<Shard<D>>) {
        self.shards.borrow_mut().insert(shard.id(), shard);
    }

    /// Makes shard `id` unreachable (it crashed).
    pub fn detach(&self, id: u16) {
        self.shards.borrow_mut().remove(&id);
    }
}

impl<D: Dir + 'static> Link for DirectLink<D> {
    fn deliver(&self, from: u16, to: u16, mails: Vec<(u64, Vec<u8>)>) -> Delivery<'_> {
        let shard = self.shards.borrow().get(&to).cloned();
        Box::pin(async move {
            let shard = shard.ok_or_else(|| format!("shard {to} is down"))?;
            shard
                .take_mail(from, mails)
                .await
                .map_err(|error: SubmitError| error.to_string())
        })
    }
}
