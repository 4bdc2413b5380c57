//! The `fool` command line: a thin layer over the library. See `fool --help`.
mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    fool::device::tune_cpu_allocator();
    quiet_on_closed_output();
    let args = <cli::Cli as clap::Parser>::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fool: error: {}", cli::describe(&e));
            ExitCode::from(cli::EXIT_ERROR)
        }
    }
}

/// `println!` panics when stdout cannot be written. Every output file is complete (written to
/// a temp file and renamed) before fool prints about it, so a closed pipe (`fool … | head`)
/// ends the program quietly with exit 0, as ripgrep does; any other failure to write the report
/// (`> /dev/full`) is one error line and exit 1, and an unwritable stderr exit 1 — never a
/// panic message.
fn quiet_on_closed_output() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        for stream in ["stdout", "stderr"] {
            if let Some(err) = msg.strip_prefix(&format!("failed printing to {stream}: ")) {
                if stream == "stdout" && err.contains("Broken pipe") {
                    std::process::exit(0);
                }
                if stream == "stdout" {
                    eprintln!("fool: error: {stream}: {err}");
                }
                std::process::exit(cli::EXIT_ERROR as i32);
            }
        }
        default(info);
    }));
}
