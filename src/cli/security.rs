//! `dev-credentials`, `token` and `audit verify`: trying the secure mode locally, and
//! checking the audit log.

use std::time::Duration;

use anyhow::Context;

use crate::{
    auth::dev::{self, DEV_AUDIENCE, DEV_ISSUER, files},
    configuration::{AuditVerifyArgs, DevCredentialsArgs, TokenArgs, redact_url},
    storage,
};

/// Writes development credentials and says how to use them.
pub fn dev_credentials(args: DevCredentialsArgs) -> anyhow::Result<()> {
    let written = dev::write_dev_credentials(
        &args.out,
        &args.agencies,
        &args.server_names,
        Duration::from_secs(args.ttl_hours * 3600),
    )?;
    for path in &written {
        eprintln!("wrote {}", path.display());
    }
    let d = args.out.display();
    println!(
        "Development credentials in {d} (never use them in production).\n\n\
         Serve with TLS and tokens:\n  partnership-metrics serve --tls-cert {d}/{} --tls-key {d}/{} \\\n    \
         --jwt-jwks {d}/{} --jwt-issuer {DEV_ISSUER} --jwt-audience {DEV_AUDIENCE}\n\
         (add --tls-client-ca {d}/{} to require client certificates)\n\n\
         Call it:\n  partnership-metrics demo --target https://localhost:50051 --ca-cert {d}/{} --dev-credentials {d}\n  \
         partnership-metrics report --target https://localhost:50051 --ca-cert {d}/{} \\\n    \
         --token-file {d}/{}/analyst.jwt --partnership eastmoor --period 2026Q3\n\n\
         More tokens: partnership-metrics token --credentials {d} --role reader --agency <agency id>",
        files::SERVER_CERT,
        files::SERVER_KEY,
        files::JWKS,
        files::CA_CERT,
        files::CA_CERT,
        files::CA_CERT,
        files::TOKENS_DIR,
    );
    Ok(())
}

/// Prints a token minted with a `dev-credentials` signing key.
pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    let sub = args.sub.clone().unwrap_or_else(|| match &args.agency {
        Some(a) => format!("dev-{a}"),
        None => format!("dev-{}", args.roles[0]),
    });
    let token = dev::mint_dev_token(
        &args.credentials,
        &sub,
        args.agency.as_deref(),
        &args.roles,
        Duration::from_secs(args.ttl_minutes * 60),
    )?;
    println!("{token}");
    Ok(())
}

/// Recomputes the audit chain; an error (non-zero exit) names the first bad entry.
pub async fn audit_verify(args: AuditVerifyArgs) -> anyhow::Result<()> {
    let summary = storage::verify_audit(&args.database_url)
        .await
        .with_context(|| format!("reading the audit log of {}", redact_url(&args.database_url)))?
        .map_err(|broken| anyhow::anyhow!("the audit log does not verify: {broken}"))?;
    println!(
        "audit log intact: {} entries; head {}",
        summary.entries,
        summary.head.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    Ok(())
}
