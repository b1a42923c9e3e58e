//! `Producer.ProduceStream`: pipelined produce over one gRPC stream.
//!
//! A producer with one unary request in flight per partition waits a whole round trip, a
//! write and an fsync per batch, so its throughput is bound by latency, not by the disk.
//! Over a stream it keeps several batches in flight and order still holds, because the
//! handler splits each produce in two (see [`Node::produce_write`]):
//!
//! 1. **write**, one request at a time in arrival order: validate, check leadership and
//!    ACLs, append to the local log. This fixes the batch's offsets, so a stream's batches
//!    are stored in the order they were sent.
//! 2. **acknowledge**, concurrently for every written request: fsync (the partition's group
//!    commit lets one fsync cover the batches written meanwhile), then wait for the ISR as
//!    `acks` asks. Answers leave in request order ([`FuturesOrdered`]).
//!
//! At most `produce.max_in_flight_per_stream` requests are between 1 and their answer; the
//! handler reads no further until one is answered, so HTTP/2 flow control holds the sender
//! and a stream's memory is bounded by that many batches. A failed request is answered with
//! its status in the message ([`v1::ProduceError`]) and the stream goes on; a broken request
//! stream, a client that stops reading answers, or node shutdown ends it after the written
//! requests are answered.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::stream::{FuturesOrdered, StreamExt};
use pyralog_proto::v1::{self, produce_stream_response::Result as Answer};
use pyralog_security::Principal;
use pyralog_types::acl::{Operation, Resource};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::access::authz::RpcPath;
use crate::node::Node;
use crate::services::parse_produce;

pub(crate) type ProduceStream =
    Pin<Box<dyn futures::Stream<Item = Result<v1::ProduceStreamResponse, Status>> + Send>>;

type PendingAnswer = Pin<Box<dyn Future<Output = v1::ProduceStreamResponse> + Send>>;

/// Serves one `ProduceStream` call (see the module doc).
pub(crate) fn serve(
    node: Arc<Node>,
    request: Request<Streaming<v1::ProduceRequest>>,
) -> Result<Response<ProduceStream>, Status> {
    // The caller as authenticated at the call's start; each message is authorized against
    // the ACLs as they are when it arrives, so a revocation applies to an open stream.
    node.guard(&request)?;
    let identity = Identity {
        principal: request.extensions().get::<Principal>().cloned(),
        rpc: request.extensions().get::<RpcPath>().copied(),
    };
    let max_in_flight = node.config().produce.max_in_flight_per_stream.max(1) as usize;
    let incoming = request.into_inner();
    let (tx, rx) = mpsc::channel(max_in_flight);
    tokio::spawn(pump(node, identity, incoming, tx, max_in_flight));
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

/// Who is calling, to authorize each message of the stream.
#[derive(Clone)]
struct Identity {
    principal: Option<Principal>,
    rpc: Option<RpcPath>,
}

impl Identity {
    fn authorize(&self, node: &Node, log: &str) -> Result<(), Status> {
        let mut probe = Request::new(());
        if let Some(p) = &self.principal {
            probe.extensions_mut().insert(p.clone());
        }
        if let Some(rpc) = self.rpc {
            probe.extensions_mut().insert(rpc);
        }
        node.guard(&probe)?
            .check(Operation::Produce, Resource::Log(log))
    }
}

async fn pump(
    node: Arc<Node>,
    identity: Identity,
    mut incoming: Streaming<v1::ProduceRequest>,
    tx: mpsc::Sender<Result<v1::ProduceStreamResponse, Status>>,
    max_in_flight: usize,
) {
    let stop = node.shutdown_token().clone();
    let mut pending: FuturesOrdered<PendingAnswer> = FuturesOrdered::new();
    let mut reading = true;
    let mut end: Option<Status> = None;
    while reading || !pending.is_empty() {
        tokio::select! {
            // Answers first: they free room for more requests.
            biased;
            Some(answer) = pending.next(), if !pending.is_empty() => {
                if tx.send(Ok(answer)).await.is_err() {
                    // The client is gone; written requests still finish in the background
                    // of their partitions (their appends are not undone).
                    return;
                }
            }
            _ = stop.cancelled(), if reading => reading = false,
            next = incoming.message(), if reading && pending.len() < max_in_flight => {
                match next {
                    Ok(Some(req)) => pending.push_back(write(&node, &identity, req).await),
                    Ok(None) => reading = false,
                    Err(status) => {
                        reading = false;
                        end = Some(status);
                    }
                }
            }
        }
    }
    if let Some(status) = end {
        let _ = tx.send(Err(status)).await;
    }
}

/// Step 1 of the module doc for one request: returns the future of its answer.
async fn write(node: &Arc<Node>, identity: &Identity, req: v1::ProduceRequest) -> PendingAnswer {
    if let Err(status) = identity.authorize(node, &req.log) {
        return ready(error_answer(node, status));
    }
    let (log, partition, payload, acks, timeout) = match parse_produce(req) {
        Ok(parsed) => parsed,
        Err(e) => return ready(error_answer(node, e.into())),
    };
    match node
        .produce_write(&log, partition, payload, acks, timeout)
        .await
    {
        Ok(written) => {
            let node = node.clone();
            Box::pin(async move {
                match written.acknowledged().await {
                    Ok(done) => v1::ProduceStreamResponse {
                        result: Some(Answer::Ok(crate::services::produce_response(done))),
                    },
                    Err(e) => error_answer(&node, e.into()),
                }
            })
        }
        Err(e) => ready(error_answer(node, e.into())),
    }
}

fn ready(answer: v1::ProduceStreamResponse) -> PendingAnswer {
    Box::pin(std::future::ready(answer))
}

/// A status as a stream answer: what the trailers of a unary call would have carried.
fn error_answer(node: &Node, status: Status) -> v1::ProduceStreamResponse {
    crate::error_count::count_status(&node.metrics().errors, "produce_stream", &status);
    v1::ProduceStreamResponse {
        result: Some(Answer::Error(v1::ProduceError {
            code: status.code() as i32,
            message: status.message().to_owned(),
            details: status.details().to_vec().into(),
        })),
    }
}
