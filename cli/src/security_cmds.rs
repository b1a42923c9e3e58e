//! `pyralog acls`, `pyralog auth`, `pyralog certs`.

use std::io::Read;
use std::time::SystemTime;

use pyralog_gateway::security::certs::{init_cert_set, Validity};
use pyralog_gateway::security::tokens::{hash_token, new_token};
use pyralog_types::acl::{
    AclEntry, Operation, PatternKind, Permission, ResourceKind, ResourcePattern,
};

use crate::args::{AclSpec, AclsArgs, AclsCommand, AuthArgs, AuthCommand, CertsArgs, CertsCommand};
use crate::client_cmds::{connect, Target};
use crate::error::{CliError, CliResult};

/// The operations a flag names (`admin` = create, delete, alter).
fn operations(names: &[String]) -> Result<Vec<Operation>, CliError> {
    let mut out = Vec::new();
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if n == "admin" {
            out.extend([Operation::Create, Operation::Delete, Operation::Alter]);
            continue;
        }
        out.push(n.parse().map_err(|e| {
            CliError::usage(format!(
                "{e}: use produce, consume, describe, create, delete, alter, admin, group or cluster_admin"
            ))
        })?);
    }
    Ok(out)
}

/// The entries an `acls add|remove` names: one per (permission, operation).
pub(crate) fn entries(spec: &AclSpec) -> Result<Vec<AclEntry>, CliError> {
    let resource = match (&spec.log, &spec.log_prefix, &spec.group, &spec.group_prefix) {
        (Some(n), ..) => (ResourceKind::Log, PatternKind::Literal, n.clone()),
        (_, Some(p), ..) => (ResourceKind::Log, PatternKind::Prefix, p.clone()),
        (_, _, Some(n), _) => (ResourceKind::Group, PatternKind::Literal, n.clone()),
        (_, _, _, Some(p)) => (ResourceKind::Group, PatternKind::Prefix, p.clone()),
        _ => (ResourceKind::Cluster, PatternKind::Literal, String::new()),
    };
    let mut out = Vec::new();
    for (permission, names) in [
        (Permission::Allow, &spec.allow),
        (Permission::Deny, &spec.deny),
    ] {
        for operation in operations(names)? {
            let e = AclEntry {
                principal: spec.principal.clone(),
                permission,
                operation,
                resource: ResourcePattern {
                    kind: resource.0,
                    pattern: resource.1.clone(),
                    name: resource.2.clone(),
                },
            };
            e.validate().map_err(|e| CliError::usage(e.to_string()))?;
            out.push(e);
        }
    }
    if out.is_empty() {
        return Err(CliError::usage(
            "name at least one operation with --allow or --deny",
        ));
    }
    Ok(out)
}

pub(crate) async fn acls(server: &Target, args: AclsArgs) -> CliResult {
    match args.command {
        AclsCommand::Add(spec) => {
            let e = entries(&spec)?;
            connect(server).await?.create_acls(&e).await?;
            for e in &e {
                println!("added: {e}");
            }
        }
        AclsCommand::Remove(spec) => {
            let e = entries(&spec)?;
            connect(server).await?.delete_acls(&e).await?;
            for e in &e {
                println!("removed: {e}");
            }
        }
        AclsCommand::List { principal } => {
            let list = connect(server)
                .await?
                .list_acls(principal.as_deref())
                .await?;
            if list.is_empty() {
                println!("no ACL entries");
            }
            for e in list {
                println!("{e}");
            }
        }
    }
    Ok(())
}

pub(crate) async fn auth(server: &Target, args: AuthArgs) -> CliResult {
    match args.command {
        AuthCommand::Whoami => {
            let me = connect(server).await?.who_am_i().await?;
            println!(
                "{} (by {}{})",
                me.principal,
                me.method,
                if me.superuser { ", superuser" } else { "" }
            );
        }
        AuthCommand::NewToken { principal } => {
            if principal.is_empty() {
                return Err(CliError::usage("--principal must not be empty"));
            }
            let token = new_token().map_err(|e| CliError::runtime(e.to_string()))?;
            println!("token (give it to {principal}; it is not stored anywhere): {token}");
            println!(
                "tokens file entry: {}",
                serde_json::json!({"principal": principal, "sha256": hash_token(&token)})
            );
        }
        AuthCommand::HashToken => {
            let mut token = String::new();
            std::io::stdin().read_to_string(&mut token)?;
            let token = token.trim();
            if token.is_empty() {
                return Err(CliError::usage("no token on stdin"));
            }
            println!("{}", hash_token(token));
        }
    }
    Ok(())
}

pub(crate) fn certs(args: CertsArgs) -> CliResult {
    match args.command {
        CertsCommand::Init {
            dir,
            nodes,
            clients,
            ips,
            days,
        } => {
            if nodes == 0 || nodes > 100 {
                return Err(CliError::usage("--nodes must be 1..=100"));
            }
            let set = init_cert_set(
                &dir,
                nodes,
                "node-{id}",
                &clients,
                &ips,
                Validity::days_from(SystemTime::UNIX_EPOCH + since_epoch(), days),
            )
            .map_err(|e| CliError::usage(e.to_string()))?;
            println!("CA: {}", set.ca.display());
            for id in 1..=nodes {
                let (cert, key) = set.node_cert(id);
                println!("node {id}: {} {}", cert.display(), key.display());
            }
            for c in &clients {
                let (cert, key) = set.client_cert(c);
                println!("client {c}: {} {}", cert.display(), key.display());
            }
        }
    }
    Ok(())
}

/// Now, as time since the Unix epoch (the wall clock is what certificates are checked
/// against).
pub(crate) fn since_epoch() -> std::time::Duration {
    SystemTime::UNIX_EPOCH.elapsed().unwrap_or_default()
}
