//! The libp2p shell around the mesh protocol.
//!
//! TCP, then (with a mesh key) a libp2p private-network handshake so peers
//! without the key cannot even start noise, then noise and yamux. On top:
//! gossipsub (signed messages, validated before they are forwarded) for twin
//! records and failures, identify (which also carries the agent's name),
//! and one request-response protocol for anti-entropy sync and job
//! forwarding. What a message *means* is decided in `twinmesh_common`
//! (`gossip`, `wire`); this module only moves bytes.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::upgrade::Version;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Transport, gossipsub, identify, identity, mdns, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use twinmesh_common::wire::MAX_FRAME;

/// Gossip topic for twin records and failure events.
pub const TWIN_TOPIC: &str = "twinmesh/twin/1";
const RPC_PROTOCOL: &str = "/twinmesh/rpc/1";
const AGENT_PREFIX: &str = "twinmesh-agent/";

/// What the agent asks of the mesh.
#[derive(Debug)]
pub enum Command {
    /// Gossip a frame to every peer.
    Publish(Vec<u8>),
    /// Send a request to the agent named `to` and wait for its answer.
    Request {
        /// Agent name.
        to: String,
        /// Frame.
        frame: Vec<u8>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Vec<u8>, String>>,
    },
    /// Answer an inbound request.
    Respond(u64, Vec<u8>),
    /// Dial these addresses (one agent's) unless already connected.
    Dial(Vec<Multiaddr>),
    /// Close the connections to the agent named so (the failure detector
    /// gave it up): after a cut, a fresh dial rejoins at once instead of
    /// waiting for a dead TCP connection's retransmissions.
    Disconnect(String),
    /// Close every connection and stop (a graceful shutdown; publish a
    /// leave first). Answered once the swarm is gone.
    Stop(oneshot::Sender<()>),
}

/// What the mesh tells the agent.
#[derive(Debug)]
pub enum Event {
    /// A gossiped frame.
    Gossip(Vec<u8>),
    /// An inbound request; answer with [`Command::Respond`] and the id.
    Request {
        /// Sender's agent name, if identified.
        from: Option<String>,
        /// Id to answer with.
        id: u64,
        /// Frame.
        frame: Vec<u8>,
    },
    /// A peer agent is connected and identified.
    PeerUp(String),
    /// A peer agent's last connection closed.
    PeerDown(String),
}

/// Mesh settings.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// This agent's name (announced through identify).
    pub agent: String,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and whenever disconnected.
    pub bootstrap: Vec<Multiaddr>,
    /// Private-network key; `None` = open mesh.
    pub key: Option<[u8; 32]>,
    /// Node identity key (persisted by the caller).
    pub identity: identity::Keypair,
    /// Also find peers by mDNS on the local network.
    pub mdns: bool,
}

/// Handle to the running mesh.
pub struct Mesh {
    /// Commands in.
    pub commands: mpsc::Sender<Command>,
    /// Events out.
    pub events: mpsc::Receiver<Event>,
    /// Where it listens (filled once the listeners are up), with
    /// `/p2p/<peer id>` appended so others can dial it by identity.
    pub listening: Vec<Multiaddr>,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
    rpc: request_response::Behaviour<FrameCodec>,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// Length-prefixed byte frames, at most [`MAX_FRAME`].
#[derive(Clone, Default)]
struct FrameCodec;

async fn read_frame<T: futures::AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes exceeds {MAX_FRAME}")));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: futures::AsyncWrite + Unpin + Send>(io: &mut T, data: Vec<u8>) -> io::Result<()> {
    io.write_all(&(data.len() as u32).to_be_bytes()).await?;
    io.write_all(&data).await?;
    io.close().await
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io).await
    }
    async fn read_response<T: futures::AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io).await
    }
    async fn write_request<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, req).await
    }
    async fn write_response<T: futures::AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, res).await
    }
}

/// Gossip message ids from content ([`twinmesh_common::wire::message_id`]):
/// every agent, and any other implementation, derives the same id from the
/// same frame, whoever published or relayed it.
fn content_id(m: &gossipsub::Message) -> gossipsub::MessageId {
    gossipsub::MessageId::new(&twinmesh_common::wire::message_id(&m.data))
}

/// Reads a mesh key: 64 hex digits, alone or in the `swarm.key` format.
pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
    let hex: String = text.lines().map(str::trim).filter(|l| !l.starts_with('/') && !l.is_empty()).collect();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("a mesh key is 64 hexadecimal digits (32 bytes)".into());
    }
    let mut key = [0u8; 32];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(key)
}

/// Why the mesh did not start.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The transport (TCP, private network, noise, yamux, DNS) could not
    /// be set up.
    #[error("mesh transport: {0}")]
    Transport(String),
    /// Gossip, identify or request-response could not be set up.
    #[error("mesh protocols: {0}")]
    Behaviour(String),
    /// Cannot listen on an address.
    #[error("cannot listen on {addr}: {why}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        why: String,
    },
}

/// Starts the mesh on the current tokio runtime.
pub async fn start(cfg: MeshConfig) -> Result<Mesh, MeshError> {
    let psk = cfg.key.map(PreSharedKey::new);
    let agent_version = format!("{AGENT_PREFIX}{}", cfg.agent);
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(cfg.identity.clone())
        .with_tokio()
        .with_other_transport(|key| {
            let base = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
            let maybe_private = match psk {
                Some(psk) => {
                    either::Either::Left(base.and_then(move |socket, _| PnetConfig::new(psk).handshake(socket)))
                }
                None => either::Either::Right(base),
            };
            Ok(maybe_private
                .upgrade(Version::V1Lazy)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default())
                .timeout(Duration::from_secs(10))
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer))))
        })
        .map_err(|e| MeshError::Transport(e.to_string()))?
        .with_dns()
        .map_err(|e| MeshError::Transport(e.to_string()))?
        .with_behaviour(|key| {
            let gcfg = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(200))
                .validation_mode(gossipsub::ValidationMode::Strict)
                .validate_messages()
                .max_transmit_size(MAX_FRAME)
                .message_id_fn(content_id)
                .mesh_n_low(1)
                .mesh_outbound_min(0)
                .build()
                .map_err(|e| io::Error::other(e.to_string()))?;
            let mut gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gcfg)
                .map_err(io::Error::other)?;
            // Peer scoring stays on, but without the IP-colocation
            // penalty: membership is already gated by the mesh key, and
            // many agents legitimately share an address (one host running
            // several pools, k3d on one Docker network, this test rig).
            // With it, more than ten agents on one IP graylist each other.
            let score = gossipsub::PeerScoreParams { ip_colocation_factor_weight: 0.0, ..Default::default() };
            gossipsub.with_peer_score(score, gossipsub::PeerScoreThresholds::default()).map_err(io::Error::other)?;
            let identify = identify::Behaviour::new(
                identify::Config::new("/twinmesh/id/1".into(), key.public()).with_agent_version(agent_version.clone()),
            );
            // The transport's cap on a request, well above the callers'
            // own timeouts (probes 0.6 s, forwards ≤ 5 s): a request whose
            // caller gave up still reaches a peer that was only slow (a
            // paused or throttled agent), so a late forward is planned
            // there and settled (`common::reconcile`) rather than lost in
            // a reset stream.
            let rpc = request_response::Behaviour::new(
                [(StreamProtocol::new(RPC_PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            );
            let mdns = if cfg.mdns {
                Some(
                    mdns::tokio::Behaviour::new(mdns::Config::default(), key.public().to_peer_id())
                        .map_err(io::Error::other)?,
                )
            } else {
                None
            };
            Ok(Behaviour { gossipsub, identify, rpc, mdns: Toggle::from(mdns) })
        })
        .map_err(|e| MeshError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    let topic = gossipsub::IdentTopic::new(TWIN_TOPIC);
    swarm.behaviour_mut().gossipsub.subscribe(&topic).map_err(|e| MeshError::Behaviour(e.to_string()))?;
    for a in &cfg.listen {
        swarm.listen_on(a.clone()).map_err(|e| MeshError::Listen { addr: a.clone(), why: e.to_string() })?;
    }
    // Wait for the listeners so callers can print real addresses.
    let mut listening = Vec::new();
    while listening.len() < cfg.listen.len() {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            listening.push(address);
        }
    }
    for b in resolve(&cfg.bootstrap).await {
        if let Err(e) = swarm.dial(b.clone()) {
            warn!(addr = %b, error = %e, "dial failed");
        }
    }
    let me = *swarm.local_peer_id();
    let listening = listening.into_iter().map(|a| a.with(libp2p::multiaddr::Protocol::P2p(me))).collect();
    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let (ev_tx, ev_rx) = mpsc::channel(4096);
    tokio::spawn(run(swarm, topic, cfg.bootstrap.clone(), cmd_rx, ev_tx));
    Ok(Mesh { commands: cmd_tx, events: ev_rx, listening })
}

async fn run(
    mut swarm: libp2p::Swarm<Behaviour>,
    topic: gossipsub::IdentTopic,
    bootstrap: Vec<Multiaddr>,
    mut cmds: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
) {
    let mut names: HashMap<PeerId, String> = HashMap::new();
    let mut peers_by_name: HashMap<String, PeerId> = HashMap::new();
    let mut pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Vec<u8>, String>>> = HashMap::new();
    let mut inbound: HashMap<u64, ResponseChannel<Vec<u8>>> = HashMap::new();
    let mut next_inbound = 0u64;
    let mut redial = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { return };
                match cmd {
                    Command::Publish(frame) => {
                        match swarm.behaviour_mut().gossipsub.publish(topic.clone(), frame) {
                            // Alone (at start, or cut off): anti-entropy
                            // catches peers up when they arrive.
                            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
                            Err(e) => warn!(error = %e, "publish failed"),
                            Ok(_) => {}
                        }
                    }
                    Command::Request { to, frame, reply } => match peers_by_name.get(&to) {
                        Some(peer) => {
                            let id = swarm.behaviour_mut().rpc.send_request(peer, frame);
                            pending.insert(id, reply);
                        }
                        None => {
                            let _ = reply.send(Err(format!("agent '{to}' is not connected")));
                        }
                    },
                    Command::Respond(id, frame) => {
                        if let Some(ch) = inbound.remove(&id) {
                            let _ = swarm.behaviour_mut().rpc.send_response(ch, frame);
                        }
                    }
                    Command::Dial(addrs) => {
                        for a in addrs {
                            if let Err(e) = swarm.dial(a.clone()) {
                                debug!(addr = %a, error = %e, "dial");
                            }
                        }
                    }
                    Command::Disconnect(name) => {
                        if let Some(peer) = peers_by_name.get(&name) {
                            let _ = swarm.disconnect_peer_id(*peer);
                        }
                    }
                    Command::Stop(done) => {
                        let peers: Vec<PeerId> = swarm.connected_peers().copied().collect();
                        for p in peers {
                            let _ = swarm.disconnect_peer_id(p);
                        }
                        drop(swarm);
                        let _ = done.send(());
                        return;
                    }
                }
            }
            _ = redial.tick() => {
                if swarm.connected_peers().next().is_none() {
                    // Re-resolve: a headless Service's endpoints change.
                    for b in resolve(&bootstrap).await {
                        let _ = swarm.dial(b);
                    }
                }
            }
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message })) => {
                    // Validate before forwarding: only well-formed frames
                    // travel on; the agent decides what they mean.
                    let ok = twinmesh_common::wire::decode(&message.data).is_ok();
                    let acceptance = if ok { gossipsub::MessageAcceptance::Accept } else { gossipsub::MessageAcceptance::Reject };
                    let _ = swarm.behaviour_mut().gossipsub.report_message_validation_result(&message_id, &propagation_source, acceptance);
                    let _ = events.send(Event::Gossip(message.data)).await;
                }
                SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                    if let Some(name) = info.agent_version.strip_prefix(AGENT_PREFIX) {
                        let name = name.to_string();
                        swarm.behaviour_mut().gossipsub.add_explicit_peer(&peer_id);
                        if names.insert(peer_id, name.clone()).is_none() {
                            peers_by_name.insert(name.clone(), peer_id);
                            info!(peer = %peer_id, agent = %name, "peer up");
                            let _ = events.send(Event::PeerUp(name)).await;
                        }
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::Message { peer, message, .. })) => match message {
                    request_response::Message::Request { request, channel, .. } => {
                        next_inbound += 1;
                        inbound.insert(next_inbound, channel);
                        let _ = events.send(Event::Request { from: names.get(&peer).cloned(), id: next_inbound, frame: request }).await;
                    }
                    request_response::Message::Response { request_id, response } => {
                        if let Some(tx) = pending.remove(&request_id) {
                            let _ = tx.send(Ok(response));
                        }
                    }
                },
                SwarmEvent::Behaviour(BehaviourEvent::Rpc(request_response::Event::OutboundFailure { request_id, error, .. })) => {
                    if let Some(tx) = pending.remove(&request_id) {
                        let _ = tx.send(Err(error.to_string()));
                    }
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    if let Some(name) = names.remove(&peer_id) {
                        peers_by_name.remove(&name);
                        info!(peer = %peer_id, agent = %name, "peer down");
                        let _ = events.send(Event::PeerDown(name)).await;
                    }
                }
                SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                    for (peer, addr) in found {
                        if !swarm.is_connected(&peer) {
                            let _ = swarm.dial(addr);
                        }
                    }
                }
                SwarmEvent::IncomingConnectionError { error, .. } => {
                    debug!(error = %error, "incoming connection refused");
                }
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    debug!(error = %error, "outgoing connection failed");
                }
                _ => {}
            }
        }
    }
}

/// Expands `/dns*/<name>/tcp/<port>` bootstrap entries into one address
/// per resolved IP (a headless Service's DNS name resolves to every peer);
/// other addresses pass through. A name that does not resolve is logged
/// and skipped.
pub async fn resolve(addrs: &[Multiaddr]) -> Vec<Multiaddr> {
    let mut out = Vec::new();
    for a in addrs {
        let mut it = a.iter();
        let (host, port) = match (it.next(), it.next()) {
            (Some(Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h)), Some(Protocol::Tcp(p))) => {
                (h.to_string(), p)
            }
            _ => {
                out.push(a.clone());
                continue;
            }
        };
        match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(ips) => {
                for sa in ips {
                    let ip = match sa.ip() {
                        std::net::IpAddr::V4(v) => Protocol::Ip4(v),
                        std::net::IpAddr::V6(v) => Protocol::Ip6(v),
                    };
                    out.push(Multiaddr::empty().with(ip).with(Protocol::Tcp(port)));
                }
            }
            Err(e) => warn!(host = %host, error = %e, "bootstrap name does not resolve"),
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dns_bootstrap_expands_to_every_address() {
        let addrs: Vec<Multiaddr> =
            vec!["/dns4/localhost/tcp/7401".parse().unwrap(), "/ip4/10.1.2.3/tcp/9".parse().unwrap()];
        let out = resolve(&addrs).await;
        assert!(out.contains(&"/ip4/127.0.0.1/tcp/7401".parse().unwrap()), "{out:?}");
        assert!(out.contains(&"/ip4/10.1.2.3/tcp/9".parse().unwrap()));
        assert!(out.iter().all(|a| !a.to_string().starts_with("/dns")));
        let none = resolve(&["/dns4/no-such-host.invalid/tcp/1".parse().unwrap()]).await;
        assert!(none.is_empty());
    }

    #[test]
    fn message_ids_depend_on_the_frame_alone() {
        let frame = twinmesh_common::wire::encode(&twinmesh_common::wire::Message::Ping(42));
        let topic = gossipsub::IdentTopic::new(TWIN_TOPIC).hash();
        // The same frame as two agents see it: published by different
        // peers with different sequence numbers.
        let from = |seq: u64| gossipsub::Message {
            source: Some(PeerId::random()),
            data: frame.clone(),
            sequence_number: Some(seq),
            topic: topic.clone(),
        };
        let (a, b) = (content_id(&from(1)), content_id(&from(99)));
        assert_eq!(a, b);
        assert_eq!(a.0, twinmesh_common::wire::message_id(&frame).to_vec());
        let other = gossipsub::Message {
            data: twinmesh_common::wire::encode(&twinmesh_common::wire::Message::Ping(43)),
            ..from(1)
        };
        assert_ne!(content_id(&other), a);
    }

    #[test]
    fn keys_parse_in_both_formats() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let k = parse_key(hex).unwrap();
        assert_eq!(k[1], 0x11);
        assert_eq!(parse_key(&format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\n")).unwrap(), k);
        assert!(parse_key("abc").unwrap_err().contains("64 hexadecimal"));
    }
}
