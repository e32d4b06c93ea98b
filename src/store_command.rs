//! `always-online store check` and `store repair`: the embedded store's
//! commit log, read and salvaged while the server is stopped
//! (docs/OPERATIONS.md, "A corrupt commit log").

use std::process::ExitCode;

use always_online::config::Config;
use always_online::data_dir::DataDirLock;
use always_online::logging::Chain;
use always_online::store::log_check;

/// What `store` does.
#[derive(clap::Subcommand)]
pub(crate) enum StoreAction {
    /// Read the commit log and report each segment (whole, torn at its end,
    /// replaced, or corrupt: where, and how many intact records follow);
    /// exit 0 if the server would start, 1 if not. Changes nothing.
    Check,
    /// Salvage every intact record of the commit log into the database,
    /// give each room that may have lost a msg a new epoch (clients resync),
    /// keep damaged segments as commit-log.<n>.damaged; the server must be
    /// stopped.
    Repair,
}

pub(crate) fn run(config: &Config, action: StoreAction) -> ExitCode {
    if config.redis_url.is_some() {
        eprintln!("always-online: the store commands are for the embedded store (no AO_REDIS_URL)");
        return ExitCode::from(2);
    }
    // Never beside a running server.
    let _lock = match DataDirLock::acquire(&config.data_dir) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!(
                "always-online: {}: {ec}",
                config.data_dir.display(),
                ec = Chain(&e)
            );
            return ExitCode::from(1);
        }
    };
    match action {
        StoreAction::Check => match log_check::check(&config.data_dir) {
            Ok(report) => {
                print!("{report}");
                if report.corrupt() {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("always-online: store check: {ec}", ec = Chain(&e));
                ExitCode::from(1)
            }
        },
        StoreAction::Repair => match log_check::repair(&config.data_dir) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("always-online: store repair: {ec}", ec = Chain(&e));
                ExitCode::from(1)
            }
        },
    }
}
