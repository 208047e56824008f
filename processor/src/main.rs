//! `palisade-processor`: placeholder binary until the processor lands.

fn main() {
    eprintln!("palisade-processor is not implemented yet; see the processor issue");
    std::process::exit(2);
}
