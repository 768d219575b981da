//! Client commands: they talk to a running server over gRPC like any integrator.

pub mod client;
pub mod examples;
pub mod export;
pub mod formats;
pub mod health;
pub mod import;
pub mod load;
pub mod report;
pub mod security;
pub mod synth;

use crate::configuration::DemoArgs;

/// `partnership-metrics demo`: loads the synthetic data set through the API.
pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let config = match args.records {
        Some(n) => synth::SynthConfig::scaled(n),
        None => synth::SynthConfig::demo(),
    };
    let synth = synth::Synth::new(config);
    eprintln!(
        "loading {} partnerships, about {} records, into {} ...",
        config.partnerships,
        synth.estimated_record_count(),
        args.client.target()
    );
    let stats = match &args.dev_credentials {
        Some(dir) => load::load_with_dev_credentials(&args.client, dir, &synth, args.batch_size).await?,
        None => {
            let channel = args.client.connect().await?;
            let mut stats = load::load_registry(channel.clone(), &synth).await?;
            load::load_records(channel, synth.clone(), args.batch_size, &mut stats).await?;
            stats
        }
    };
    eprintln!(
        "registry: {} agencies, {} partnerships, {} memberships in {:.1} s",
        stats.agencies,
        stats.partnerships,
        stats.memberships,
        stats.registry_time.as_secs_f64()
    );
    let secs = stats.records_time.as_secs_f64();
    eprintln!(
        "records: {} in {} batches in {:.1} s ({:.0} records/s)",
        stats.records,
        stats.batches,
        secs,
        stats.records as f64 / secs.max(1e-9)
    );
    for p in 0..config.partnerships.min(5) {
        println!("{:<12} {}", synth.partnership_id(p), synth.fortune(p).describe());
    }
    Ok(())
}
