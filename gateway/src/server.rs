//! A node's two gRPC servers.
//!
//! - The **client listener**: Producer, Consumer, Admin, Groups, Security, gRPC health and
//!   server reflection (of the public API only), behind an [`AuthLayer`].
//! - The **cluster listener**: Raft, Controller and Replication, for other nodes only,
//!   behind another. A standalone node has none.
//!
//! Both accept through `pyralog_security::server::incoming` (TLS when configured, the
//! connection budgets and watchdog of `[server]`), count calls and check request framing in
//! the stream layer (`stream_limits`) before authentication, and stop together. On the
//! shutdown signal the node first reports NOT_SERVING on gRPC health and hands its
//! leaderships off (controlled shutdown, `Node::hand_off`) while still serving, then gives up
//! every partition role (ending replication streams), then both servers drain, then the node
//! closes its logs.

use std::future::Future;
use std::sync::Arc;

use pyralog_proto::internal::replication_server::ReplicationServer;
use pyralog_proto::v1::{
    admin_server::AdminServer, consumer_server::ConsumerServer, groups_server::GroupsServer,
    producer_server::ProducerServer, security_server::SecurityServer,
};
use pyralog_security::limits::ConnObserver;
use pyralog_security::server::{incoming, AcceptOptions, ServerTls};
use pyralog_security::ServerLimits;
use pyralog_types::config::limits::MAX_BATCH_BYTES;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::access::authn::{AuthLayer, Listener};
use crate::error_count::ErrorCountLayer;
use crate::group_service::GroupService;
use crate::node::{Node, ReplicationService};
use crate::security_service::SecurityService;
use crate::services::Services;
use crate::stream_limits::StreamLimitLayer;

/// gRPC messages may carry the largest batch plus framing.
pub(crate) const MAX_MESSAGE_BYTES: usize = MAX_BATCH_BYTES as usize + 1024 * 1024;
/// HTTP/2 flow-control windows: room for several batches in flight per stream and connection.
pub(crate) const STREAM_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
pub(crate) const CONNECTION_WINDOW_BYTES: u32 = 64 * 1024 * 1024;
/// TLS handshakes running at once per listener.
const MAX_HANDSHAKES: usize = 256;

#[derive(Debug, thiserror::Error)]
#[error("gRPC server: {0}")]
pub struct ServeError(String);

/// The sockets a node serves on.
#[derive(Debug)]
pub struct Listeners {
    pub client: TcpListener,
    /// The cluster listener; required in cluster mode, ignored without.
    pub cluster: Option<TcpListener>,
}

type Builder =
    tonic::transport::Server<tower_layer::Stack<StreamLimitLayer, tower_layer::Identity>>;

fn builder(limits: &ServerLimits) -> Builder {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        // Produce requests carry batches of up to MAX_MESSAGE_BYTES: let a whole batch be in
        // flight instead of trickling through the 64 KiB HTTP/2 default window.
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        // Outermost: every call counts as an open stream, whatever answers it.
        .layer(StreamLimitLayer {
            message_timeout: limits.request_message_timeout,
        })
}

fn accept(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    node: &Node,
    name: &'static str,
) -> impl futures::Stream<Item = std::io::Result<pyralog_security::server::Conn>> {
    let observer: Arc<dyn ConnObserver> = node.metrics().clone();
    incoming(
        listener,
        AcceptOptions {
            tls,
            handshake_timeout: node.security().settings.handshake_timeout,
            max_handshakes: MAX_HANDSHAKES,
            name,
            limits: node.config().server.clone(),
            observer,
        },
    )
}

/// Serves `node` until `shutdown` resolves, then closes the node cleanly.
pub async fn serve(
    node: Arc<Node>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let security = node.security().clone();
    let limits = node.config().server.clone();
    let stop = CancellationToken::new();

    let services = Services::new(node.clone());
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ProducerServer<Services>>()
        .await;
    health_reporter
        .set_serving::<ConsumerServer<Services>>()
        .await;
    health_reporter.set_serving::<AdminServer<Services>>().await;
    health_reporter
        .set_serving::<GroupsServer<GroupService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pyralog_proto::PUBLIC_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pyralog_proto::PUBLIC_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServeError(e.to_string()))?;
    let client_addr = listeners
        .client
        .local_addr()
        .map_err(|e| ServeError(e.to_string()))?;
    info!(addr = %client_addr, tls = security.client_tls.is_some(),
        auth = security.auth_enabled(), "serving clients");
    let client = builder(&limits)
        // Inside the stream limits, outside authentication: counts every failed answer,
        // refusals included.
        .layer(ErrorCountLayer {
            errors: node.metrics().errors.clone(),
        })
        .layer(AuthLayer {
            security: security.clone(),
            listener: Listener::Client,
        })
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(
            ProducerServer::new(services.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            ConsumerServer::new(services.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(AdminServer::new(services))
        .add_service(GroupsServer::new(GroupService::new(node.clone())))
        .add_service(SecurityServer::new(SecurityService::new(node.clone())))
        .serve_with_incoming_shutdown(
            accept(
                listeners.client,
                security.client_tls.clone(),
                &node,
                "client",
            ),
            stop.clone().cancelled_owned(),
        );

    let cluster = match (node.cluster(), listeners.cluster) {
        (Some(c), Some(listener)) => {
            let addr = listener
                .local_addr()
                .map_err(|e| ServeError(e.to_string()))?;
            info!(%addr, mtls = security.cluster_is_secure(), "serving the cluster");
            Some(
                builder(&limits)
                    .layer(AuthLayer {
                        security: security.clone(),
                        listener: Listener::Cluster,
                    })
                    .add_service(
                        ReplicationServer::new(ReplicationService { node: node.clone() })
                            .max_decoding_message_size(MAX_MESSAGE_BYTES)
                            .max_encoding_message_size(MAX_MESSAGE_BYTES),
                    )
                    .add_service(c.controller.raft_service())
                    .add_service(c.controller.controller_service())
                    .serve_with_incoming_shutdown(
                        accept(listener, security.cluster_tls.clone(), &node, "cluster"),
                        stop.clone().cancelled_owned(),
                    ),
            )
        }
        (Some(_), None) => {
            return Err(ServeError(
                "cluster mode needs a cluster listener".to_owned(),
            ))
        }
        (None, _) => None,
    };

    let signal = {
        let node = node.clone();
        let stop = stop.clone();
        let health = health_reporter.clone();
        async move {
            let asked = tokio::select! {
                _ = shutdown => true,
                _ = stop.cancelled() => false,
            };
            if asked {
                // Probes and load balancers stop sending here; clients still connected are
                // redirected to the new leaders while the node hands off.
                health
                    .set_service_status("", tonic_health::ServingStatus::NotServing)
                    .await;
                node.hand_off().await;
            }
            node.begin_shutdown();
            stop.cancel();
        }
    };
    // One server ending (failing) stops the other.
    let client = {
        let stop = stop.clone();
        async move {
            let r = client.await;
            stop.cancel();
            r
        }
    };
    let servers = async {
        match cluster {
            Some(cluster) => {
                let cluster = async {
                    let r = cluster.await;
                    stop.cancel();
                    r
                };
                let (a, b) = tokio::join!(client, cluster);
                a.and(b)
            }
            None => client.await,
        }
    };
    let (result, ()) = tokio::join!(servers, signal);
    node.shutdown().await;
    result.map_err(|e| ServeError(e.to_string()))
}
