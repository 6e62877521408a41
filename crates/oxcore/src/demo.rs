//! `oxcore demo`: the provisioning flow on embedded defaults.
use std::process::ExitCode;

pub fn run() -> anyhow::Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}
