//! `partnership-metrics`: thin entry point; the work is in the library.

use clap::Parser;
use partnership_metrics::{
    cli,
    configuration::{Cli, Command},
    startup::{Application, shutdown_signal},
    telemetry,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Inside the runtime: the OTLP exporter's channel needs one, and the guard must
    // flush before the runtime goes.
    let _telemetry = telemetry::init(cli.log_format)?;
    match cli.command {
        Command::Serve(args) => {
            let app = Application::build(args.into()).await?;
            app.run_until(shutdown_signal()).await
        }
        Command::Demo(args) => cli::demo(args).await,
        Command::Report(args) => cli::report::run(args).await,
        Command::Health(args) => cli::health::run(args).await,
    }
}
