//! The read-only Iceberg REST catalog's protocol core: routes and response bodies, with no
//! I/O, so the node's HTTP server (`gateway/src/catalog.rs`) only authenticates, looks tables
//! up and writes what this module builds.
//!
//! The catalog has one namespace, [`NAMESPACE`], holding a table per log that has one (a log
//! whose archive was never committed has none yet). It answers the endpoints a reader needs
//! (`GET /v1/config`, list and load namespaces and tables, `HEAD` for existence) and refuses
//! every write: the tables are derived from the archive and only Pyralog commits to them.
//! Errors use the REST spec's body, `{"error": {"message", "type", "code"}}`.

use serde_json::{json, Value};

use crate::table::LoadedTable;

/// The catalog's only namespace.
pub const NAMESPACE: &str = "pyralog";

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Config,
    ListNamespaces,
    Namespace,
    ListTables,
    Table(String),
}

/// A refusal: HTTP status, the spec's exception type, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
}

impl CatalogError {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        CatalogError {
            status,
            kind,
            message: message.into(),
        }
    }

    pub fn no_such_table(name: &str) -> Self {
        Self::new(
            404,
            "NoSuchTableException",
            format!("table {NAMESPACE}.{name} does not exist (no log of that name has an archived table)"),
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "NotAuthorizedException", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "ForbiddenException", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailableException", message)
    }

    /// The spec's error body.
    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "code": self.status}})
    }
}

/// Longest path the catalog looks at (a table name is a log name, at most 249 bytes).
const MAX_PATH: usize = 512;

/// Routes `method path` (the path after the catalog's root, query string removed).
pub fn route(method: &str, path: &str) -> Result<Route, CatalogError> {
    if path.len() > MAX_PATH {
        return Err(CatalogError::new(
            400,
            "BadRequestException",
            "path too long",
        ));
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let read = matches!(method, "GET" | "HEAD");
    let route = match parts.as_slice() {
        ["v1", "config"] => Route::Config,
        ["v1", "namespaces"] => Route::ListNamespaces,
        ["v1", "namespaces", ns] => {
            check_namespace(ns)?;
            Route::Namespace
        }
        ["v1", "namespaces", ns, "tables"] => {
            check_namespace(ns)?;
            Route::ListTables
        }
        ["v1", "namespaces", ns, "tables", table] => {
            check_namespace(ns)?;
            let name = percent_decode(table)?;
            if pyralog_types::LogId::new(name.clone()).is_err() {
                return Err(CatalogError::new(
                    400,
                    "BadRequestException",
                    "a table name is a log name: letters, digits, '.', '_' and '-', up to 249 bytes",
                ));
            }
            Route::Table(name)
        }
        _ => {
            return Err(CatalogError::new(
                404,
                "NotFoundException",
                format!("no catalog endpoint {method} /{}", parts.join("/")),
            ))
        }
    };
    if !read {
        return Err(CatalogError::new(
            405,
            "UnsupportedOperationException",
            "this catalog is read-only: Pyralog derives the tables from the archive and is their only writer",
        ));
    }
    Ok(route)
}

fn check_namespace(ns: &str) -> Result<(), CatalogError> {
    if ns == NAMESPACE {
        return Ok(());
    }
    Err(CatalogError::new(
        404,
        "NoSuchNamespaceException",
        format!(
            "no namespace {:?}: the only one is {NAMESPACE:?}",
            truncate(ns)
        ),
    ))
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `%XX` escapes in a path segment (a table name never needs one, but clients may escape).
fn percent_decode(s: &str) -> Result<String, CatalogError> {
    let bad = || CatalogError::new(400, "BadRequestException", "bad percent-encoding");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// `GET /v1/config`.
pub fn config_body() -> Value {
    json!({"defaults": {}, "overrides": {}})
}

/// `GET /v1/namespaces`.
pub fn namespaces_body() -> Value {
    json!({"namespaces": [[NAMESPACE]]})
}

/// `GET /v1/namespaces/{ns}`.
pub fn namespace_body() -> Value {
    json!({"namespace": [NAMESPACE], "properties": {
        "comment": "one table per Pyralog log with an archive"}})
}

/// `GET /v1/namespaces/{ns}/tables` for `tables` (sorted by the caller).
pub fn tables_body(tables: &[String]) -> Value {
    let ids: Vec<Value> = tables
        .iter()
        .map(|t| json!({"namespace": [NAMESPACE], "name": t}))
        .collect();
    json!({"identifiers": ids})
}

/// `GET /v1/namespaces/{ns}/tables/{table}`: where the metadata is, and the metadata.
pub fn load_table_body(table: &LoadedTable) -> Result<Value, serde_json::Error> {
    Ok(json!({
        "metadata-location": table.location,
        "metadata": serde_json::to_value(&table.metadata)?,
        "config": {},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_route_and_writes_are_refused() {
        assert_eq!(route("GET", "/v1/config"), Ok(Route::Config));
        assert_eq!(route("GET", "v1/namespaces/"), Ok(Route::ListNamespaces));
        assert_eq!(
            route("HEAD", "/v1/namespaces/pyralog"),
            Ok(Route::Namespace)
        );
        assert_eq!(
            route("GET", "/v1/namespaces/pyralog/tables"),
            Ok(Route::ListTables)
        );
        assert_eq!(
            route("GET", "/v1/namespaces/pyralog/tables/orders%2Dv2"),
            Ok(Route::Table("orders-v2".into()))
        );
        let write = route("POST", "/v1/namespaces/pyralog/tables").expect_err("write");
        assert_eq!(
            (write.status, write.kind),
            (405, "UnsupportedOperationException")
        );
        let drop = route("DELETE", "/v1/namespaces/pyralog/tables/orders").expect_err("drop");
        assert_eq!(drop.status, 405);
    }

    #[test]
    fn bad_names_are_clear_errors() {
        let ns = route("GET", "/v1/namespaces/other/tables").expect_err("namespace");
        assert_eq!((ns.status, ns.kind), (404, "NoSuchNamespaceException"));
        let name = route("GET", "/v1/namespaces/pyralog/tables/a%2Fb").expect_err("slash");
        assert_eq!(name.status, 400);
        let pct = route("GET", "/v1/namespaces/pyralog/tables/a%zz").expect_err("escape");
        assert_eq!(pct.status, 400);
        let long = "x".repeat(600);
        assert_eq!(
            route("GET", &format!("/v1/namespaces/pyralog/tables/{long}"))
                .expect_err("long")
                .status,
            400
        );
        assert_eq!(
            route("GET", "/v2/anything").expect_err("unknown").status,
            404
        );
        let body = CatalogError::no_such_table("x").body();
        assert_eq!(body["error"]["code"], 404);
        assert_eq!(body["error"]["type"], "NoSuchTableException");
    }
}
