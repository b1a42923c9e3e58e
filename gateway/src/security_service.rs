//! The `Security` gRPC service: who am I, and ACL management (controller state in cluster
//! mode, so entries replicate and survive failover).

use std::sync::Arc;

use pyralog_proto::status::status;
use pyralog_proto::v1::{self, security_server::Security};
use pyralog_types::acl::{AclEntry, Operation, Resource, MAX_ACL_ENTRIES};
use pyralog_types::Reason;
use tonic::{Request, Response, Status};

use crate::node::Node;

#[derive(Debug, Clone)]
pub(crate) struct SecurityService {
    node: Arc<Node>,
}

impl SecurityService {
    pub(crate) fn new(node: Arc<Node>) -> Self {
        SecurityService { node }
    }

    /// Adds (or removes) the entries, after validating them all; each change is audited.
    async fn alter(&self, wire: Vec<v1::AclEntry>, adding: bool) -> Result<(), Status> {
        let changed = entries(wire)?;
        let what = if adding { "added" } else { "removed" };
        for e in &changed {
            tracing::info!(target: "pyralog::audit", entry = %e, "ACL entry {what}");
        }
        let (add, remove) = if adding {
            (changed, Vec::new())
        } else {
            (Vec::new(), changed)
        };
        self.node
            .alter_acls(add, remove)
            .await
            .map_err(Status::from)
    }
}

/// Wire entries to domain entries, each validated; the first bad one is named.
fn entries(wire: Vec<v1::AclEntry>) -> Result<Vec<AclEntry>, Status> {
    if wire.is_empty() || wire.len() > MAX_ACL_ENTRIES {
        return Err(status(
            Reason::InvalidRequest,
            format!("give 1..={MAX_ACL_ENTRIES} ACL entries"),
            &[],
        ));
    }
    wire.into_iter()
        .enumerate()
        .map(|(i, e)| {
            AclEntry::try_from(e)
                .map_err(|e| status(Reason::InvalidRequest, format!("entry {i}: {e}"), &[]))
        })
        .collect()
}

#[tonic::async_trait]
impl Security for SecurityService {
    async fn who_am_i(
        &self,
        request: Request<v1::WhoAmIRequest>,
    ) -> Result<Response<v1::WhoAmIResponse>, Status> {
        let guard = self.node.guard(&request)?;
        Ok(Response::new(v1::WhoAmIResponse {
            principal: guard.principal().name.clone(),
            method: guard.principal().method.as_str().to_owned(),
            superuser: guard.is_superuser(),
        }))
    }

    async fn create_acls(
        &self,
        request: Request<v1::CreateAclsRequest>,
    ) -> Result<Response<v1::CreateAclsResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::ClusterAdmin, Resource::Cluster)?;
        self.alter(request.into_inner().entries, true).await?;
        Ok(Response::new(v1::CreateAclsResponse {}))
    }

    async fn delete_acls(
        &self,
        request: Request<v1::DeleteAclsRequest>,
    ) -> Result<Response<v1::DeleteAclsResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::ClusterAdmin, Resource::Cluster)?;
        self.alter(request.into_inner().entries, false).await?;
        Ok(Response::new(v1::DeleteAclsResponse {}))
    }

    async fn list_acls(
        &self,
        request: Request<v1::ListAclsRequest>,
    ) -> Result<Response<v1::ListAclsResponse>, Status> {
        self.node
            .guard(&request)?
            .check(Operation::ClusterAdmin, Resource::Cluster)?;
        let principal = request.into_inner().principal;
        let acls = self.node.acl_entries();
        let entries = acls
            .entries()
            .iter()
            .filter(|e| principal.is_empty() || e.principal == principal || e.principal == "*")
            .map(v1::AclEntry::from)
            .collect();
        Ok(Response::new(v1::ListAclsResponse { entries }))
    }
}
