//! `proto/service_config.json`, the retry policy shipped for generated clients, parses as a
//! gRPC service config and names only services and methods of the public API; it retries
//! exactly the code Pyralog uses for retriable refusals.

use prost::Message;
use pyralog_proto::status::code_for;
use pyralog_types::Reason;
use serde_json::Value;

const CONFIG: &str = include_str!("../service_config.json");

/// Every `(service, methods)` of the public `.proto`.
fn public_api() -> Vec<(String, Vec<String>)> {
    let fds = prost_types::FileDescriptorSet::decode(pyralog_proto::PUBLIC_FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    fds.file
        .iter()
        .flat_map(|f| {
            let package = f.package().to_owned();
            f.service.iter().map(move |s| {
                (
                    format!("{package}.{}", s.name()),
                    s.method.iter().map(|m| m.name().to_owned()).collect(),
                )
            })
        })
        .collect()
}

fn seconds(v: &Value, field: &str) -> f64 {
    let s = v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is a string"));
    s.strip_suffix('s')
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{field} = {s:?} is not a duration like \"0.05s\""))
}

#[test]
fn service_config_names_real_services_and_retries_only_unavailable() {
    let config: Value = serde_json::from_str(CONFIG).expect("valid JSON");
    let api = public_api();
    let method_configs = config["methodConfig"]
        .as_array()
        .expect("methodConfig list");
    assert!(!method_configs.is_empty());
    let mut covered = Vec::new();
    for mc in method_configs {
        for name in mc["name"].as_array().expect("name list") {
            let service = name["service"].as_str().expect("service");
            let (_, methods) = api
                .iter()
                .find(|(s, _)| s == service)
                .unwrap_or_else(|| panic!("{service} is not a public service: {api:?}"));
            if let Some(method) = name.get("method") {
                let method = method.as_str().expect("method is a string");
                assert!(
                    methods.iter().any(|m| m == method),
                    "{service}/{method} does not exist"
                );
            }
            covered.push(service.to_owned());
        }
        let retry = &mc["retryPolicy"];
        let attempts = retry["maxAttempts"].as_u64().expect("maxAttempts");
        assert!((2..=5).contains(&attempts), "gRPC caps maxAttempts at 5");
        let (initial, max) = (
            seconds(retry, "initialBackoff"),
            seconds(retry, "maxBackoff"),
        );
        assert!(initial > 0.0 && initial <= max, "{initial} <= {max}");
        assert!(retry["backoffMultiplier"].as_f64().expect("multiplier") > 0.0);
        let codes: Vec<&str> = retry["retryableStatusCodes"]
            .as_array()
            .expect("codes")
            .iter()
            .map(|c| c.as_str().expect("code name"))
            .collect();
        assert_eq!(codes, ["UNAVAILABLE"]);
    }
    for (service, _) in &api {
        assert!(covered.contains(service), "{service} has no retry policy");
    }
    // What the policy retries is what the server uses for retriable refusals.
    assert_eq!(code_for(Reason::NotLeader), tonic::Code::Unavailable);
}
