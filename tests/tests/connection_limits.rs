//! Connection-level bounds (`[server]` of the node config), over real sockets against a real
//! node: silent and idle connections are closed, connection budgets refuse the excess at accept
//! without locking other clients out or burning CPU, a half-sent request message times out, a
//! unary call carrying two messages is refused, and long-polls outlive the idle timeout.
//!
//! Attackers connect from other loopback addresses (127.0.0.2, …: all of 127/8 is loopback
//! on Linux) so per-address budgets can be told apart from the well-behaved client's.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pyralog_client::Client;
use pyralog_e2e::TestNode;
use pyralog_proto::v1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: what every HTTP/2 client sends after the preface.
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

fn socket_addr(node: &TestNode) -> SocketAddr {
    node.url()
        .trim_start_matches("http://")
        .parse()
        .expect("node address")
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A TCP connection to `to` from address `from`.
async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// Whether the server closed `s` within `within` (end-of-file or a reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // Server SETTINGS and the like: keep reading.
            Ok(Ok(_)) => continue,
        }
    }
}

/// How many of `sockets` the server closes within `within` each.
async fn count_closed(sockets: &mut [TcpStream], within: Duration) -> usize {
    let mut closed = 0;
    for s in sockets {
        if closed_within(s, within).await {
            closed += 1;
        }
    }
    closed
}

/// CPU seconds (user + system) the process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields[11].parse().expect("utime");
    let stime: f64 = fields[12].parse().expect("stime");
    (utime + stime) / 100.0
}

/// A new client (a new connection) that creates nothing and checks the node answers.
async fn well_behaved_call(node: &TestNode) -> Result<(), String> {
    let client = tokio::time::timeout(Duration::from_secs(5), Client::connect(node.url()))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(5), client.list_logs())
        .await
        .map_err(|_| "list_logs timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_never_lock_clients_out_and_are_closed_after_their_timeouts() {
    let node = TestNode::start_with_fd_limit(
        &[
            ("PYRALOG_SERVER__FIRST_BYTES_TIMEOUT", "2s"),
            ("PYRALOG_SERVER__IDLE_TIMEOUT", "4s"),
        ],
        1024,
    );
    let pid = node.pid().expect("pid");
    let addr = socket_addr(&node);
    well_behaved_call(&node).await.expect("node answers");

    // 1,100 sockets from one address: half never send a byte, half send the HTTP/2 preface
    // and SETTINGS, then nothing. More than the node's 1024 file descriptors.
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let mut sockets = Vec::new();
    for i in 0..1100 {
        match tokio::time::timeout(Duration::from_secs(2), connect_from(loopback(2), addr)).await {
            Ok(Ok(mut s)) => {
                if i % 2 == 1 {
                    let _ = s.write_all(PREFACE).await;
                    let _ = s.write_all(EMPTY_SETTINGS).await;
                }
                sockets.push(s);
            }
            // A full backlog is the kernel's business, not a lock-out of other clients.
            _ => continue,
        }
    }
    assert!(
        sockets.len() >= 1024,
        "only {} sockets connected",
        sockets.len()
    );

    // A well-behaved client on another address gets in at once, while they are held.
    well_behaved_call(&node)
        .await
        .expect("a client is served while 1,100 idle sockets are held");

    // Every socket is closed: the excess at once, the rest after first_bytes_timeout
    // (silent ones) or idle_timeout (preface only), with slack for a loaded machine.
    let mut open = 0;
    for s in &mut sockets {
        let left = Duration::from_secs(12).saturating_sub(started.elapsed());
        if !closed_within(s, left.max(Duration::from_millis(10))).await {
            open += 1;
        }
    }
    assert_eq!(open, 0, "{open} idle sockets still open after 12 s");
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    println!(
        "FIGURES idle sockets: {} held, node CPU {cpu:.2} s over {wall:.1} s ({:.0}% of a core)",
        sockets.len(),
        cpu / wall * 100.0
    );
    assert!(
        cpu < 0.25 * wall,
        "the node used {cpu:.2} s of CPU in {wall:.1} s of idle sockets"
    );
    let refused = node.metric(
        "pyralog_connections_refused_total{listener=\"client\",reason=\"max_connections_per_address\"}",
    );
    let silent = node.metric(
        "pyralog_connections_closed_total{listener=\"client\",reason=\"first_bytes_timeout\"}",
    );
    let idle = node
        .metric("pyralog_connections_closed_total{listener=\"client\",reason=\"idle_timeout\"}");
    assert!(refused >= 900.0, "refused at accept: {refused}");
    assert!(
        silent >= 1.0 && idle >= 1.0,
        "closed: {silent} silent, {idle} idle"
    );
    drop(sockets);
    well_behaved_call(&node).await.expect("still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_over_its_budget_is_refused_at_accept_and_others_are_served() {
    let node = TestNode::start_with_env(&[
        ("PYRALOG_SERVER__MAX_CONNECTIONS_PER_ADDRESS", "5"),
        ("PYRALOG_SERVER__FIRST_BYTES_TIMEOUT", "60s"),
    ]);
    let addr = socket_addr(&node);
    let mut sockets = Vec::new();
    for _ in 0..8 {
        sockets.push(connect_from(loopback(3), addr).await.expect("connect"));
    }
    let refused = count_closed(&mut sockets, Duration::from_millis(1500)).await;
    assert_eq!(
        refused, 3,
        "the three over the per-address budget are closed at once"
    );
    well_behaved_call(&node)
        .await
        .expect("another address is served");
    assert_eq!(
        node.metric(
            "pyralog_connections_refused_total{listener=\"client\",reason=\"max_connections_per_address\"}"
        ),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_listener_refuses_the_excess_and_serves_again_when_connections_close() {
    let node = TestNode::start_with_env(&[
        ("PYRALOG_SERVER__MAX_CONNECTIONS", "20"),
        ("PYRALOG_SERVER__MAX_CONNECTIONS_PER_ADDRESS", "20"),
        ("PYRALOG_SERVER__FIRST_BYTES_TIMEOUT", "60s"),
    ]);
    let addr = socket_addr(&node);
    let mut sockets = Vec::new();
    for i in 0..25u8 {
        sockets.push(
            connect_from(loopback(10 + i % 5), addr)
                .await
                .expect("connect"),
        );
    }
    let refused = count_closed(&mut sockets, Duration::from_millis(1500)).await;
    assert_eq!(
        refused, 5,
        "the five over max_connections are closed at once"
    );
    assert!(
        well_behaved_call(&node).await.is_err(),
        "a full listener refuses everyone"
    );
    drop(sockets);
    tokio::time::sleep(Duration::from_millis(300)).await;
    well_behaved_call(&node)
        .await
        .expect("served once connections closed");
    assert!(
        node.metric(
            "pyralog_connections_refused_total{listener=\"client\",reason=\"max_connections\"}"
        ) >= 5.0
    );
}

/// An HTTP/2 connection to the node, driven in the background.
async fn h2_connect(node: &TestNode) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(socket_addr(node))
        .await
        .expect("connect");
    let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send.ready().await.expect("h2 ready")
}

fn grpc_request(node: &TestNode, path: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("{}{path}", node.url()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request")
}

/// The call's `grpc-status`, `pyralog-reason` and `grpc-message`.
async fn grpc_outcome(
    response: h2::client::ResponseFuture,
) -> (Option<String>, Option<String>, String) {
    let o = pyralog_e2e::raw::grpc_outcome(response)
        .await
        .expect("response");
    (o.code, o.reason, o.message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_message_gets_deadline_exceeded_within_the_bound() {
    let node = TestNode::start_with_env(&[("PYRALOG_SERVER__REQUEST_MESSAGE_TIMEOUT", "1s")]);
    let mut h2 = h2_connect(&node).await;

    // A message prefix declaring 100 bytes, then 3 of them, then nothing.
    let (response, mut body) = h2
        .send_request(grpc_request(&node, "/pyralog.v1.Admin/ListLogs"), false)
        .expect("send");
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 100, 1, 2, 3]), false)
        .expect("data");
    // A call that opens and never sends its message at all.
    let mut h2b = h2.clone().ready().await.expect("ready");
    let (silent, _silent_body) = h2b
        .send_request(grpc_request(&node, "/pyralog.v1.Admin/ListLogs"), false)
        .expect("send");

    let t = Instant::now();
    for (what, response) in [("half-sent", response), ("never sent", silent)] {
        let (code, reason, message) =
            tokio::time::timeout(Duration::from_secs(10), grpc_outcome(response))
                .await
                .unwrap_or_else(|_| {
                    panic!("{what}: no answer within 10 s; node log:\n{}", node.log())
                });
        assert_eq!(
            code.as_deref(),
            Some("4"),
            "{what}: DEADLINE_EXCEEDED: {message}"
        );
        assert_eq!(reason.as_deref(), Some("TIMEOUT"), "{what}: {message}");
        assert!(
            message.contains("request_message_timeout"),
            "{what}: {message}"
        );
    }
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "answered after {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_call_carrying_two_messages_is_invalid_argument() {
    let node = TestNode::start();
    let h2 = h2_connect(&node).await;
    let mut h2 = h2.ready().await.expect("ready");
    // Two empty ListLogsRequest messages in one unary call.
    let (response, mut body) = h2
        .send_request(grpc_request(&node, "/pyralog.v1.Admin/ListLogs"), false)
        .expect("send");
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), true)
        .expect("data");
    let (code, reason, message) =
        tokio::time::timeout(Duration::from_secs(10), grpc_outcome(response))
            .await
            .expect("answered");
    assert_eq!(code.as_deref(), Some("3"), "INVALID_ARGUMENT: {message}");
    assert_eq!(reason.as_deref(), Some("INVALID_REQUEST"), "{message}");

    // One message is still fine.
    let mut h2 = h2.ready().await.expect("ready");
    let (response, mut body) = h2
        .send_request(grpc_request(&node, "/pyralog.v1.Admin/ListLogs"), false)
        .expect("send");
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .expect("data");
    let (code, _, message) = grpc_outcome(response).await;
    assert_eq!(code.as_deref(), Some("0"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_budget_of_a_connection_is_announced() {
    let node = TestNode::start_with_env(&[("PYRALOG_SERVER__MAX_CONCURRENT_STREAMS", "7")]);
    let tcp = TcpStream::connect(socket_addr(&node))
        .await
        .expect("connect");
    let (h2, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let mut conn = Box::pin(conn);
    let mut h2 = h2.ready().await.expect("ready");
    let (response, mut body) = h2
        .send_request(grpc_request(&node, "/pyralog.v1.Admin/ListLogs"), false)
        .expect("send");
    body.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .expect("data");
    // Drive the connection until the call is answered: the server's SETTINGS came first.
    tokio::select! {
        _ = &mut conn => panic!("connection ended"),
        r = response => { r.expect("answer"); }
    }
    assert_eq!(conn.max_concurrent_send_streams(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_outlives_the_idle_timeout() {
    let node = TestNode::start_with_env(&[("PYRALOG_SERVER__IDLE_TIMEOUT", "1s")]);
    let client = node.client().await;
    client
        .create_log("quiet", v1::LogConfig::default())
        .await
        .expect("create");
    let t = Instant::now();
    let fetched = client
        .fetch(v1::FetchRequest {
            log: "quiet".into(),
            partition: 0,
            start: Some(v1::fetch_request::Start::Offset(0)),
            wait_ms: 4000,
            ..Default::default()
        })
        .await
        .expect("a 4 s long-poll on a connection with a 1 s idle timeout");
    assert!(fetched.batches.is_empty() && fetched.records.is_empty());
    assert!(
        t.elapsed() >= Duration::from_millis(3500),
        "waited {:?}",
        t.elapsed()
    );
    // The idle connection is closed afterwards, and the client reconnects by itself.
    tokio::time::sleep(Duration::from_secs(2)).await;
    client
        .list_logs()
        .await
        .expect("served on a new connection");
    assert!(
        node.metric(
            "pyralog_connections_closed_total{listener=\"client\",reason=\"idle_timeout\"}"
        ) >= 1.0
    );
}
