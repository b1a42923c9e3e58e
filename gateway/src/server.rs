//! The gRPC server of a node: Pyralog services, gRPC health and server reflection.

use std::future::Future;
use std::sync::Arc;

use pyralog_proto::v1::{
    admin_server::AdminServer, consumer_server::ConsumerServer, groups_server::GroupsServer,
    producer_server::ProducerServer,
};
use pyralog_types::config::limits::MAX_BATCH_BYTES;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::info;

use crate::group_service::GroupService;
use crate::node::{Node, ReplicationService};
use crate::services::Services;
use pyralog_proto::internal::replication_server::ReplicationServer;

/// gRPC messages may carry the largest batch plus framing.
pub(crate) const MAX_MESSAGE_BYTES: usize = MAX_BATCH_BYTES as usize + 1024 * 1024;
/// HTTP/2 flow-control windows: room for several batches in flight per stream and connection.
pub(crate) const STREAM_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
pub(crate) const CONNECTION_WINDOW_BYTES: u32 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("gRPC server: {0}")]
pub struct ServeError(String);

/// Accepted connections with `TCP_NODELAY`. The server builder's `tcp_nodelay` applies only
/// to listeners it binds itself, not to an incoming stream: without this, a response written
/// in several small pieces (headers, data, trailers) waited for the client's delayed ACK, and
/// about one request in two took 40 ms more (controller writes, replication fetches).
fn no_delay(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        if let Err(e) = conn.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set on an accepted connection");
        }
        Ok(conn)
    })
}

/// Serves `node` on `listener` until `shutdown` resolves, then closes the node cleanly.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
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
        .register_encoded_file_descriptor_set(pyralog_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError(e.to_string()))?;
    info!(%addr, "serving gRPC");
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        // Produce requests carry batches of up to MAX_MESSAGE_BYTES: let a whole batch be in
        // flight instead of trickling through the 64 KiB HTTP/2 default window.
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .add_service(health_service)
        .add_service(reflection)
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
        .add_service(
            ReplicationServer::new(ReplicationService { node: node.clone() })
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_optional_service(node.cluster().map(|c| c.controller.raft_service()))
        .add_optional_service(node.cluster().map(|c| c.controller.controller_service()))
        .serve_with_incoming_shutdown(no_delay(listener), {
            let node = node.clone();
            async move {
                shutdown.await;
                node.begin_shutdown();
            }
        })
        .await
        .map_err(|e| ServeError(e.to_string()))?;
    node.shutdown().await;
    Ok(())
}
