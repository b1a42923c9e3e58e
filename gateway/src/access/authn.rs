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

/// Authenticates every call on the client listener.
#[derive(Debug, Clone)]
pub(crate) struct ClientAuthLayer {
    pub(crate) security: Arc<NodeSecurity>,
}

impl<S> Layer<S> for ClientAuthLayer {
    type Service = ClientAuth<S>;
    fn layer(&self, inner: S) -> ClientAuth<S> {
        ClientAuth {
            inner,
            security: self.security.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ClientAuth<S> {
    inner: S,
    security: Arc<NodeSecurity>,
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
            Some(PeerCert::Verified(names)) => Ok(Principal {
                name: names[0].clone(),
                method: AuthMethod::Certificate,
            }),
            _ => Err(AuthError::Missing),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ClientAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<ResBody>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let path = req.uri().path().to_owned();
        if path.starts_with(HEALTH_PREFIX) {
            return Either::Right(self.inner.call(req));
        }
        let info = req.extensions().get::<ConnInfo>().cloned();
        let principal = match self.security.authenticate(info.as_ref(), req.headers()) {
            Ok(p) => p,
            Err(e) => {
                return Either::Left(ready(Ok(refuse(
                    Reason::Unauthenticated,
                    e.to_string(),
                    &path,
                    info.as_ref(),
                ))))
            }
        };
        let Some(rule) = rpc_rule(&path) else {
            // Fail closed: an RPC without an access rule is served to nobody.
            return Either::Left(ready(Ok(refuse(
                Reason::PermissionDenied,
                format!("{path} has no access rule on this listener"),
                &path,
                info.as_ref(),
            ))));
        };
        req.extensions_mut().insert(principal);
        req.extensions_mut().insert(RpcPath(rule.path));
        Either::Right(self.inner.call(req))
    }
}

/// Admits only configured nodes to the cluster listener (when it is mutual TLS).
#[derive(Debug, Clone)]
pub(crate) struct ClusterAuthLayer {
    pub(crate) security: Arc<NodeSecurity>,
}

impl<S> Layer<S> for ClusterAuthLayer {
    type Service = ClusterAuth<S>;
    fn layer(&self, inner: S) -> ClusterAuth<S> {
        ClusterAuth {
            inner,
            security: self.security.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ClusterAuth<S> {
    inner: S,
    security: Arc<NodeSecurity>,
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ClusterAuth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<ResBody>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let info = req.extensions().get::<ConnInfo>().cloned();
        match self.security.authenticate_node(info.as_ref()) {
            Ok(peer) => {
                if let Some(peer) = peer {
                    req.extensions_mut().insert(peer);
                }
                Either::Right(self.inner.call(req))
            }
            Err(message) => {
                let path = req.uri().path().to_owned();
                Either::Left(ready(Ok(refuse(
                    Reason::Unauthenticated,
                    message,
                    &path,
                    info.as_ref(),
                ))))
            }
        }
    }
}
