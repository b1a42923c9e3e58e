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
