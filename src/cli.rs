//! Command-line flags, compatible with `pacifica-archiveinterface` (`-t/--type`, `-p/--port`,
//! `-a/--address`, `--prefix`) plus `-c/--config` and the switches of our own. Flags override every
//! other configuration source.

use clap::{Parser, Subcommand};
use serde::Serialize;
use std::path::PathBuf;

/// archiveinterface: tape and other high-latency storage behind the Pacifica Archive Interface API.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file: TOML, or the INI service file of pacifica-archiveinterface (told apart by
    /// content). Also read from ARCHIVEINTERFACE_CONFIG.
    #[arg(
        short = 'c',
        long = "config",
        env = "ARCHIVEINTERFACE_CONFIG",
        global = true
    )]
    pub config: Option<PathBuf>,

    /// The settings a flag can override.
    #[command(flatten)]
    pub overrides: FlagOverrides,

    /// Accepted for compatibility with pacifica-archiveinterface start-up scripts, and ignored.
    #[arg(long = "cherrypy-config", hide = true, global = true)]
    pub cherrypy_config: Option<PathBuf>,

    /// What to run; the server when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Load and validate the configuration, print it as TOML, and exit.
    CheckConfig,
    /// Run only the HLM dispatcher (no HTTP), e.g. several instances on one PostgreSQL queue.
    Dispatcher,
}

/// Configuration keys settable by flag. Only the flags given are merged over the other sources.
#[derive(Debug, Default, Clone, clap::Args, Serialize)]
pub struct FlagOverrides {
    /// Backend type: posix, tiered, hpss or ltfsdm.
    #[arg(short = 't', long = "type", global = true)]
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,

    /// TCP port to listen on (0 picks a free port and logs it).
    #[arg(short = 'p', long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,

    /// Address to listen on.
    #[arg(short = 'a', long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,

    /// Directory the archive files live in.
    #[arg(long, global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<PathBuf>,

    /// Store files under Pacifica's id2filename tree (ids must then be integers).
    #[arg(long = "use-id2filename", global = true, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_id2filename: Option<bool>,

    /// Let a PUT replace an existing file (the archive is write-once otherwise).
    #[arg(long = "allow-overwrite", global = true, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_overwrite: Option<bool>,

    /// Log format: human or json.
    #[arg(long = "log-format", global = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
}
