//! `pyralog_errors_total{rpc, reason}`: every call the client listener answers with an error.
//!
//! Counting where each handler maps its error missed every other way a call fails: a refused
//! authentication or ACL check, a request that does not parse, a log that does not exist when
//! a handler returns through `?`. This layer sits just inside the stream limits, so it sees
//! every call's answer whoever produced it: a failed call's `grpc-status` is in the response
//! headers (a trailers-only answer) or in the trailers at the end of a streamed body. The
//! reason is Pyralog's `pyralog-reason` header when the status carries one, else the gRPC
//! code (`UNIMPLEMENTED`, `RESOURCE_EXHAUSTED`, ...). The RPC label is the method's name in
//! snake case (`produce`, `create_acls`, `check` for health).
//!
//! `ProduceStream` answers a failed request inside the stream (`ProduceError`) and keeps the
//! stream open: those answers are counted where they are made ([`count_status`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use pyralog_proto::status::REASON_METADATA_KEY;
use tonic::Code;
use tower_layer::Layer;
use tower_service::Service;

use crate::metrics::ErrorLabels;

/// The errors counter, by RPC and reason.
pub(crate) type Errors = Family<ErrorLabels, Counter>;

/// Counts error answers of the services it wraps into [`Errors`].
#[derive(Debug, Clone)]
pub(crate) struct ErrorCountLayer {
    pub(crate) errors: Errors,
}

impl<S> Layer<S> for ErrorCountLayer {
    type Service = ErrorCount<S>;
    fn layer(&self, inner: S) -> ErrorCount<S> {
        ErrorCount {
            inner,
            errors: self.errors.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ErrorCount<S> {
    inner: S,
    errors: Errors,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ErrorCount<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<CountedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let rpc = rpc_label(req.uri().path());
        let errors = self.errors.clone();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let res = answer.await?;
            // A trailers-only answer: the status is in the headers and the body is empty.
            let watch = if count_headers(&errors, &rpc, res.headers()) {
                None
            } else {
                Some((errors, rpc))
            };
            Ok(res.map(|inner| CountedBody { inner, watch }))
        })
    }
}

/// A response body that counts a failed status found in its trailers.
#[derive(Debug)]
pub(crate) struct CountedBody<B> {
    inner: B,
    /// What to count into, until the trailers are seen (`None`: already counted or done).
    watch: Option<(Errors, String)>,
}

impl<B> Body for CountedBody<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let (Some(trailers), Some((errors, rpc))) = (frame.trailers_ref(), &this.watch) {
                count_headers(errors, rpc, trailers);
                this.watch = None;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Counts the status in `headers` if it is a failure; whether `headers` held a status.
fn count_headers(errors: &Errors, rpc: &str, headers: &HeaderMap) -> bool {
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return false;
    };
    let code = Code::from_i32(code);
    if code != Code::Ok {
        let reason = headers
            .get(REASON_METADATA_KEY)
            .and_then(|v| v.to_str().ok());
        count(errors, rpc, code, reason);
    }
    true
}

/// Counts a failed answer made inside a stream (see the module doc).
pub(crate) fn count_status(errors: &Errors, rpc: &str, status: &tonic::Status) {
    let reason = status
        .metadata()
        .get(REASON_METADATA_KEY)
        .and_then(|v| v.to_str().ok());
    count(errors, rpc, status.code(), reason);
}

fn count(errors: &Errors, rpc: &str, code: Code, reason: Option<&str>) {
    // Bounded label values: a reason is one of Pyralog's names, or a gRPC code's.
    let reason = match reason.and_then(pyralog_types::Reason::parse) {
        Some(r) => r.as_str().to_owned(),
        None => screaming(&format!("{code:?}")),
    };
    errors
        .get_or_create(&ErrorLabels {
            rpc: rpc.to_owned(),
            reason,
        })
        .inc();
}

/// `/pyralog.v1.Producer/ProduceStream` → `produce_stream`. Only paths the server routes to
/// a service reach a handler, but any path reaches this layer: an unknown one (answered
/// `UNIMPLEMENTED`) is `unknown`, so a client cannot mint label values.
fn rpc_label(path: &str) -> String {
    const KNOWN_SERVICES: &[&str] = &[
        "pyralog.v1.Producer",
        "pyralog.v1.Consumer",
        "pyralog.v1.Admin",
        "pyralog.v1.Groups",
        "pyralog.v1.Security",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (Some(service), Some(method)) = (parts.next(), parts.next()) else {
        return "unknown".into();
    };
    if !KNOWN_SERVICES.contains(&service)
        || method.is_empty()
        || method.len() > 64
        || !method.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return "unknown".into();
    }
    snake(method)
}

/// `ProduceStream` → `produce_stream`.
fn snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `InvalidArgument` → `INVALID_ARGUMENT`.
fn screaming(camel: &str) -> String {
    snake(camel).to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_labels_are_method_names_in_snake_case_and_unknown_paths_are_one_label() {
        assert_eq!(rpc_label("/pyralog.v1.Producer/Produce"), "produce");
        assert_eq!(
            rpc_label("/pyralog.v1.Producer/ProduceStream"),
            "produce_stream"
        );
        assert_eq!(rpc_label("/pyralog.v1.Security/CreateAcls"), "create_acls");
        assert_eq!(rpc_label("/grpc.health.v1.Health/Check"), "check");
        for odd in [
            "/",
            "",
            "/pyralog.v1.Producer/",
            "/pyralog.v1.Raft/Vote",
            "/x.Y/Z",
            "/pyralog.v1.Producer/Pro-duce",
            "/pyralog.v1.Producer/a/b",
        ] {
            assert_eq!(rpc_label(odd), "unknown", "{odd:?}");
        }
    }

    #[test]
    fn statuses_count_by_pyralog_reason_or_else_by_grpc_code() {
        let errors = Errors::default();
        let mut headers = HeaderMap::new();
        assert!(!count_headers(&errors, "produce", &headers), "no status");
        headers.insert("grpc-status", "0".parse().expect("header"));
        assert!(count_headers(&errors, "produce", &headers));
        headers.insert("grpc-status", "5".parse().expect("header"));
        headers.insert(
            REASON_METADATA_KEY,
            "LOG_NOT_FOUND".parse().expect("header"),
        );
        count_headers(&errors, "produce", &headers);
        headers.insert(REASON_METADATA_KEY, "MADE_UP".parse().expect("header"));
        count_headers(&errors, "produce", &headers);
        headers.remove(REASON_METADATA_KEY);
        headers.insert("grpc-status", "12".parse().expect("header"));
        count_headers(&errors, "produce", &headers);
        let get = |reason: &str| {
            errors
                .get_or_create(&ErrorLabels {
                    rpc: "produce".into(),
                    reason: reason.into(),
                })
                .get()
        };
        assert_eq!(get("LOG_NOT_FOUND"), 1);
        assert_eq!(
            get("NOT_FOUND"),
            1,
            "an unknown reason falls back to the code"
        );
        assert_eq!(get("UNIMPLEMENTED"), 1);
        assert_eq!(get("OK"), 0, "success is not an error");
    }
}
