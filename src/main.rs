//! `partnership-metrics`: thin entry point; the work is in the library.

use anyhow::Context;
use clap::Parser;
use partnership_metrics::{
    cli,
    configuration::{AuditCommand, Cli, Command},
    startup::{Application, shutdown_signal},
    telemetry,
};

/// Runs the command; an error is one paragraph on standard error (what failed and
/// why, cause by cause), with a backtrace only when `PM_BACKTRACE=1` asks for one,
/// and exit status 1.
fn main() -> std::process::ExitCode {
    match run_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if std::env::var("PM_BACKTRACE").is_ok_and(|v| v == "1") {
                eprintln!("error: {e:?}");
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let workers = match &cli.command {
        Command::Serve(args) => args.worker_threads,
        _ => None,
    };
    let runtime = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Some(n) => {
            tokio::runtime::Builder::new_multi_thread().worker_threads(usize::from(n)).enable_all().build()
        }
        None => tokio::runtime::Builder::new_multi_thread().enable_all().build(),
    }
    .context("starting the tokio runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
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
        Command::Import(args) => cli::import::run(args).await,
        Command::Export(args) => cli::export::run(args).await,
        Command::Health(args) => cli::health::run(args).await,
        Command::DevCredentials(args) => cli::security::dev_credentials(args),
        Command::Token(args) => cli::security::token(args),
        Command::Audit(AuditCommand::Verify(args)) => cli::security::audit_verify(args).await,
    }
}
