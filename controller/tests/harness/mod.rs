//! Real controller voters on loopback for the tests: each has its own directory and its own
//! tonic server on a port picked by the OS, and can be stopped and restarted from its
//! directory at the same address. Everything lives in one temporary directory that goes
//! with the cluster.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyralog_controller::{ClusterState, Controller, ControllerConfig};
use pyralog_types::NodeId;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

/// Test timings: fast elections and a one-second lease.
pub(crate) fn tune(config: &mut ControllerConfig) {
    config.raft_heartbeat = Duration::from_millis(50);
    config.election_timeout_min = Duration::from_millis(250);
    config.election_timeout_max = Duration::from_millis(500);
    config.node_heartbeat = Duration::from_millis(100);
    config.node_lease = Duration::from_secs(1);
    config.write_timeout = Duration::from_secs(5);
}

pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

struct Server {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<Result<(), tonic::transport::Error>>,
}

pub(crate) struct TestNode {
    pub(crate) controller: Arc<Controller>,
    server: Option<Server>,
}

pub(crate) struct Cluster {
    _tmp: TempDir,
    root: PathBuf,
    pub(crate) voters: BTreeMap<NodeId, String>,
    /// Every member's address: the voters, then the learners (broker-only nodes).
    pub(crate) addresses: BTreeMap<NodeId, String>,
    nodes: BTreeMap<NodeId, TestNode>,
    snapshot_every: u64,
}

async fn bind(address: &str) -> TcpListener {
    // The port of a stopped node can take a moment to be free again.
    for _ in 0..50 {
        match TcpListener::bind(address).await {
            Ok(l) => return l,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("cannot bind {address}");
}

impl Cluster {
    /// Starts `n` voters with ids 1..=n.
    pub(crate) async fn start(n: u64, snapshot_every: u64) -> Cluster {
        Self::start_with_learners(n, 0, snapshot_every).await
    }

    /// Starts `n` voters with ids 1..=n and `learners` broker-only nodes after them.
    pub(crate) async fn start_with_learners(n: u64, learners: u64, snapshot_every: u64) -> Cluster {
        init_tracing();
        let tmp = TempDir::new().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let mut listeners = BTreeMap::new();
        let mut addresses = BTreeMap::new();
        for id in 1..=n + learners {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            addresses.insert(id, l.local_addr().expect("addr").to_string());
            listeners.insert(id, l);
        }
        let voters = addresses
            .iter()
            .filter(|(id, _)| **id <= n)
            .map(|(id, a)| (*id, a.clone()))
            .collect();
        let mut cluster = Cluster {
            _tmp: tmp,
            root,
            voters,
            addresses,
            nodes: BTreeMap::new(),
            snapshot_every,
        };
        for (id, l) in listeners {
            cluster.launch(id, l).await;
        }
        cluster
    }

    pub(crate) fn config(&self, id: NodeId) -> ControllerConfig {
        let mut config = ControllerConfig::new(
            id,
            self.addresses[&id].clone(),
            self.root.join(format!("node-{id}")).join("controller"),
            self.voters.clone(),
        );
        if !self.voters.contains_key(&id) {
            config.roles.controller = false;
            config.cluster_address = Some(self.addresses[&id].clone());
        }
        tune(&mut config);
        config.snapshot_every = self.snapshot_every;
        config
    }

    async fn launch(&mut self, id: NodeId, listener: TcpListener) {
        let controller = Controller::start(self.config(id))
            .await
            .expect("start controller");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(controller.raft_service())
            .add_service(controller.controller_service())
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                let _ = stopped.await;
            });
        let handle = tokio::spawn(server);
        self.nodes.insert(
            id,
            TestNode {
                controller,
                server: Some(Server { stop, handle }),
            },
        );
    }

    pub(crate) fn controller(&self, id: NodeId) -> &Arc<Controller> {
        &self.nodes[&id].controller
    }

    pub(crate) fn running(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.server.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Stops a voter: its controller, then its server (as if the process died).
    pub(crate) async fn stop(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("node");
        node.controller.shutdown().await;
        if let Some(server) = node.server.take() {
            let _ = server.stop.send(());
            server.handle.abort();
            let _ = server.handle.await;
        }
    }

    /// Starts a stopped member again from its directory, at its address.
    pub(crate) async fn restart(&mut self, id: NodeId) {
        let address = self.addresses[&id].clone();
        let listener = bind(&address).await;
        self.launch(id, listener).await;
    }

    pub(crate) async fn stop_all(&mut self) {
        for id in self.running() {
            self.stop(id).await;
        }
    }

    /// Waits until every running voter knows the same leader, which is one of them.
    pub(crate) async fn wait_leader(&self, within: Duration) -> NodeId {
        let running = self.running();
        eventually(within, "a leader all running voters agree on", || {
            let leaders: Vec<Option<NodeId>> = running
                .iter()
                .map(|id| self.controller(*id).leader())
                .collect();
            let first = leaders[0]?;
            let agreed = leaders.iter().all(|l| *l == Some(first));
            (agreed && running.contains(&first) && self.controller(first).is_leader())
                .then_some(first)
        })
        .await
    }

    /// Waits until `id`'s applied state satisfies `pred`.
    pub(crate) async fn wait_state(
        &self,
        id: NodeId,
        within: Duration,
        what: &str,
        pred: impl Fn(&ClusterState) -> bool,
    ) -> Arc<ClusterState> {
        let mut rx = self.controller(id).state();
        let wait = async {
            loop {
                {
                    let state = rx.borrow_and_update();
                    if pred(&state) {
                        return Arc::clone(&state);
                    }
                }
                if rx.changed().await.is_err() {
                    panic!("node {id}: state channel closed while waiting for {what}");
                }
            }
        };
        match tokio::time::timeout(within, wait).await {
            Ok(state) => state,
            Err(_) => panic!(
                "node {id}: no state with {what} within {within:?}; last: {:?}",
                self.controller(id).state().borrow()
            ),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(server) = node.server.take() {
                server.handle.abort();
            }
        }
    }
}

/// Polls `probe` until it answers `Some`, or panics after `within`.
pub(crate) async fn eventually<T>(
    within: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("no {what} within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `f` and fails the test if it takes longer than `within`.
#[allow(dead_code)] // not every test binary uses it
pub(crate) async fn within<T>(within: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(within, f)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {within:?}"))
}
