//! The node's read-only Iceberg REST catalog, on its own HTTP listener (`catalog_listen`).
//!
//! pyiceberg, DuckDB, Spark and Trino find a log's table by URL
//! (`{catalog}/v1/namespaces/pyralog/tables/{log}`) instead of knowing the bucket layout.
//! Routes and bodies are `pyralog_lakehouse::catalog`'s; this module authenticates and
//! authorizes like the gRPC listener does: with auth on, a call needs an
//! `authorization: Bearer` token the node accepts, a table is listed only if the caller may
//! consume the log, and loading one it may not is refused (and audited). The listener is
//! plain HTTP, like `/metrics`: bind it to loopback or a private network.

use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use pyralog_lakehouse::catalog::{self, CatalogError, Route};
use pyralog_security::Principal;
use pyralog_types::acl::{Operation, Resource};
use pyralog_types::LogId;
use serde_json::Value;

use crate::node::Node;

/// Serves the catalog on `listener` until `shutdown` resolves.
pub async fn serve_catalog(
    node: Arc<Node>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
        let node = node.clone();
        async move { respond(&node, &method, uri.path(), &headers).await }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn respond(node: &Node, method: &Method, path: &str, headers: &HeaderMap) -> Response {
    match answer(node, method.as_str(), path, headers).await {
        Ok(_) if method == Method::HEAD => StatusCode::NO_CONTENT.into_response(),
        Ok(body) => json(StatusCode::OK, &body),
        Err(e) => {
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            let mut response = json(status, &e.body());
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    "www-authenticate",
                    axum::http::HeaderValue::from_static("Bearer"),
                );
            }
            response
        }
    }
}

fn json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn answer(
    node: &Node,
    method: &str,
    path: &str,
    headers: &HeaderMap,
) -> Result<Value, CatalogError> {
    let route = catalog::route(method, path)?;
    let principal = node
        .security()
        .authenticate(None, headers)
        .map_err(|e| CatalogError::unauthorized(e.to_string()))?;
    let tables = node.lakehouse_tables().ok_or_else(|| {
        CatalogError::unavailable("this node has no cold tier publishing Iceberg tables")
    })?;
    // Store errors name keys and endpoints: they go to the node's log, not to the caller.
    let unavailable = |e: pyralog_lakehouse::LakehouseError| {
        tracing::warn!(error = %e, "catalog: reading a table failed");
        CatalogError::unavailable(
            "reading the table from the object store failed (see the node's log)",
        )
    };
    match route {
        Route::Config => Ok(catalog::config_body()),
        Route::ListNamespaces => Ok(catalog::namespaces_body()),
        Route::Namespace => Ok(catalog::namespace_body()),
        Route::ListTables => {
            let mut names = Vec::new();
            for log in node.log_ids() {
                if lists(node, &principal, &log)
                    && tables.exists(&log).await.map_err(unavailable)?
                {
                    names.push(log.to_string());
                }
            }
            names.sort();
            Ok(catalog::tables_body(&names))
        }
        Route::Table(name) => {
            let log = LogId::new(name.clone()).map_err(|_| CatalogError::no_such_table(&name))?;
            // Authorization first, so a caller that may not read a log learns nothing of
            // whether it exists.
            may_read(node, &principal, &log)?;
            if !node.log_ids().contains(&log) {
                return Err(CatalogError::no_such_table(&name));
            }
            let table = tables
                .load(&log)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| CatalogError::no_such_table(&name))?;
            catalog::load_table_body(&table).map_err(|e| {
                tracing::warn!(error = %e, "catalog: encoding a table failed");
                CatalogError::unavailable("encoding the table failed (see the node's log)")
            })
        }
    }
}

/// Whether `log` is in `principal`'s listing (it may consume the log; not audited).
fn lists(node: &Node, principal: &Principal, log: &LogId) -> bool {
    let mut request = tonic::Request::new(());
    request.extensions_mut().insert(principal.clone());
    node.guard(&request)
        .is_ok_and(|g| g.allows(Operation::Consume, Resource::Log(log.as_str())))
}

/// Whether `principal` may consume `log` (what reading its table amounts to); a refusal
/// is audited like a refused gRPC call.
fn may_read(node: &Node, principal: &Principal, log: &LogId) -> Result<(), CatalogError> {
    let mut request = tonic::Request::new(());
    request.extensions_mut().insert(principal.clone());
    node.guard(&request)
        .and_then(|g| g.check(Operation::Consume, Resource::Log(log.as_str())))
        .map_err(|s| CatalogError::forbidden(s.message().to_owned()))
}
