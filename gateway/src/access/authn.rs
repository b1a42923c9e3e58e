//! Authentication: one tower layer per listener, in front of every RPC.
//!
//! The client layer turns what the connection and the call present (a verified client
//! certificate, an `authorization: Bearer` token) into a [`Principal`] that handlers read from
//! the request's extensions; the cluster layer turns a verified node certificate into a
//! [`PeerNode`]. Anything else is answered here, before any service sees the call:
//! `UNAUTHENTICATED` with the reason (plaintext on a TLS port, a rejected certificate, an
//! unknown or expired token), or `PERMISSION_DENIED` for an RPC the access table does not
//! list. Every refusal is logged on the `pyralog::audit` target.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{ready, Either, Ready};
use http::{Request, Response};
use pyralog_controller::PeerNode;
use pyralog_proto::status::status;
use pyralog_security::server::{ConnInfo, PeerCert};
use pyralog_security::{AuthError, AuthMethod, Principal};
use pyralog_types::Reason;
use tower_layer::Layer;
use tower_service::Service;

use super::authz::{rpc_rule, RpcPath};
use super::NodeSecurity;

/// gRPC health checks stay open on the client listener (load balancers and orchestrators
/// probe without credentials); they reveal nothing but "serving".
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

fn refuse<B: Default>(
    reason: Reason,
    message: String,
    path: &str,
    info: Option<&ConnInfo>,
) -> Response<B> {
    tracing::warn!(
        target: "pyralog::audit",
        rpc = %path,
        remote = ?info.and_then(|i| i.remote),
        reason = reason.as_str(),
        %message,
        "call refused"
    );
    status(reason, message, &[]).into_http()
}

impl NodeSecurity {
    /// Who is calling, from the connection and the call's headers.
    pub(crate) fn authenticate(
        &self,
        info: Option<&ConnInfo>,
        headers: &http::HeaderMap,
    ) -> Result<Principal, AuthError> {
        if info.is_some_and(|i| i.plaintext_on_tls) {
            return Err(AuthError::PlaintextOnTls);
        }
        if let Some(PeerCert::Rejected(why)) = info.map(|i| &i.peer) {
            return Err(AuthError::BadCertificate(why.clone()));
        }
        if !self.auth_enabled() {
            return Ok(Principal::anonymous());
        }
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or(AuthError::Malformed)?;
            let tokens = self.tokens.as_ref().ok_or(AuthError::UnknownToken)?;
            return tokens.authenticate(token);
        }
        match info.map(|i| &i.peer) {
            Some(PeerCert::Verified(names)) => names
                .first()
                .map(|name| Principal {
                    name: name.clone(),
                    method: AuthMethod::Certificate,
                })
                .ok_or(AuthError::BadCertificate("no identity name".into())),
            _ => Err(AuthError::Missing),
        }
    }
}

impl NodeSecurity {
    /// The node calling the cluster listener (`None` on a plaintext cluster listener).
    fn authenticate_node(&self, info: Option<&ConnInfo>) -> Result<Option<PeerNode>, String> {
        if !self.cluster_is_secure() {
            return Ok(None);
        }
        let Some(info) = info else {
            return Err("no connection information".into());
        };
        if info.plaintext_on_tls {
            return Err(
                "the cluster listener speaks mutual TLS; the connection is plaintext".into(),
            );
        }
        match &info.peer {
            PeerCert::None => {
                Err("the cluster listener needs a node certificate (mutual TLS)".into())
            }
            PeerCert::Rejected(why) => Err(format!("node certificate rejected: {why}")),
            PeerCert::Verified(names) => match self.node_of(names) {
                Some(id) => Ok(Some(PeerNode(id))),
                None => Err(format!(
                    "certificate {names:?} is not the identity of a node of this cluster"
                )),
            },
        }
    }
}

/// Which listener a layer guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    /// Clients: authenticate, and serve only RPCs of the access table.
    Client,
    /// Other nodes: admit only configured nodes (when the listener is mutual TLS).
    Cluster,
}

impl NodeSecurity {
    /// Admits a call on `listener` (adding what it proved to its extensions), or answers the
    /// status that refuses it.
    fn admit<B>(&self, listener: Listener, req: &mut Request<B>) -> Result<(), (Reason, String)> {
        let info = req.extensions().get::<ConnInfo>().cloned();
        let path = req.uri().path();
        match listener {
            Listener::Client => {
                if path.starts_with(HEALTH_PREFIX) {
                    return Ok(());
                }
                let principal = self
                    .authenticate(info.as_ref(), req.headers())
                    .map_err(|e| (Reason::Unauthenticated, e.to_string()))?;
                // Fail closed: an RPC without an access rule is served to nobody.
                let rule = rpc_rule(path).ok_or_else(|| {
                    (
                        Reason::PermissionDenied,
                        format!("{path} has no access rule on this listener"),
                    )
                })?;
                req.extensions_mut().insert(principal);
                req.extensions_mut().insert(RpcPath(rule.path));
            }
            Listener::Cluster => {
                let peer = self
                    .authenticate_node(info.as_ref())
                    .map_err(|m| (Reason::Unauthenticated, m))?;
                if let Some(peer) = peer {
                    req.extensions_mut().insert(peer);
                }
            }
        }
        Ok(())
    }
}

/// The authentication layer of one listener.
#[derive(Debug, Clone)]
pub(crate) struct AuthLayer {
    pub(crate) security: Arc<NodeSecurity>,
    pub(crate) listener: Listener,
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<ResBody>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        match self.layer.security.admit(self.layer.listener, &mut req) {
            Ok(()) => Either::Right(self.inner.call(req)),
            Err((reason, message)) => {
                let info = req.extensions().get::<ConnInfo>();
                Either::Left(ready(Ok(refuse(reason, message, req.uri().path(), info))))
            }
        }
    }
}
