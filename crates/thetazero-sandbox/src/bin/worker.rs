//! The sandbox's worker process on its own, for this crate's tests and benches; the server runs the same code as `thetazero sandbox-worker`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(thetazero_sandbox::worker::main(&args));
}
