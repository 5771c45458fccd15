//! `skep`: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    skep_worker::ensure_single_threaded_tesseract();
    skep::cli::main_with(skep::cli::Cli::parse())
}
