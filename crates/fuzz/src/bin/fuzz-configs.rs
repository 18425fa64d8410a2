//! Configs into the cluster loader: `cargo run --release -p fuzz --bin fuzz-configs -- -n 100000`.
fn main() -> std::process::ExitCode {
    fuzz::cli::main(fuzz::configs::ConfigHarness::new)
}
