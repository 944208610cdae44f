//! `twinmesh agent` — run the daemon: mesh, store, API, telemetry and the
//! virtual actuator.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use libp2p::{Multiaddr, identity};
use tracing::{info, warn};
use twinmesh_common::fabric::{self, Fabric};
use twinmesh_common::model::{Arch, Format, FormatSet, Hardware, Node, NodeStatus, Resources, Telemetry};
use twinmesh_common::policy::Policy;

use crate::kube::{Kube, KubeSettings};
use crate::mesh::{self, MeshConfig};
use crate::node::{Agent, AgentConfig};
use crate::store::Store;

/// Arguments of `twinmesh agent`. `--config FILE` (or `TWINMESH_CONFIG`)
/// reads any of them from a YAML file (see `cli::config`).
#[derive(Debug, Args, Clone)]
pub struct AgentArgs {
    /// YAML file of flags: long names as keys (`node: edge-srv-01`,
    /// `own-cluster: true`, `bootstrap: [ADDR, ADDR]`). Flags on the
    /// command line win over it, and it wins over TWINMESH_* variables.
    // Read before parsing (`cli::config::expand` puts its entries on the
    // command line); here so that --help lists it.
    #[arg(long, env = "TWINMESH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This agent's node name (the Kubernetes node name).
    #[arg(long, env = "TWINMESH_NODE", default_value = "local-01")]
    pub node: String,
    /// Its cluster (pool).
    #[arg(long, env = "TWINMESH_CLUSTER", default_value = "edge-microdc")]
    pub cluster: String,
    /// Also own (publish and execute for) every fabric node of the cluster,
    /// as in the embedded demo fabric.
    #[arg(long, env = "TWINMESH_OWN_CLUSTER")]
    pub own_cluster: bool,
    /// HTTP API address.
    #[arg(long, env = "TWINMESH_API", default_value = "127.0.0.1:7400")]
    pub api: SocketAddr,
    /// Mesh listen address (multiaddr).
    #[arg(long, env = "TWINMESH_LISTEN", default_value = "/ip4/127.0.0.1/tcp/7401")]
    pub listen: Multiaddr,
    /// Peers to dial (multiaddrs), comma-separated.
    #[arg(long, env = "TWINMESH_BOOTSTRAP", value_delimiter = ',')]
    pub bootstrap: Vec<Multiaddr>,
    /// Where redb and the node identity live.
    #[arg(long, env = "TWINMESH_DATA_DIR", default_value = "./twinmesh-data")]
    pub data_dir: PathBuf,
    /// Fabric document; the reference fabric when absent.
    #[arg(long, env = "TWINMESH_FABRIC")]
    pub fabric: Option<PathBuf>,
    /// Use a synthetic fabric of this many nodes (seed 42) instead.
    #[arg(long, env = "TWINMESH_SYNTHETIC_FABRIC", conflicts_with = "fabric")]
    pub synthetic_fabric: Option<usize>,
    /// File with the 64-hex-digit mesh key; peers without it cannot join.
    #[arg(long, env = "TWINMESH_MESH_KEY_FILE")]
    pub mesh_key_file: Option<PathBuf>,
    /// File with the API bearer token.
    #[arg(long, env = "TWINMESH_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// Telemetry period in seconds.
    #[arg(long, env = "TWINMESH_TELEMETRY_INTERVAL", default_value_t = 5.0)]
    pub telemetry_interval: f64,
    /// Anti-entropy period in seconds.
    #[arg(long, env = "TWINMESH_SYNC_INTERVAL", default_value_t = 10.0)]
    pub sync_interval: f64,
    /// Default placement policy.
    #[arg(long, env = "TWINMESH_POLICY", default_value = "cvar")]
    pub policy: Policy,
    /// Wall seconds per fabric second in the virtual actuator.
    #[arg(long, env = "TWINMESH_TIME_SCALE", default_value_t = 0.01)]
    pub time_scale: f64,
    /// Take the node's architecture and formats from the fabric file
    /// instead of this machine (for agents that stand for simulated pools,
    /// as in the demo).
    #[arg(long, env = "TWINMESH_VIRTUAL_HARDWARE")]
    pub virtual_hardware: bool,
    /// Advertise the Wasm format (a Wasm runtime is installed).
    #[arg(long, env = "TWINMESH_WASM")]
    pub wasm: bool,
    /// Also discover peers by mDNS on the local network.
    #[arg(long, env = "TWINMESH_MDNS")]
    pub mdns: bool,
    /// Where stages run: `virtual` (the embedded fabric) or `kube` (pods
    /// on the planned nodes of the Kubernetes clusters).
    #[arg(long, env = "TWINMESH_ACTUATOR", value_enum, default_value_t = ActuatorKind::Virtual)]
    pub actuator: ActuatorKind,
    /// Kubeconfig with one context per cluster (`--kube-context-prefix`
    /// + cluster name), e.g. mounted from the `twinmesh-kubeconfig` Secret.
    #[arg(long, env = "TWINMESH_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Context name prefix: cluster `dc-core` is context `k3d-dc-core`.
    #[arg(long, env = "TWINMESH_KUBE_CONTEXT_PREFIX", default_value = "k3d-")]
    pub kube_context_prefix: String,
    /// Reach this agent's own cluster with the pod's service account
    /// (default: when running in a pod).
    #[arg(long, env = "TWINMESH_KUBE_IN_CLUSTER")]
    pub kube_in_cluster: Option<bool>,
    /// Namespace of stage pods.
    #[arg(long, env = "TWINMESH_KUBE_NAMESPACE", default_value = "twinmesh-jobs")]
    pub kube_namespace: String,
    /// Image of stage pods (it must contain the `twinmesh` binary as its
    /// entrypoint).
    #[arg(long, env = "TWINMESH_KUBE_IMAGE", default_value = "twinmesh:dev")]
    pub kube_image: String,
    /// Keep stage pods after their result is recorded.
    #[arg(long, env = "TWINMESH_KUBE_KEEP_PODS")]
    pub kube_keep_pods: bool,
    /// Finished jobs kept (records, plans, observations); the oldest are
    /// forgotten beyond this. Calibration keeps what it learned.
    #[arg(long, env = "TWINMESH_KEEP_FINISHED", default_value_t = 2_000)]
    pub keep_finished: usize,
    /// Jobs accepted here and not yet finished at most; beyond, a
    /// submission is refused with 503 (retry later) — back-pressure
    /// instead of a backlog that grows memory without bound.
    #[arg(long, env = "TWINMESH_MAX_IN_FLIGHT", default_value_t = 2_000)]
    pub max_in_flight: usize,
    /// Seconds a finished job is kept after it was accepted.
    #[arg(long, env = "TWINMESH_KEEP_FINISHED_FOR", default_value_t = 86_400.0)]
    pub keep_finished_for: f64,
    /// Seconds a running stage's node may have its agent unreachable
    /// (suspect or dead: a partition, a crash) before the stage fails over
    /// to a reachable node; the run may still finish over there too, and
    /// the job says so.
    #[arg(long, env = "TWINMESH_FAILOVER_GRACE", default_value_t = 10.0)]
    pub failover_grace: f64,
    /// Seconds a stage pod may stay unschedulable (cordoned or tainted
    /// node, no room) before the stage moves to another node.
    #[arg(long, env = "TWINMESH_KUBE_UNSCHEDULABLE_GRACE", default_value_t = 20.0)]
    pub kube_unschedulable_grace: f64,
    /// Virtual fabric: the nodes this agent owns fail by themselves, as
    /// often as their resiliency says, and a failure that takes a node down
    /// is announced by a thermal throttle first (--precursor-prob,
    /// --precursor-lead); throttling and network trouble also come with
    /// nothing after them (false alarms). A ground truth for the forecast.
    #[arg(long, env = "TWINMESH_CHAOS")]
    pub chaos: bool,
    /// With --chaos: mean fabric seconds between failures of a node of
    /// resiliency 0.5 (the rate scales with 1 − resiliency).
    #[arg(long, env = "TWINMESH_CHAOS_MTBF", default_value_t = 600.0)]
    pub chaos_mtbf: f64,
    /// With --chaos: share of failures that take a node down announced by
    /// a precursor.
    #[arg(long, env = "TWINMESH_PRECURSOR_PROB", default_value_t = 0.7)]
    pub precursor_prob: f64,
    /// With --chaos: fabric seconds between a precursor and the failure it
    /// announces.
    #[arg(long, env = "TWINMESH_PRECURSOR_LEAD", default_value_t = 10.0)]
    pub precursor_lead: f64,
}

/// Where an agent runs stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ActuatorKind {
    /// The embedded virtual fabric.
    Virtual,
    /// Pods on Kubernetes.
    Kube,
}

impl AgentArgs {
    /// The settings a user gets for node `node` of `cluster`: every other
    /// field at its documented default (environment variables ignored).
    /// The demo and the benchmarks start from here and change what they
    /// need, so a new flag reaches them with its default.
    pub fn new(node: &str, cluster: &str) -> AgentArgs {
        use clap::{Args as _, FromArgMatches as _};
        let cmd = AgentArgs::augment_args(clap::Command::new("twinmesh-agent"))
            .mut_args(|a| a.env(clap::builder::Resettable::<clap::builder::OsStr>::Reset));
        let m = cmd
            .try_get_matches_from(["twinmesh-agent", "--node", node, "--cluster", cluster])
            .expect("the defaults parse");
        AgentArgs::from_arg_matches(&m).expect("the defaults parse")
    }
}

/// A started agent, and the handles to stop it.
pub struct Running {
    /// The agent.
    pub agent: Arc<Agent>,
    /// Where the API listens.
    pub api: SocketAddr,
    /// Where the mesh listens.
    pub mesh: Vec<Multiaddr>,
    stop: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops gracefully: the API takes no new connection and finishes the
    /// requests in flight (an accepted job is durable before it is
    /// answered), the agent leaves the mesh (peers mark it dead at once),
    /// queued twin changes are made durable, background tasks end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(10), self.server).await.is_err() {
            warn!("API requests still in flight after 10 s; stopping anyway");
        }
        self.agent.leave().await;
        for t in self.tasks {
            t.abort();
        }
        info!(agent = %self.agent.cfg.name, "stopped");
    }
}

/// The architecture this binary runs as (under QEMU user-mode emulation,
/// the emulated one: that is what it really executes).
pub fn host_arch() -> Arch {
    match std::env::consts::ARCH {
        "aarch64" => Arch::Arm64,
        "riscv64" => Arch::Riscv64,
        _ => Arch::Amd64,
    }
}

/// Formats this machine can execute: native, QEMU for every other
/// architecture whose user-mode emulator is registered with binfmt_misc or
/// on the PATH, and Wasm when asked.
pub fn host_formats(host: Arch, wasm: bool) -> FormatSet {
    let mut s = FormatSet::of(&[Format::Native]);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = |bin: &str| std::env::split_paths(&path).any(|d| d.join(bin).is_file());
    for a in Arch::ALL.into_iter().filter(|a| *a != host) {
        let q = match a {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
            Arch::Riscv64 => "riscv64",
        };
        let binfmt = std::path::Path::new("/proc/sys/fs/binfmt_misc").join(format!("qemu-{q}")).exists();
        if binfmt || on_path(&format!("qemu-{q}-static")) || on_path(&format!("qemu-{q}")) {
            s = s.with(a.qemu_format());
        }
    }
    if wasm {
        s = s.with(Format::Wasm);
    }
    s
}

fn own_nodes(args: &AgentArgs, fabric: &Fabric) -> Vec<Node> {
    let mut owned: Vec<Node> = Vec::new();
    match fabric.nodes.iter().find(|n| n.name == args.node) {
        Some(n) => {
            let mut n = n.clone();
            if !args.virtual_hardware {
                // Report what this agent really runs as.
                n.hardware.arch = host_arch();
                n.runtimes = host_formats(n.hardware.arch, args.wasm);
                n.labels.insert("kubernetes.io/arch".into(), n.hardware.arch.as_str().into());
            }
            owned.push(n);
        }
        None => {
            // A machine outside the fabric file: describe it from sysinfo.
            let mut sys = sysinfo::System::new().ok();
            let (cores, mem_gb) = sys.as_mut().map_or((1, 1.0), |s| {
                s.refresh_memory();
                (std::thread::available_parallelism().map_or(1, |n| n.get() as u32), s.total_memory() as f64 / 1e9)
            });
            let arch = host_arch();
            owned.push(Node {
                name: args.node.clone(),
                cluster: args.cluster.clone(),
                hardware: Hardware {
                    arch,
                    cores,
                    ghz: 2.5,
                    speed: 1.0,
                    mem_gb,
                    gpu_vram_gb: 0.0,
                    tdp_w: 15.0 * f64::from(cores),
                },
                runtimes: host_formats(arch, args.wasm),
                labels: [
                    ("dt.cluster.name".to_string(), args.cluster.clone()),
                    ("kubernetes.io/arch".to_string(), arch.as_str().to_string()),
                ]
                .into_iter()
                .collect(),
                allocatable: Resources { cpu: f64::from(cores), mem_gb, gpu_vram_gb: 0.0 },
                allocated: Resources::default(),
                telemetry: Telemetry::default(),
                status: NodeStatus::Ready,
                resiliency: fabric
                    .clusters
                    .iter()
                    .find(|c| c.name == args.cluster)
                    .map_or(twinmesh_common::resiliency::DEFAULT_RESILIENCY, |c| c.baseline_resiliency),
                jitter_sigma: None,
                backlog_ms: None,
                calibration: Default::default(),
            });
        }
    }
    if args.own_cluster {
        for n in fabric.nodes.iter().filter(|n| n.cluster == args.cluster && n.name != args.node) {
            owned.push(n.clone());
        }
    }
    owned
}

/// The IP address and TCP port of a listen address (`/ip4/…/tcp/…` or
/// `/ip6/…/tcp/…`); `None` for other kinds (DNS names, …).
fn tcp_socket_addr(a: &Multiaddr) -> Option<SocketAddr> {
    use libp2p::multiaddr::Protocol;
    let mut it = a.iter();
    let ip: std::net::IpAddr = match it.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    match it.next()? {
        Protocol::Tcp(port) => Some(SocketAddr::new(ip, port)),
        _ => None,
    }
}

fn load_identity(dir: &std::path::Path) -> anyhow::Result<identity::Keypair> {
    let path = dir.join("identity.key");
    if let Ok(bytes) = std::fs::read(&path) {
        return identity::Keypair::from_protobuf_encoding(&bytes)
            .with_context(|| format!("{} is not a node identity; delete it to make a new one", path.display()));
    }
    let k = identity::Keypair::generate_ed25519();
    std::fs::write(&path, k.to_protobuf_encoding().context("encoding identity")?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(k)
}

/// Starts an agent on the current runtime and returns once its API and mesh
/// listen.
pub async fn start(args: AgentArgs) -> anyhow::Result<Running> {
    let fabric = match &args.fabric {
        None if args.synthetic_fabric.is_some() => fabric::synthetic(args.synthetic_fabric.unwrap_or(0), 42),
        Some(p) => Fabric::from_yaml(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read fabric {}", p.display()))?,
        )
        .with_context(|| format!("invalid fabric {}", p.display()))?,
        None => fabric::reference(),
    };
    if fabric.latency.index_of(&args.cluster).is_none() {
        bail!("cluster '{}' is not in the fabric (clusters: {})", args.cluster, fabric.latency.names().join(", "));
    }
    let key = match &args.mesh_key_file {
        Some(p) => Some(
            mesh::parse_key(
                &std::fs::read_to_string(p).with_context(|| format!("cannot read mesh key {}", p.display()))?,
            )
            .map_err(|e| anyhow::anyhow!("mesh key {}: {e}", p.display()))?,
        ),
        None => {
            warn!("no mesh key: any peer that can reach the mesh port can join");
            None
        }
    };
    let token = match &args.api_token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read API token {}", p.display()))?
                .trim()
                .to_string();
            if t.is_empty() {
                bail!("API token file {} is empty: every request would be refused; put the token in it", p.display());
            }
            if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
                bail!("API token file {}: the token must be one word (no spaces or control characters)", p.display());
            }
            Some(t)
        }
        None => {
            warn!("no API token: anyone who can reach the API port can submit jobs");
            None
        }
    };
    // A port another process holds fails here, before anything starts,
    // naming the port and the process.
    super::port::check_free("API", args.api, "--api")?;
    if let Some(addr) = tcp_socket_addr(&args.listen).filter(|a| a.port() != 0) {
        super::port::check_free("mesh", addr, "--listen")?;
    }
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let store = Store::open(&args.data_dir)?;
    let identity = load_identity(&args.data_dir)?;
    let mut m = mesh::start(MeshConfig {
        agent: args.node.clone(),
        listen: vec![args.listen.clone()],
        bootstrap: args.bootstrap.clone(),
        key,
        identity,
        mdns: args.mdns,
    })
    .await
    .context("starting the mesh")?;
    let cfg = AgentConfig {
        name: args.node.clone(),
        cluster: args.cluster.clone(),
        owned: own_nodes(&args, &fabric),
        fabric,
        time_scale: args.time_scale,
        policy: args.policy,
        sync_interval: Duration::from_secs_f64(args.sync_interval.max(0.1)),
        mesh_addrs: m.listening.iter().map(ToString::to_string).collect(),
        lifecycle: twinmesh_common::lifecycle::Config {
            failover_grace_ms: args.failover_grace.max(0.0) * 1000.0,
            ..Default::default()
        },
        retention: crate::node::Retention {
            max_finished: args.keep_finished,
            max_age: Duration::from_secs_f64(args.keep_finished_for.max(0.0)),
            max_in_flight: args.max_in_flight.max(1),
        },
    };
    let agent = Agent::new(cfg, store, m.commands.clone())?;
    let kube = match args.actuator {
        ActuatorKind::Virtual => None,
        ActuatorKind::Kube => {
            // One TLS provider, chosen here, before any client exists.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let settings = KubeSettings {
                kubeconfig: args.kubeconfig.clone(),
                context_prefix: args.kube_context_prefix.clone(),
                in_cluster: args
                    .kube_in_cluster
                    .unwrap_or_else(|| std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()),
                namespace: args.kube_namespace.clone(),
                image: args.kube_image.clone(),
                delete_finished: !args.kube_keep_pods,
                unschedulable_grace: Duration::from_secs_f64(args.kube_unschedulable_grace.max(0.1)),
            };
            let k = Arc::new(
                Kube::connect(settings, &args.cluster, agent.cfg.fabric.latency.names())
                    .await
                    .context("connecting to Kubernetes")?,
            );
            agent.set_actuator(Arc::new(crate::kube::run::KubeActuator { kube: k.clone() }));
            Some(k)
        }
    };
    agent.publish_own(true, |_| {}).await;
    agent.resume_services();
    if kube.is_none() {
        agent.probe_own_speed().await;
    }
    if let Some(k) = &kube
        && k.clusters().any(|c| c == &args.cluster)
    {
        agent.wait_for(format!("waiting for Node {} from the API server of {}", args.node, args.cluster));
        tokio::spawn(crate::kube::node::watch_own(agent.clone(), k.clone()));
    }
    let listener = tokio::net::TcpListener::bind(args.api).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => super::port::in_use("API", args.api, "--api"),
        _ => anyhow::Error::new(e).context(format!("cannot listen on {}", args.api)),
    })?;
    let api = listener.local_addr()?;
    let router = crate::api::router(agent.clone(), token);
    let (stop, mut stopping) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        let drain = async move {
            let _ = stopping.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(drain).await {
            warn!(error = %e, "API server stopped");
        }
    });
    let mut tasks = Vec::new();
    let virtual_fabric = kube.is_none();
    // Mesh events.
    let a = agent.clone();
    let mut events = std::mem::replace(&mut m.events, tokio::sync::mpsc::channel(1).1);
    tasks.push(tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            a.on_mesh_event(ev).await;
        }
    }));
    // The protocol: liveness probes, anti-entropy, dialling, answers.
    tasks.extend(agent.start_protocol(Duration::from_millis(250)));
    // Telemetry.
    let a = agent.clone();
    let period = Duration::from_secs_f64(args.telemetry_interval.max(0.1));
    let primary = args.node.clone();
    tasks.push(tokio::spawn(async move {
        let mut sampler = crate::telemetry::Sampler::default();
        let mut t = tokio::time::interval(period);
        t.tick().await;
        loop {
            t.tick().await;
            crate::memory::trim();
            let mut sample = sampler.sample();
            if let Some(k) = &kube
                && let Some(used) = k.node_metrics(&a.cfg.cluster, &primary).await
            {
                // Real capacity: the twin's allocatable over the scaling ratio.
                let ratio = twinmesh_common::scaling::Scaler::default().ratio;
                let own = a.cfg.owned.iter().find(|n| n.name == primary);
                let cap = a
                    .twin()
                    .record(&primary)
                    .map(|r| r.node.allocatable)
                    .or(own.map(|n| n.allocatable))
                    .map_or((0.0, 0.0), |r| (r.cpu / ratio, r.mem_gb / ratio * 1e9));
                sample = crate::kube::node::metrics_telemetry(sample, used, cap);
            }
            a.publish_own(false, |n| {
                if n.name == primary {
                    n.telemetry = sample;
                }
            })
            .await;
        }
    }));
    if args.chaos {
        if virtual_fabric {
            let cfg = twinmesh_common::failures::FailureConfig {
                mtbf_at_half_ms: args.chaos_mtbf.max(1.0) * 1000.0,
                precursor_prob: args.precursor_prob.clamp(0.0, 1.0),
                precursor_lead_ms: (args.precursor_lead.max(0.0) * 1000.0) as u64,
                ..twinmesh_common::failures::FailureConfig::default()
            };
            tasks.push(tokio::spawn(agent.clone().run_chaos(cfg)));
        } else {
            warn!("--chaos applies to the virtual fabric only; on Kubernetes inject failures with POST /v1/inject");
        }
    }
    // Resume what a restart interrupted.
    for id in agent.unfinished_jobs() {
        info!(job = %id, "resuming job");
        agent.spawn_job(id);
    }
    info!(agent = %args.node, api = %api, mesh = ?m.listening, "agent started");
    Ok(Running { agent, api, mesh: m.listening, stop, server, tasks })
}

/// Starts an agent, serves until `shutdown` completes, then stops it
/// gracefully ([`Running::shutdown`]).
pub async fn run(args: AgentArgs, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let r = start(args).await?;
    // One line each, for scripts and tests that start agents; a reader
    // that closed stdout after the line it wanted must not stop the agent
    // (println! would panic on the broken pipe).
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "api http://{}", r.api);
        for a in &r.mesh {
            let _ = writeln!(out, "mesh {a}");
        }
        let _ = out.flush();
    }
    shutdown.await;
    info!("shutting down");
    r.shutdown().await;
    Ok(())
}

/// Completes on SIGTERM (what Kubernetes sends a pod) or SIGINT (Ctrl-C).
pub async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
