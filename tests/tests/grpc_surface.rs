//! Clients in any language work from the `.proto` alone: gRPC health answers SERVING and
//! server reflection lists the Pyralog services.

use pyralog_e2e::TestNode;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_count_produce_and_errors() {
    let node = TestNode::start();
    let out = node.cli(&["logs", "create", "m"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = node.cli(&["produce", "m"], Some(b"a\nb\nc\n"));
    assert_eq!(out.code, Some(0), "{out:?}");
    let _ = node.cli(&["consume", "nope", "--from-beginning"], None);

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
}
