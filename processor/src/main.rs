//! `palisade-processor`: placeholder composition root. It parses the configuration (so `--help`
//! documents every setting) and exits; the consume loop is wired in the next step.

use clap::Parser;

fn main() {
    let config = processor::Config::parse();
    eprintln!(
        "palisade-processor: {:?} is not wired yet; see the processor issue",
        config.command()
    );
    std::process::exit(2);
}
