//! The packaging files, checked without a container engine (issue 17): the `Dockerfile`, the
//! Kubernetes manifests in `deploy/kubernetes/` and the Grafana dashboard in `deploy/grafana/`.
//!
//! They are parsed and held to the node they package. Every pod of the two StatefulSets (the
//! controller voters and the brokers) gets the ConfigMap's `pyralog.toml` as the node's own
//! [`NodeConfig`] with what its environment and start script set (the script is run by `sh`,
//! with a stand-in `pyralog` that reports what it was started with), and must validate: the
//! controller pods are exactly the voters, the brokers learners with ids of their own that
//! advertise their own pod. The ports the containers and the image expose are exactly the
//! listeners that config opens, the probes ask gRPC health on the client listener, the
//! budgets and Services select the right pods, the README's commands (run against a stand-in
//! `kubectl`) create every Secret key the pods read, and every metric the dashboard charts is
//! one a running node exports.
//!
//! `support` reads and parses the files; each other module checks one of them.

mod dashboard;
mod dockerfile;
mod kubernetes;
mod secrets;
mod support;
