//! Clients in any language work from the `.proto` alone: gRPC health answers SERVING and
//! server reflection lists the Pyralog services.

use pyralog_e2e::TestNode;
use pyralog_proto::v1::{self, producer_client::ProducerClient};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection() {
    let node = TestNode::start();
    let channel = tonic::transport::Endpoint::from_shared(node.url().to_owned())
        .expect("url")
        .connect()
        .await
        .expect("connect");

    let mut health = HealthClient::new(channel.clone());
    for service in [
        "",
        "pyralog.v1.Producer",
        "pyralog.v1.Consumer",
        "pyralog.v1.Admin",
    ] {
        let resp = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner();
        assert_eq!(resp.status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("reflection")
        .into_inner();
    let msg = stream
        .message()
        .await
        .expect("reflection response")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in [
        "pyralog.v1.Producer",
        "pyralog.v1.Consumer",
        "pyralog.v1.Admin",
    ] {
        assert!(names.iter().any(|n| n == s), "{s} missing from {names:?}");
    }
}

fn to_missing_log() -> v1::ProduceRequest {
    v1::ProduceRequest {
        log: "nope".into(),
        acks: v1::AckPolicy::Leader as i32,
        payload: Some(v1::produce_request::Payload::Records(v1::RecordList {
            records: vec![v1::NewRecord {
                value: Some(bytes::Bytes::from_static(b"x")),
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

/// The value of the sample `line` (`name{labels}`) in a scrape, 0 when absent.
fn sample(body: &str, line: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_count_produce_and_errors() {
    let node = TestNode::start();
    let out = node.cli(&["logs", "create", "m"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = node.cli(&["produce", "m"], Some(b"a\nb\nc\n"));
    assert_eq!(out.code, Some(0), "{out:?}");

    // Failed calls, each answered a different way: by the handler (a log that does not
    // exist, twice), by the request check before it (no payload), inside a produce stream
    // that stays open, and by a service that is not Pyralog's (health of an unknown name).
    let channel = tonic::transport::Endpoint::from_shared(node.url().to_owned())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut producer = ProducerClient::new(channel.clone());
    for _ in 0..2 {
        let err = producer
            .produce(to_missing_log())
            .await
            .expect_err("no such log");
        assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    }
    let err = producer
        .produce(v1::ProduceRequest {
            log: "m".into(),
            ..Default::default()
        })
        .await
        .expect_err("no payload");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let mut answers = producer
        .produce_stream(tokio_stream::iter(vec![to_missing_log()]))
        .await
        .expect("stream")
        .into_inner();
    let answer = answers.message().await.expect("answer").expect("one");
    assert!(
        matches!(
            answer.result,
            Some(v1::produce_stream_response::Result::Error(_))
        ),
        "{answer:?}"
    );
    let err = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    let body = tokio::task::block_in_place(|| node.scrape_metrics());
    assert!(
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
        "{body}"
    );
    assert!(
        body.contains("pyralog_produced_records_total{log=\"m\"} 3"),
        "{body}"
    );
    assert!(body.contains("pyralog_produce_seconds_bucket"), "{body}");
    let errors = |rpc: &str, reason: &str| {
        sample(
            &body,
            &format!("pyralog_errors_total{{rpc=\"{rpc}\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(errors("produce", "LOG_NOT_FOUND"), 2.0, "{body}");
    assert_eq!(errors("produce", "INVALID_REQUEST"), 1.0, "{body}");
    assert_eq!(errors("produce_stream", "LOG_NOT_FOUND"), 1.0, "{body}");
    assert_eq!(errors("check", "NOT_FOUND"), 1.0, "{body}");
}
