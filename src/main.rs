//! The `archiveinterface` binary: flags -> configuration -> logging -> server. Everything that can be
//! wrong with the configuration is reported before the port opens, with exit status 2.

use archiveinterface::cli::{Cli, Command};
use archiveinterface::config::Config;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, warnings) = match Config::load_with_warnings(cli.config.as_deref(), &cli.overrides)
    {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("archiveinterface: {e}");
            return ExitCode::from(2);
        }
    };
    archiveinterface::telemetry::init(&config);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    if cli.cherrypy_config.is_some() {
        tracing::warn!("--cherrypy-config is accepted for compatibility and ignored");
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            match toml_of(&config) {
                Ok(text) => print!("{text}"),
                Err(e) => eprintln!("archiveinterface: {e}"),
            }
            ExitCode::SUCCESS
        }
        command @ (Command::Serve | Command::Dispatcher) => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("archiveinterface: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = match command {
                Command::Dispatcher => {
                    runtime.block_on(archiveinterface::server::run_dispatcher(config))
                }
                _ => runtime.block_on(archiveinterface::server::run(config)),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("archiveinterface: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn toml_of(config: &Config) -> Result<String, String> {
    toml::to_string(config).map_err(|e| e.to_string())
}
