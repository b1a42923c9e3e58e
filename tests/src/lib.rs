//! Test harness: starts real `pyralog` processes on free loopback ports, kills and restarts
//! them, and cleans up (processes are killed and temp dirs removed on drop).
//!
//! The binary is found through `PYRALOG_BIN`, or next to the test executable
//! (`target/<profile>/pyralog`); the README test command builds it first.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub mod raw;
mod records;
mod rotating;
pub mod secure;
pub mod stores;

pub use records::{create_log_when_ready, one_record, read_partition};
pub use rotating::RotatingClient;
pub use secure::Secure;
pub use stores::{s3_env, ColdStore};

/// Path of the `pyralog` binary under test.
pub fn pyralog_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PYRALOG_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-exe> -> target/<profile>/pyralog
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("target dir");
    let bin = dir.join("pyralog");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --bin pyralog` first or set PYRALOG_BIN",
        bin.display()
    );
    bin
}

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

/// A name no other test run uses (bucket prefixes are shared by every run on one server).
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{name}-{}-{nanos}", std::process::id())
}

/// Sets the child's soft and hard `RLIMIT_NOFILE` to `limit` between fork and exec.
#[allow(unsafe_code)]
fn limit_open_files(cmd: &mut Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only makes the
    // setrlimit(2) system call, which is async-signal-safe; it allocates nothing and takes no
    // lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, limit, limit)
                .map_err(std::io::Error::from)
        });
    }
}

/// A `pyralog dev` process with its own data directory.
#[derive(Debug)]
pub struct TestNode {
    child: Option<Child>,
    /// `dev` (the default) or `serve`.
    mode: &'static str,
    /// The `--listen` address: port 0 picks a new port at every start.
    listen: String,
    addr: String,
    metrics_url: Option<String>,
    data_dir: PathBuf,
    log_path: PathBuf,
    extra_env: Vec<(String, String)>,
    /// Extra command-line arguments after the mode (`--config FILE`).
    extra_args: Vec<String>,
    /// How clients reach it (TLS files, credentials); default plaintext.
    client_options: pyralog_client::ClientOptions,
    /// Soft and hard `RLIMIT_NOFILE` of the process, if limited.
    nofile: Option<u64>,
    _root: Option<tempfile::TempDir>,
}

/// How to start a [`TestNode`].
struct Launch {
    mode: &'static str,
    listen: String,
    env: Vec<(String, String)>,
    args: Vec<String>,
    client_options: pyralog_client::ClientOptions,
    nofile: Option<u64>,
}

impl TestNode {
    /// Spawns a node in `root` (its data in `root/data`, its log in `root/node.log`).
    fn launch(root: tempfile::TempDir, l: Launch) -> TestNode {
        let mut node = TestNode {
            child: None,
            mode: l.mode,
            listen: l.listen,
            addr: String::new(),
            metrics_url: None,
            data_dir: root.path().join("data"),
            log_path: root.path().join("node.log"),
            extra_env: l.env,
            extra_args: l.args,
            client_options: l.client_options,
            nofile: l.nofile,
            _root: Some(root),
        };
        node.spawn();
        node
    }

    /// Starts a node on a fresh temp dir.
    pub fn start() -> TestNode {
        Self::start_with_env::<&str, &str>(&[])
    }

    /// Starts a standalone `pyralog serve` node with `config` (TOML) and the client options
    /// to reach it.
    pub fn start_serve(config: &str, client_options: pyralog_client::ClientOptions) -> TestNode {
        let root = tempfile::tempdir().expect("tempdir");
        let config_path = root.path().join("pyralog.toml");
        std::fs::write(&config_path, config).expect("config");
        let args = vec!["--config".into(), config_path.display().to_string()];
        Self::launch(
            root,
            Launch {
                mode: "serve",
                listen: "127.0.0.1:0".into(),
                env: Vec::new(),
                args,
                client_options,
                nofile: None,
            },
        )
    }

    /// Starts `pyralog dev --secure` (a throwaway CA in `<data dir>/secure`); clients use the
    /// `admin` certificate it makes.
    pub fn start_dev_secure() -> TestNode {
        let root = tempfile::tempdir().expect("tempdir");
        let certs = root.path().join("data").join("secure");
        let client_options = pyralog_client::ClientOptions {
            tls_ca: Some(certs.join("ca.pem")),
            tls_cert: Some(certs.join("client-admin.pem")),
            tls_key: Some(certs.join("client-admin-key.pem")),
            token: None,
        };
        Self::launch(
            root,
            Launch {
                mode: "dev",
                listen: "127.0.0.1:0".into(),
                env: Vec::new(),
                args: vec!["--secure".into()],
                client_options,
                nofile: None,
            },
        )
    }

    /// Starts a node with extra `PYRALOG_*` settings.
    pub fn start_with_env<K: AsRef<str>, V: AsRef<str>>(env: &[(K, V)]) -> TestNode {
        Self::start_dev(env, None)
    }

    /// Starts a node with extra `PYRALOG_*` settings whose open-file limit is `fd_limit`
    /// (soft and hard `RLIMIT_NOFILE`, so the node cannot raise it: it must live within it).
    pub fn start_with_fd_limit<K: AsRef<str>, V: AsRef<str>>(
        env: &[(K, V)],
        fd_limit: u64,
    ) -> TestNode {
        Self::start_dev(env, Some(fd_limit))
    }

    fn start_dev<K: AsRef<str>, V: AsRef<str>>(env: &[(K, V)], nofile: Option<u64>) -> TestNode {
        let env = env
            .iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        Self::launch(
            tempfile::tempdir().expect("tempdir"),
            Launch {
                mode: "dev",
                listen: "127.0.0.1:0".into(),
                env,
                args: Vec::new(),
                client_options: pyralog_client::ClientOptions::default(),
                nofile,
            },
        )
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("node log file");
        let mut cmd = Command::new(pyralog_bin());
        cmd.arg(self.mode)
            .args(&self.extra_args)
            .arg("--listen")
            .arg(&self.listen)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--metrics-listen")
            .arg("127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        if let Some(limit) = self.nofile {
            limit_open_files(&mut cmd, limit);
        }
        let mut child = cmd.spawn().expect("spawn pyralog");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the node never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "node did not report its address; log:\n{}",
                    std::fs::read_to_string(&self.log_path).unwrap_or_default()
                );
            }
        };
        let mut urls = line
            .split_whitespace()
            .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
            .map(|w| w.trim_end_matches([')', ',', ';']));
        self.addr = urls
            .next()
            .unwrap_or_else(|| panic!("unexpected banner: {line}"))
            .to_owned();
        self.metrics_url = urls.next().map(str::to_owned);
        self.child = Some(child);
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT/metrics`
    pub fn metrics_url(&self) -> Option<&str> {
        self.metrics_url.as_deref()
    }

    /// The node's `/metrics` page: the whole HTTP response, status line first (blocking).
    pub fn scrape_metrics(&self) -> String {
        use std::io::{Read, Write};
        let url = self.metrics_url().expect("metrics endpoint announced");
        let hostport = url
            .trim_start_matches("http://")
            .trim_end_matches("/metrics");
        let mut s = std::net::TcpStream::connect(hostport).expect("connect metrics");
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .expect("request");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("response");
        response
    }

    /// The value of the first metric line starting with `prefix` (0 when absent).
    pub fn metric(&self, prefix: &str) -> f64 {
        self.scrape_metrics()
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The node's stderr log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGSTOP: the process stays, but does nothing (a node cut off from the network).
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGSTOP);
        }
    }

    /// SIGCONT after [`TestNode::pause`].
    pub fn resume(&self) {
        if let Some(c) = &self.child {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: no chance to flush or close anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                let log = self.log();
                let tail = &log[log.len().saturating_sub(6000)..];
                panic!("node did not stop within 60s after SIGTERM; its log ends:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sets (or replaces) a `PYRALOG_*` variable for the next start of this node.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.extra_env.retain(|(k, _)| k != key);
        self.extra_env.push((key.to_owned(), value.to_owned()));
    }

    /// Starts the node again on the same data dir (a new port); returns the start time.
    pub fn restart(&mut self) -> Duration {
        assert!(self.child.is_none(), "stop or kill the node first");
        let t = Instant::now();
        self.spawn();
        t.elapsed()
    }

    /// Connects a client (with the node's TLS files and credentials, if it has any).
    pub async fn client(&self) -> pyralog_client::Client {
        pyralog_client::Client::connect_with(self.url(), self.client_options.clone())
            .await
            .expect("connect to node")
    }

    /// How clients reach this node.
    pub fn client_options(&self) -> &pyralog_client::ClientOptions {
        &self.client_options
    }

    /// Runs a CLI command against this node.
    pub fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> CliOutput {
        run_cli_with(self.url(), &self.client_options, args, stdin)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        // A paused process ignores SIGTERM but not SIGKILL; resume anyway so nothing lingers.
        self.resume();
        self.kill9();
    }
}

/// A free loopback port (bound and released: another process could take it in between,
/// which tests accept).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `n` `pyralog serve` processes forming one cluster on loopback, each a controller voter,
/// on fixed ports (so a restarted node keeps its address). `nodes[i]` has node id `i + 1`.
///
/// With `PYRALOG_E2E_SECURE=1` in the environment, [`TestCluster::start`] makes a secure
/// cluster ([`Secure`]): the same tests then run over TLS, mutual TLS between nodes and
/// authenticated clients.
#[derive(Debug)]
pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    /// Client listeners (`host:port`).
    pub addresses: Vec<String>,
    /// Cluster listeners (`host:port`).
    pub cluster_addresses: Vec<String>,
    /// The certificates, when the cluster is secure.
    pub secure: Option<Secure>,
    /// How many nodes host partitions (the last ones; all of them unless the controller
    /// runs apart, [`TestCluster::start_split`]).
    pub brokers: usize,
}

/// Whether this test run asks for secure clusters (`PYRALOG_E2E_SECURE=1`).
pub fn secure_run() -> bool {
    std::env::var("PYRALOG_E2E_SECURE").is_ok_and(|v| v == "1")
}

impl TestCluster {
    /// Starts `n` nodes with short failure-detection timings (lease 2 s), leader balancing
    /// off, plus `env` (later entries win); secure
    /// when the run asks for it ([`secure_run`]).
    pub fn start<K: AsRef<str>, V: AsRef<str>>(n: usize, env: &[(K, V)]) -> TestCluster {
        let secure = secure_run().then(|| Secure::new(n as u64));
        Self::start_with(n, env, secure)
    }

    /// Starts `n` nodes secured by `secure` (or plaintext).
    pub fn start_with<K: AsRef<str>, V: AsRef<str>>(
        n: usize,
        env: &[(K, V)],
        secure: Option<Secure>,
    ) -> TestCluster {
        Self::start_topology(n, 0, env, &|_| Vec::new(), secure)
    }

    /// The controller apart from the brokers: nodes `1..=controllers` are controller voters
    /// only (no partitions), the next `brokers` nodes host partitions and follow the
    /// controller as Raft learners. Secure when the run asks for it ([`secure_run`]).
    pub fn start_split<K: AsRef<str>, V: AsRef<str>>(
        controllers: usize,
        brokers: usize,
        env: &[(K, V)],
    ) -> TestCluster {
        Self::start_split_with(controllers, brokers, env, &|_| Vec::new())
    }

    /// [`TestCluster::start_split`] with settings of each node's own: `node_env(id)` adds
    /// to (and overrides) `env` for node `id`.
    pub fn start_split_with<K: AsRef<str>, V: AsRef<str>>(
        controllers: usize,
        brokers: usize,
        env: &[(K, V)],
        node_env: &dyn Fn(u64) -> Vec<(String, String)>,
    ) -> TestCluster {
        assert!(brokers > 0, "a split cluster needs brokers");
        let secure = secure_run().then(|| Secure::new((controllers + brokers) as u64));
        Self::start_topology(controllers, brokers, env, node_env, secure)
    }

    /// `voters` nodes that are voters (and brokers too when there are no broker-only nodes),
    /// then `brokers` broker-only nodes.
    fn start_topology<K: AsRef<str>, V: AsRef<str>>(
        voters: usize,
        brokers: usize,
        env: &[(K, V)],
        node_env: &dyn Fn(u64) -> Vec<(String, String)>,
        secure: Option<Secure>,
    ) -> TestCluster {
        let n = voters + brokers;
        let addresses: Vec<String> = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let cluster_addresses: Vec<String> = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let role = |i: usize| match (brokers, i < voters) {
            (0, _) => "controller,broker",
            (_, true) => "controller",
            (_, false) => "broker",
        };
        let voters = cluster_addresses[..voters]
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = addresses
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                let root = tempfile::tempdir().expect("tempdir");
                let mut vars: Vec<(String, String)> = vec![
                    ("PYRALOG_NODE_ID".into(), (i + 1).to_string()),
                    ("PYRALOG_CLUSTER__VOTERS".into(), voters.clone()),
                    ("PYRALOG_CLUSTER__ROLES".into(), role(i).into()),
                    (
                        "PYRALOG_CLUSTER__LISTEN".into(),
                        cluster_addresses[i].clone(),
                    ),
                    ("PYRALOG_CLUSTER__NODE_LEASE".into(), "2s".into()),
                    ("PYRALOG_CLUSTER__NODE_HEARTBEAT".into(), "250ms".into()),
                    ("PYRALOG_CLUSTER__REPLICA_LAG_MAX".into(), "3s".into()),
                    ("PYRALOG_CLUSTER__REPLICA_FETCH_WAIT".into(), "200ms".into()),
                    // Chaos tests follow leadership as failures move it; balancing would
                    // move it back behind their backs. The rolling-restart test turns it on.
                    (
                        "PYRALOG_CLUSTER__LEADER_BALANCE_INTERVAL".into(),
                        "0s".into(),
                    ),
                ];
                vars.extend(
                    env.iter()
                        .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned())),
                );
                vars.extend(node_env(i as u64 + 1));
                let (extra_args, client_options) = match &secure {
                    Some(s) => {
                        let config = root.path().join("security.toml");
                        std::fs::write(&config, s.node_config(i as u64 + 1))
                            .expect("security config");
                        (
                            vec!["--config".to_owned(), config.display().to_string()],
                            s.admin_options(),
                        )
                    }
                    None => (Vec::new(), pyralog_client::ClientOptions::default()),
                };
                TestNode::launch(
                    root,
                    Launch {
                        mode: "serve",
                        listen: addr.clone(),
                        env: vars,
                        args: extra_args,
                        client_options,
                        nofile: None,
                    },
                )
            })
            .collect();
        TestCluster {
            nodes,
            addresses,
            cluster_addresses,
            secure,
            brokers: if brokers == 0 { n } else { brokers },
        }
    }

    /// The ids of the nodes that host partitions.
    pub fn broker_ids(&self) -> Vec<u64> {
        let n = self.nodes.len() as u64;
        (n - self.brokers as u64 + 1..=n).collect()
    }

    /// The node with id `id` (1-based).
    pub fn node(&mut self, id: u64) -> &mut TestNode {
        &mut self.nodes[(id - 1) as usize]
    }

    pub fn url(&self, id: u64) -> String {
        let scheme = if self.secure.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addresses[(id - 1) as usize])
    }

    /// How clients reach the cluster (the superuser `admin` of a secure cluster).
    pub fn client_options(&self) -> pyralog_client::ClientOptions {
        self.secure
            .as_ref()
            .map(Secure::admin_options)
            .unwrap_or_default()
    }

    /// A client of node `id`.
    pub async fn client(
        &self,
        id: u64,
    ) -> Result<pyralog_client::Client, pyralog_client::ClientError> {
        pyralog_client::Client::connect_with(self.url(id), self.client_options()).await
    }

    /// A client of the node at `url` (a redirect target, say), with the cluster's security.
    pub async fn client_at(
        &self,
        url: &str,
    ) -> Result<pyralog_client::Client, pyralog_client::ClientError> {
        let scheme = if self.secure.is_some() {
            "https"
        } else {
            "http"
        };
        let bare = url
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        pyralog_client::Client::connect_with(format!("{scheme}://{bare}"), self.client_options())
            .await
    }

    /// A raw gRPC channel to node `id`'s client listener, for generated clients.
    pub fn channel(&self, id: u64) -> tonic::transport::Channel {
        secure::channel(
            &self.addresses[(id - 1) as usize],
            self.secure.as_ref().map(|s| s.admin_files()),
            None,
        )
    }

    /// Runs a CLI command against node `id`.
    pub fn cli(&self, id: u64, args: &[&str], stdin: Option<&[u8]>) -> CliOutput {
        run_cli_with(&self.url(id), &self.client_options(), args, stdin)
    }

    /// Node id for a `host:port` address.
    pub fn id_of(&self, address: &str) -> Option<u64> {
        self.addresses
            .iter()
            .position(|a| a == address)
            .map(|i| i as u64 + 1)
    }

    /// Waits (up to 30 s) until node 1 answers and every broker has registered with the
    /// controller unfenced: before that, creating a log with replicas on all nodes is refused
    /// with `NOT_ENOUGH_REPLICAS`, as it should be. Returns a client of node 1.
    pub async fn wait_registered(&self) -> pyralog_client::Client {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let attempt = async {
                let c = self.client(1).await?;
                let d = c.describe_cluster().await?;
                Ok::<_, pyralog_client::ClientError>((c, d))
            };
            if let Ok(Ok((c, d))) =
                tokio::time::timeout(std::time::Duration::from_secs(2), attempt).await
            {
                if d.nodes.iter().filter(|n| !n.fenced).count() == self.brokers {
                    return c;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the nodes did not register\n{}",
                self.logs()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Every node's stderr, labelled (for failure messages).
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("===== node {} =====\n{}", i + 1, n.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[derive(Debug)]
pub struct CliOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `pyralog --server URL ARGS...` with optional stdin.
pub fn run_cli(url: &str, args: &[&str], stdin: Option<&[u8]>) -> CliOutput {
    run_cli_with(url, &pyralog_client::ClientOptions::default(), args, stdin)
}

/// The CLI's TLS flags for `options` (the token goes in `PYRALOG_TOKEN`).
pub fn tls_args(options: &pyralog_client::ClientOptions) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    for (flag, path) in [
        ("--tls-ca", &options.tls_ca),
        ("--tls-cert", &options.tls_cert),
        ("--tls-key", &options.tls_key),
    ] {
        if let Some(p) = path {
            out.push(flag.into());
            out.push(p.clone().into_os_string());
        }
    }
    out
}

/// [`run_cli`] with TLS files and credentials.
pub fn run_cli_with(
    url: &str,
    options: &pyralog_client::ClientOptions,
    args: &[&str],
    stdin: Option<&[u8]>,
) -> CliOutput {
    use std::io::Write;
    let mut cmd = Command::new(pyralog_bin());
    cmd.arg("--server").arg(url).args(tls_args(options));
    if let Some(t) = &options.token {
        cmd.env("PYRALOG_TOKEN", t);
    }
    let mut child = cmd
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pyralog cli");
    if let Some(input) = stdin {
        let mut si = child.stdin.take().expect("stdin");
        let data = input.to_vec();
        std::thread::spawn(move || {
            let _ = si.write_all(&data);
        });
    }
    let out = child.wait_with_output().expect("cli output");
    CliOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Deterministic pseudo-random payload of `len` bytes for record `i` (so tests can check
/// values without keeping them in memory).
pub fn payload(i: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut state = xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes());
    while out.len() < len {
        out.extend_from_slice(&state.to_le_bytes());
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    out.truncate(len);
    out
}

/// Raw sequential write + fsync throughput of the disk under `dir`, in MB/s: `total` bytes
/// written in `chunk`-sized writes, each followed by `fdatasync` (the same pattern as a
/// leader appending one batch per fsync). The baseline that produce figures are divided by.
pub fn disk_baseline_mb_s(dir: &Path, total: usize, chunk: usize) -> f64 {
    use std::io::Write;
    let path = dir.join("disk-baseline.tmp");
    let mut f = std::fs::File::create(&path).expect("baseline file");
    let buf = payload(42, chunk);
    let t = Instant::now();
    let mut written = 0;
    while written < total {
        f.write_all(&buf).expect("baseline write");
        f.sync_data().expect("baseline fsync");
        written += chunk;
    }
    let secs = t.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    written as f64 / 1e6 / secs
}

/// Reads a `usize` knob from the environment (lets CI run smaller and benchmarks larger).
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
