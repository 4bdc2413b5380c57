//! The `fool` command line: a thin layer over the library. See `fool --help`.
mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    fool::device::tune_cpu_allocator();
    let args = <cli::Cli as clap::Parser>::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fool: error: {}", cli::describe(&e));
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}
