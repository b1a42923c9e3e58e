//! The stream layer: the outermost tower layer of both listeners, in front of authentication.
//!
//! - It counts each call as an open stream of its connection (from the call's start to the
//!   end of its response body), so the connection watchdog (`pyralog_security::activity`)
//!   never closes a connection that is serving a long-poll or a replication stream.
//! - It follows the gRPC framing of the request body (a 5-byte prefix: compressed flag and
//!   big-endian length, then the message) without copying it, and enforces two rules there:
//!   - A call whose request is a single message (every method but the client-streaming ones
//!     in [`CLIENT_STREAMING`]) is refused with `INVALID_ARGUMENT` (`INVALID_REQUEST`) as soon
//!     as a byte of a second message arrives; tonic would otherwise read and drop it.
//!   - A request message must arrive whole within `server.request_message_timeout` once it
//!     has started; for a single-message call the clock runs from the call's start to the end
//!     of its request body. A half-sent message is answered `DEADLINE_EXCEEDED` (`TIMEOUT`)
//!     instead of holding its stream forever.
//!
//! The refusal is an error of the request body, which tonic turns into the call's status.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use pyralog_proto::status::status;
use pyralog_security::activity::StreamGuard;
use pyralog_security::server::ConnInfo;
use pyralog_types::Reason;
use tokio::time::Sleep;
use tonic::body::Body;
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

/// Methods whose request is a stream of messages; every other method takes exactly one.
/// `client_streaming_methods_match_the_descriptors` checks this against the .proto files.
pub(crate) const CLIENT_STREAMING: &[&str] = &[
    "/pyralog.internal.v1.Replication/Fetch",
    "/pyralog.v1.Producer/ProduceStream",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// See the module doc.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamLimitLayer {
    pub(crate) message_timeout: Duration,
}

impl<S> Layer<S> for StreamLimitLayer {
    type Service = StreamLimit<S>;
    fn layer(&self, inner: S) -> StreamLimit<S> {
        StreamLimit {
            inner,
            message_timeout: self.message_timeout,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StreamLimit<S> {
    inner: S,
    message_timeout: Duration,
}

impl<S, ResBody> Service<Request<Body>> for StreamLimit<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Unpin + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let guard = req
            .extensions()
            .get::<ConnInfo>()
            .map(|info| info.activity.stream_started());
        let single = !CLIENT_STREAMING.contains(&req.uri().path());
        let timeout = self.message_timeout;
        let req = req.map(|body| Body::new(FramedRequest::new(body, single, timeout)));
        let call = self.inner.call(req);
        Box::pin(async move {
            let response = call.await?;
            Ok(response.map(|inner| {
                Body::new(GuardedBody {
                    inner,
                    _guard: guard,
                })
            }))
        })
    }
}

/// A response body that keeps its call counted as an open stream until it is dropped.
struct GuardedBody<B> {
    inner: B,
    _guard: Option<StreamGuard>,
}

impl<B: HttpBody + Unpin> HttpBody for GuardedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where the request body is in its gRPC framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `have` bytes of a 5-byte message prefix seen.
    Prefix { have: usize, len: [u8; 4] },
    /// `left` bytes of the current message still to come.
    Message { left: usize },
}

/// A request body checked against the rules of the module doc.
struct FramedRequest {
    inner: Body,
    single: bool,
    timeout: Duration,
    framing: Framing,
    messages: u64,
    /// Runs while a message is incomplete (for a single-message call: until the body ends).
    deadline: Option<Pin<Box<Sleep>>>,
    failed: bool,
}

impl FramedRequest {
    fn new(inner: Body, single: bool, timeout: Duration) -> FramedRequest {
        FramedRequest {
            inner,
            single,
            timeout,
            framing: Framing::Prefix {
                have: 0,
                len: [0; 4],
            },
            messages: 0,
            deadline: single.then(|| Box::pin(tokio::time::sleep(timeout))),
            failed: false,
        }
    }

    /// Follows the framing over `data`; an error when a single-message call gets a second.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            match &mut self.framing {
                Framing::Prefix { have, len } => {
                    if *have == 0 && self.single && self.messages >= 1 {
                        return Err(status(
                            Reason::InvalidRequest,
                            "this method takes exactly one request message; a second one was sent",
                            &[],
                        ));
                    }
                    if *have == 0 && !self.single {
                        self.deadline = Some(Box::pin(tokio::time::sleep(self.timeout)));
                    }
                    // Byte 0 is the compressed flag, bytes 1..5 the length.
                    let n = (5 - *have).min(data.len());
                    for (i, b) in data[..n].iter().enumerate() {
                        let at = *have + i;
                        if at >= 1 {
                            len[at - 1] = *b;
                        }
                    }
                    *have += n;
                    data = &data[n..];
                    if *have == 5 {
                        self.messages += 1;
                        let left = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX);
                        self.framing = Framing::Message { left };
                    }
                }
                Framing::Message { left } => {
                    let n = (*left).min(data.len());
                    *left -= n;
                    data = &data[n..];
                }
            }
            if self.framing == (Framing::Message { left: 0 }) {
                self.framing = Framing::Prefix {
                    have: 0,
                    len: [0; 4],
                };
                if !self.single {
                    self.deadline = None;
                }
            }
        }
        Ok(())
    }

    fn timed_out(&self) -> Status {
        let what = if self.single {
            "the request"
        } else {
            "a request message"
        };
        status(
            Reason::Timeout,
            format!(
                "{what} did not arrive whole within {} (server.request_message_timeout); \
                 the call was not executed",
                humantime_serde::re::humantime::format_duration(self.timeout)
            ),
            &[],
        )
    }
}

impl HttpBody for FramedRequest {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let data = data.clone();
                    if let Err(refused) = self.scan(&data) {
                        self.failed = true;
                        return Poll::Ready(Some(Err(refused)));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                self.deadline = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Pending => {
                let expired = self
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    self.failed = true;
                    return Poll::Ready(Some(Err(self.timed_out())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn message(len: usize) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len));
        m
    }

    fn body_of(chunks: Vec<Vec<u8>>) -> Body {
        let stream = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, Status>(Frame::data(Bytes::from(c)))),
        );
        Body::new(http_body_util::StreamBody::new(stream))
    }

    async fn read_all(body: FramedRequest) -> Result<usize, Status> {
        let collected = body.collect().await?;
        Ok(collected.to_bytes().len())
    }

    #[tokio::test]
    async fn one_message_in_any_split_passes() {
        let m = message(300);
        for cut in 0..m.len() {
            let body = body_of(vec![m[..cut].to_vec(), m[cut..].to_vec()]);
            let n = read_all(FramedRequest::new(body, true, Duration::from_secs(5)))
                .await
                .expect("one message");
            assert_eq!(n, m.len());
        }
    }

    #[tokio::test]
    async fn a_second_message_of_a_single_message_call_is_refused() {
        let mut two = message(10);
        two.extend(message(0));
        let e = read_all(FramedRequest::new(
            body_of(vec![two]),
            true,
            Duration::from_secs(5),
        ))
        .await
        .expect_err("two messages");
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        let stream = read_all(FramedRequest::new(
            body_of(vec![message(10), message(0), message(3)]),
            false,
            Duration::from_secs(5),
        ))
        .await;
        assert!(stream.is_ok(), "a client-streaming call takes many");
    }

    #[tokio::test]
    async fn a_half_sent_message_times_out() {
        let m = message(100);
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Frame<Bytes>, Status>>();
        tx.unbounded_send(Ok(Frame::data(Bytes::from(m[..50].to_vec()))))
            .expect("send");
        let body = Body::new(http_body_util::StreamBody::new(rx));
        let started = std::time::Instant::now();
        let e = read_all(FramedRequest::new(body, false, Duration::from_millis(100)))
            .await
            .expect_err("half a message");
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(tx);
    }

    #[test]
    fn client_streaming_methods_match_the_descriptors() {
        use prost::Message;
        let set = prost_types::FileDescriptorSet::decode(pyralog_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut streaming = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    if method.client_streaming() {
                        streaming.push(format!(
                            "/{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
        assert!(!streaming.is_empty());
        for path in &streaming {
            assert!(
                CLIENT_STREAMING.contains(&path.as_str()),
                "{path} is client-streaming but not listed"
            );
        }
    }
}
