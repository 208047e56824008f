//! `palisade-load`: a bounded load generator for ingest, loopback only. See
//! [`benches::load`] for the modes, the open/closed loop and the bounds, and `--help` for flags.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = benches::load::Args::parse();
    let summary = benches::load::run(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print!("{}", summary.text());
    }
    Ok(())
}
