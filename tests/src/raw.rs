//! Malformed and hand-made gRPC calls: a codec that sends arbitrary bytes, and the outcome
//! of a call made on a bare HTTP/2 connection.

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

#[derive(Debug, Default, Clone)]
pub struct RawCodec;

#[derive(Debug, Default, Clone)]
pub struct RawEncoder;

#[derive(Debug, Default, Clone)]
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

/// Sends `body` as the request message of gRPC method `path` (e.g.
/// `/pyralog.v1.Producer/Produce`).
pub async fn call(url: &str, path: &'static str, body: Bytes) -> Result<Bytes, Status> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|e| Status::internal(e.to_string()))?
        .connect()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let resp = grpc
        .unary(
            tonic::Request::new(body),
            tonic::codegen::http::uri::PathAndQuery::from_static(path),
            RawCodec,
        )
        .await?;
    Ok(resp.into_inner())
}

/// What a call made on a bare HTTP/2 connection was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcOutcome {
    /// `grpc-status` (`"4"` is DEADLINE_EXCEEDED).
    pub code: Option<String>,
    /// `pyralog-reason`, absent on statuses the node did not make (e.g. tonic's own).
    pub reason: Option<String>,
    /// `grpc-message`.
    pub message: String,
}

/// The outcome of the call whose response is `response`, from its headers (a trailers-only
/// answer) or its trailers; an error if the connection or stream failed first.
pub async fn grpc_outcome(response: h2::client::ResponseFuture) -> Result<GrpcOutcome, h2::Error> {
    let response = response.await?;
    let pick =
        |h: &http::HeaderMap, k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let outcome = |h: &http::HeaderMap| GrpcOutcome {
        code: pick(h, "grpc-status"),
        reason: pick(h, "pyralog-reason"),
        message: pick(h, "grpc-message").unwrap_or_default(),
    };
    if response.headers().contains_key("grpc-status") {
        return Ok(outcome(response.headers()));
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        chunk?;
    }
    let trailers = body.trailers().await?.unwrap_or_default();
    Ok(outcome(&trailers))
}
