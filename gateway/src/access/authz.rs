//! Authorization: the access table of every client RPC, and the per-request [`Guard`] that
//! handlers ask about the resources a request names.
//!
//! The table is the single list of client RPCs: the client layer refuses any path that is not
//! in it (so a new RPC is served to nobody until it gets a rule), a unit test checks it
//! against the public `.proto` services, and the end-to-end ACL matrix is generated from it.

use pyralog_security::Principal;
use pyralog_types::acl::{allowed_somewhere, decide, Decision, Operation, Resource, ResourceKind};
use tonic::{Request, Status};

use super::NodeSecurity;
use crate::metadata::Acls;
use pyralog_proto::status::status;
use pyralog_types::Reason;

/// What an RPC needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `operation` on each resource of this kind that the request names.
    On(Operation, ResourceKind),
    /// `operation` on at least one resource of this kind (calls that name none).
    Somewhere(Operation, ResourceKind),
    /// Any authenticated principal; results are filtered to what `operation` allows on each.
    Filtered(Operation, ResourceKind),
    /// Any authenticated principal.
    Authenticated,
}

/// One client RPC's access rule.
#[derive(Debug, Clone, Copy)]
pub struct RpcRule {
    pub path: &'static str,
    pub need: Need,
}

const fn rule(path: &'static str, need: Need) -> RpcRule {
    RpcRule { path, need }
}

use Operation as Op;
use ResourceKind as Kind;

/// Every RPC of the client listener. Requests that also touch logs (joining a group,
/// committing offsets) check `consume` on those logs in the handler.
pub const CLIENT_RPCS: &[RpcRule] = &[
    rule(
        "/pyralog.v1.Producer/Produce",
        Need::On(Op::Produce, Kind::Log),
    ),
    // Each message of the stream is checked for `produce` on its log.
    rule(
        "/pyralog.v1.Producer/ProduceStream",
        Need::On(Op::Produce, Kind::Log),
    ),
    rule(
        "/pyralog.v1.Producer/InitProducer",
        Need::Somewhere(Op::Produce, Kind::Log),
    ),
    rule(
        "/pyralog.v1.Consumer/Fetch",
        Need::On(Op::Consume, Kind::Log),
    ),
    rule(
        "/pyralog.v1.Consumer/ListOffsets",
        Need::On(Op::Describe, Kind::Log),
    ),
    rule(
        "/pyralog.v1.Admin/CreateLog",
        Need::On(Op::Create, Kind::Log),
    ),
    rule(
        "/pyralog.v1.Admin/ListLogs",
        Need::Filtered(Op::Describe, Kind::Log),
    ),
    rule(
        "/pyralog.v1.Admin/DescribeLog",
        Need::On(Op::Describe, Kind::Log),
    ),
    rule(
        "/pyralog.v1.Admin/DeleteLog",
        Need::On(Op::Delete, Kind::Log),
    ),
    rule(
        "/pyralog.v1.Admin/AddPartitions",
        Need::On(Op::Alter, Kind::Log),
    ),
    rule(
        "/pyralog.v1.Admin/RollSegments",
        Need::On(Op::Alter, Kind::Log),
    ),
    rule(
        "/pyralog.v1.Admin/RunCompaction",
        Need::On(Op::Alter, Kind::Log),
    ),
    rule(
        "/pyralog.v1.Admin/CompactionStatus",
        Need::On(Op::Describe, Kind::Log),
    ),
    // Node addresses are what every client needs to route (Kafka's metadata request).
    rule("/pyralog.v1.Admin/DescribeCluster", Need::Authenticated),
    rule(
        "/pyralog.v1.Admin/RepairPartition",
        Need::On(Op::Alter, Kind::Log),
    ),
    rule(
        "/pyralog.v1.Admin/ReassignPartitions",
        Need::On(Op::ClusterAdmin, Kind::Cluster),
    ),
    rule(
        "/pyralog.v1.Admin/DecommissionNode",
        Need::On(Op::ClusterAdmin, Kind::Cluster),
    ),
    rule(
        "/pyralog.v1.Groups/JoinGroup",
        Need::On(Op::Group, Kind::Group),
    ),
    rule(
        "/pyralog.v1.Groups/SyncGroup",
        Need::On(Op::Group, Kind::Group),
    ),
    rule(
        "/pyralog.v1.Groups/Heartbeat",
        Need::On(Op::Group, Kind::Group),
    ),
    rule(
        "/pyralog.v1.Groups/LeaveGroup",
        Need::On(Op::Group, Kind::Group),
    ),
    rule(
        "/pyralog.v1.Groups/CommitOffsets",
        Need::On(Op::Group, Kind::Group),
    ),
    rule(
        "/pyralog.v1.Groups/FetchOffsets",
        Need::On(Op::Describe, Kind::Group),
    ),
    rule(
        "/pyralog.v1.Groups/ListGroups",
        Need::Filtered(Op::Describe, Kind::Group),
    ),
    rule(
        "/pyralog.v1.Groups/DescribeGroup",
        Need::On(Op::Describe, Kind::Group),
    ),
    rule(
        "/pyralog.v1.Groups/ResetOffsets",
        Need::On(Op::Alter, Kind::Group),
    ),
    rule(
        "/pyralog.v1.Groups/DeleteGroup",
        Need::On(Op::Delete, Kind::Group),
    ),
    rule("/pyralog.v1.Security/WhoAmI", Need::Authenticated),
    rule(
        "/pyralog.v1.Security/CreateAcls",
        Need::On(Op::ClusterAdmin, Kind::Cluster),
    ),
    rule(
        "/pyralog.v1.Security/DeleteAcls",
        Need::On(Op::ClusterAdmin, Kind::Cluster),
    ),
    rule(
        "/pyralog.v1.Security/ListAcls",
        Need::On(Op::ClusterAdmin, Kind::Cluster),
    ),
    // Reflection describes the public API only; any authenticated principal may read it.
    rule(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Need::Authenticated,
    ),
    rule(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        Need::Authenticated,
    ),
];

/// The access rule of a path, if it has one.
pub fn rpc_rule(path: &str) -> Option<&'static RpcRule> {
    CLIENT_RPCS.iter().find(|r| r.path == path)
}

/// The RPC a request is for, set by the client layer (for audit lines).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RpcPath(pub(crate) &'static str);

/// One request's view of the ACLs: its principal and the entries as they are now.
pub(crate) struct Guard<'a> {
    security: &'a NodeSecurity,
    principal: Principal,
    rpc: &'static str,
    acls: Option<Acls>,
}

impl NodeSecurity {
    /// The guard for `request`: its principal (set by the client layer; a request that did
    /// not pass the layer, as in tests that drive services directly, is anonymous and allowed
    /// only while auth is off).
    pub(crate) fn guard<'a, T>(
        &'a self,
        request: &Request<T>,
        acls: impl FnOnce() -> Acls,
    ) -> Result<Guard<'a>, Status> {
        let rpc = request.extensions().get::<RpcPath>().map_or("?", |p| p.0);
        let principal = match request.extensions().get::<Principal>() {
            Some(p) => p.clone(),
            None if !self.auth_enabled() => Principal::anonymous(),
            None => {
                return Err(status(
                    Reason::Unauthenticated,
                    "the call was not authenticated",
                    &[],
                ))
            }
        };
        let acls = self.auth_enabled().then(acls);
        Ok(Guard {
            security: self,
            principal,
            rpc,
            acls,
        })
    }
}

impl Guard<'_> {
    pub(crate) fn principal(&self) -> &Principal {
        &self.principal
    }

    fn decision(&self, op: Operation, resource: &Resource<'_>) -> Decision {
        match &self.acls {
            None => Decision::Allowed { superuser: false },
            Some(acls) => decide(
                acls.entries(),
                &self.security.settings.auth.superusers,
                &self.principal.name,
                op,
                resource,
            ),
        }
    }

    /// Refuses with `PERMISSION_DENIED` unless the principal may do `op` on `resource`.
    /// Administrative actions that are allowed are audited too.
    pub(crate) fn check(&self, op: Operation, resource: Resource<'_>) -> Result<(), Status> {
        let decision = self.decision(op, &resource);
        if decision.is_allowed() {
            if matches!(
                op,
                Operation::Create | Operation::Delete | Operation::Alter | Operation::ClusterAdmin
            ) {
                tracing::info!(target: "pyralog::audit", principal = %self.principal.name,
                    method = self.principal.method.as_str(), rpc = self.rpc,
                    operation = %op, resource = %resource, "allowed");
            }
            return Ok(());
        }
        let why = match &decision {
            Decision::Denied(entry) => format!("denied by the ACL entry \"{entry}\""),
            _ => "no ACL entry allows it".to_owned(),
        };
        tracing::warn!(target: "pyralog::audit", principal = %self.principal.name,
            method = self.principal.method.as_str(), rpc = self.rpc,
            operation = %op, resource = %resource, reason = %why, "denied");
        Err(status(
            Reason::PermissionDenied,
            format!("{} may not {op} {resource}: {why}", self.principal.name),
            &[
                ("operation", op.to_string()),
                ("resource", resource.to_string()),
            ],
        ))
    }

    /// Like [`Guard::check`], for a call that names no resource.
    pub(crate) fn check_somewhere(&self, op: Operation, kind: ResourceKind) -> Result<(), Status> {
        let Some(acls) = &self.acls else {
            return Ok(());
        };
        if allowed_somewhere(
            acls.entries(),
            &self.security.settings.auth.superusers,
            &self.principal.name,
            op,
            kind,
        ) {
            return Ok(());
        }
        tracing::warn!(target: "pyralog::audit", principal = %self.principal.name,
            rpc = self.rpc, operation = %op, "denied");
        Err(status(
            Reason::PermissionDenied,
            format!(
                "{} may not {op} any {}: no ACL entry allows it",
                self.principal.name,
                kind.as_str()
            ),
            &[("operation", op.to_string())],
        ))
    }

    /// Whether the principal may do `op` on `resource` (for filtering lists; not audited).
    pub(crate) fn allows(&self, op: Operation, resource: Resource<'_>) -> bool {
        self.decision(op, &resource).is_allowed()
    }

    pub(crate) fn is_superuser(&self) -> bool {
        self.security.is_superuser(&self.principal.name)
    }

    /// Passes only a superuser (anyone while authentication is off): the check of
    /// break-glass operations, e.g. deleting a ledger log.
    pub(crate) fn check_superuser(&self, what: &str) -> Result<(), Status> {
        if self.acls.is_none() || self.is_superuser() {
            return Ok(());
        }
        tracing::warn!(target: "pyralog::audit", principal = %self.principal.name,
            rpc = self.rpc, what, "denied: superuser only");
        Err(status(
            Reason::PermissionDenied,
            format!(
                "{} may not {what}: only a superuser may",
                self.principal.name
            ),
            &[],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Every method of every public service has an access rule, and every rule names a real
    /// method (or reflection): a new RPC cannot ship unguarded.
    #[test]
    fn every_public_rpc_has_exactly_one_rule() {
        let fds = prost_types::FileDescriptorSet::decode(pyralog_proto::PUBLIC_FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut methods = Vec::new();
        for file in &fds.file {
            for service in &file.service {
                for m in &service.method {
                    methods.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        m.name()
                    ));
                }
            }
        }
        assert!(methods.len() > 20, "{methods:?}");
        for m in &methods {
            assert!(rpc_rule(m).is_some(), "{m} has no access rule");
        }
        for r in CLIENT_RPCS {
            let n = CLIENT_RPCS.iter().filter(|o| o.path == r.path).count();
            assert_eq!(n, 1, "{} has {n} rules", r.path);
            assert!(
                methods.iter().any(|m| m == r.path) || r.path.contains("ServerReflection"),
                "{} is not a public RPC",
                r.path
            );
        }
    }
}
