//! `partnership-metrics health`: asks a server's `grpc.health.v1.Health/Check`, for
//! container health checks and scripts. Exits 0 only when the server is SERVING.

use anyhow::{Context, bail};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::configuration::{ClientArgs, HealthArgs};

pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let client_args = client_args(&args)?;
    let target = client_args.target().to_string();
    let check = async {
        let mut client = HealthClient::new(client_args.connect().await?);
        let status =
            client.check(HealthCheckRequest { service: args.service.clone() }).await?.into_inner().status;
        anyhow::Ok(status)
    };
    let status = tokio::time::timeout(std::time::Duration::from_secs(args.timeout_secs), check)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {target} within {} s", args.timeout_secs))??;
    match ServingStatus::try_from(status) {
        Ok(ServingStatus::Serving) => {
            println!("SERVING");
            Ok(())
        }
        Ok(other) => bail!("{}", other.as_str_name()),
        Err(_) => bail!("unknown serving status {status}"),
    }
}

/// The client settings, the target derived from the server's own settings when none
/// is given: its listen port on localhost, over TLS when it serves TLS. A container
/// runs the check beside the server with the server's environment, so PM_LISTEN and
/// PM_TLS_CERT are the truth about where it answers.
fn client_args(args: &HealthArgs) -> anyhow::Result<ClientArgs> {
    let mut client = args.client.clone();
    if client.target.is_none() {
        let port = args
            .listen
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .with_context(|| format!("no port in the listen address {:?}", args.listen))?;
        let scheme = if args.tls_cert.is_some() { "https" } else { "http" };
        // A host name, not 127.0.0.1, so a certificate issued for localhost verifies;
        // a server listening on a name or address of its own is reached through it.
        let host = match args.listen.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']'])) {
            Some("" | "0.0.0.0" | "::" | "127.0.0.1" | "::1" | "localhost") | None => "localhost".to_string(),
            Some(h) if h.contains(':') => format!("[{h}]"),
            Some(h) => h.to_string(),
        };
        client.target = Some(format!("{scheme}://{host}:{port}"));
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::configuration::{Cli, Command};

    fn derived(flags: &[&str]) -> String {
        let cli = Cli::try_parse_from([&["partnership-metrics", "health"], flags].concat()).unwrap();
        let Command::Health(args) = cli.command else { panic!("not health") };
        client_args(&args).unwrap().target().to_string()
    }

    #[test]
    fn without_a_target_the_check_follows_the_servers_listen_address_and_tls() {
        assert_eq!(derived(&["--listen", "0.0.0.0:6000"]), "http://localhost:6000");
        assert_eq!(derived(&["--listen", "[::]:6001", "--tls-cert", "/x.pem"]), "https://localhost:6001");
        assert_eq!(derived(&["--listen", "10.0.0.7:6002"]), "http://10.0.0.7:6002");
        assert_eq!(derived(&["--listen", "[fd00::7]:6003"]), "http://[fd00::7]:6003");
        assert_eq!(
            derived(&["--target", "https://pm.example:1", "--listen", "0.0.0.0:2"]),
            "https://pm.example:1"
        );
    }

    #[test]
    fn a_listen_address_without_a_port_is_an_error() {
        let cli = Cli::try_parse_from(["partnership-metrics", "health", "--listen", "localhost"]).unwrap();
        let Command::Health(args) = cli.command else { panic!("not health") };
        assert!(client_args(&args).unwrap_err().to_string().contains("no port"));
    }
}
