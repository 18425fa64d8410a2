//! Packets into a node: `cargo run --release -p fuzz --bin fuzz-packets -- -n 1000000`.
fn main() -> std::process::ExitCode {
    fuzz::cli::main(fuzz::packets::PacketHarness::new)
}
