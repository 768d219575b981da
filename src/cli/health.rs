//! `partnership-metrics health`: asks a server's `grpc.health.v1.Health/Check`, for
//! container health checks and scripts. Exits 0 only when the server is SERVING.

use anyhow::bail;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::configuration::HealthArgs;

pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let check = async {
        let mut client = HealthClient::new(args.client.connect().await?);
        let status =
            client.check(HealthCheckRequest { service: args.service.clone() }).await?.into_inner().status;
        anyhow::Ok(status)
    };
    let status =
        tokio::time::timeout(std::time::Duration::from_secs(args.timeout_secs), check).await.map_err(
            |_| anyhow::anyhow!("no answer from {} within {} s", args.client.target, args.timeout_secs),
        )??;
    match ServingStatus::try_from(status) {
        Ok(ServingStatus::Serving) => {
            println!("SERVING");
            Ok(())
        }
        Ok(other) => bail!("{}", other.as_str_name()),
        Err(_) => bail!("unknown serving status {status}"),
    }
}
