//! How client commands reach a server: plaintext or TLS (with the server's CA and,
//! for mutual TLS, a client certificate), and a bearer token on every call.

use std::path::Path;

use anyhow::Context;
use tonic::{
    metadata::{AsciiMetadataValue, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

use crate::configuration::ClientArgs;

/// Adds `authorization: Bearer <token>` to every call when there is a token.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    bearer: Option<AsciiMetadataValue>,
}

impl Credentials {
    pub fn none() -> Credentials {
        Credentials::default()
    }

    pub fn bearer(token: &str) -> anyhow::Result<Credentials> {
        let value = MetadataValue::try_from(format!("Bearer {}", token.trim()))
            .context("the token is not a valid header value")?;
        Ok(Credentials { bearer: Some(value) })
    }
}

impl Interceptor for Credentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(b) = &self.bearer {
            request.metadata_mut().insert("authorization", b.clone());
        }
        Ok(request)
    }
}

/// A connection to the server with the caller's credentials on every call.
pub type ApiChannel = InterceptedService<Channel, Credentials>;

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

/// The server a client command calls when it is given none.
pub const DEFAULT_TARGET: &str = "http://127.0.0.1:50051";

impl ClientArgs {
    /// Plain settings for `target`: no TLS material, no token.
    pub fn plain(target: &str) -> ClientArgs {
        ClientArgs { target: Some(target.to_string()), ..ClientArgs::default() }
    }

    /// The server's URL.
    pub fn target(&self) -> &str {
        self.target.as_deref().unwrap_or(DEFAULT_TARGET)
    }

    /// The bearer token given by `--token` or `--token-file`, if any.
    pub fn credentials(&self) -> anyhow::Result<Credentials> {
        match (&self.token, &self.token_file) {
            (Some(t), _) => Credentials::bearer(t),
            (None, Some(path)) => {
                let token = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the token file {}", path.display()))?;
                Credentials::bearer(&token)
            }
            (None, None) => Ok(Credentials::none()),
        }
    }

    /// Connects: TLS when the target is `https://` or TLS material is given.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let target = self.target();
        let mut endpoint =
            Channel::from_shared(target.to_string()).with_context(|| format!("bad target URL {target}"))?;
        let tls = target.starts_with("https://") || self.ca_cert.is_some() || self.client_cert.is_some();
        if tls {
            let mut config = ClientTlsConfig::new();
            if let Some(name) = &self.tls_server_name {
                config = config.domain_name(name.clone());
            }
            if let Some(ca) = &self.ca_cert {
                config = config.ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?));
            } else {
                config = config.with_enabled_roots();
            }
            if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
                config = config.identity(Identity::from_pem(
                    read(cert, "client certificate")?,
                    read(key, "client key")?,
                ));
            }
            endpoint = endpoint.tls_config(config).context("configuring TLS")?;
        }
        endpoint.connect().await.with_context(|| format!("connecting to {target}"))
    }

    /// Connects and attaches the credentials.
    pub async fn connect(&self) -> anyhow::Result<ApiChannel> {
        let credentials = self.credentials()?;
        Ok(InterceptedService::new(self.channel().await?, credentials))
    }
}

/// A failed call as one line a person can act on: the code's name, the `ErrorInfo`
/// reason, the message.
pub fn describe(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    let code = format!("{:?}", status.code());
    let mut name = String::new();
    for (i, c) in code.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    match status.get_error_details().error_info() {
        Some(info) if info.reason != name => format!("{name} ({}): {}", info.reason, status.message()),
        _ => format!("{name}: {}", status.message()),
    }
}
