//! The `always-online` command: run the server, or manage accounts in the
//! store it uses.

use std::process::ExitCode;

use always_online::accounts::{AccountError, Kind};
use always_online::config::{Config, Flags};
use always_online::logging::Chain;
use always_online::{logging, App};
use clap::{Parser, Subcommand};

mod ops_command;
mod store_command;
mod token_command;

#[derive(Parser)]
#[command(
    name = "always-online",
    version = always_online::VERSION,
    about = "Realtime message-sync server over socket.io"
)]
struct Cli {
    #[command(flatten)]
    flags: Flags,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Manage user accounts; prints only the new token.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Manage admin accounts; prints only the new token.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Work on the account store as a whole.
    Accounts {
        #[command(subcommand)]
        action: AccountsAction,
    },
    /// Exit 0 if the server answers GET /readyz with 200, else 1 (for
    /// container health checks).
    Healthcheck {
        /// The readiness URL [default: /readyz on the configured listener,
        /// over loopback].
        #[arg(long)]
        url: Option<String>,
    },
    /// Print the effective configuration (secrets redacted); with --check,
    /// only validate the file and the environment.
    Config {
        /// Validate without printing; exit 0 if the server would start with
        /// this configuration, 2 with the reason if not.
        #[arg(long)]
        check: bool,
    },
    /// The embedded store's commit log: check it, or salvage it after
    /// corruption (docs/OPERATIONS.md).
    Store {
        #[command(subcommand)]
        action: store_command::StoreAction,
    },
    /// JSON Web Tokens for room grants (AO_JWT_HMAC_SECRET or AO_JWT_PUBLIC_KEY).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Sign a token for <uid> with AO_JWT_HMAC_SECRET (or --key) and print it.
    Create {
        uid: String,
        /// Room ids (or `*` patterns) the token may join, comma-separated or
        /// repeated; without it, every room.
        #[arg(long, value_delimiter = ',')]
        rooms: Option<Vec<String>>,
        /// Allow joining as an observer (dummy).
        #[arg(long)]
        observer: bool,
        /// How long the token is valid: 30s, 15m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Sign with this PEM private key file (RSA: RS256, P-256: ES256,
        /// Ed25519: EdDSA) instead of the HMAC secret.
        #[arg(long, value_name = "PEM_FILE")]
        key: Option<std::path::PathBuf>,
    },
    /// Verify <token> under the configured key; print its claims as JSON
    /// (exit 0) or why it is refused (exit 1).
    Check {
        token: String,
        /// Also require the token's `sub` to be this uid.
        #[arg(long)]
        uid: Option<String>,
    },
}

#[derive(Subcommand)]
enum AccountsAction {
    /// Replace every clear-text token the original service stored (in
    /// MongoDB) with its hash, and print how many were.
    Migrate,
}

#[derive(Subcommand)]
enum UserAction {
    /// Create a user and print its token.
    Create { uid: String },
    /// Give a user a new token (the old one stops working) and print it.
    Refresh { uid: String },
}

#[derive(Subcommand)]
enum AdminAction {
    /// Create an admin and print its token.
    Create { uid: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.flags, |k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("always-online: {ec}", ec = Chain(&e));
            return ExitCode::from(2);
        }
    };
    logging::init(config.log_format);
    always_online::tls::install_provider();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(
                "always-online: cannot start the runtime: {ec}",
                ec = Chain(&e)
            );
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::User {
                action: UserAction::Create { uid },
            } => account(&config, Kind::User, &uid, false).await,
            Command::User {
                action: UserAction::Refresh { uid },
            } => account(&config, Kind::User, &uid, true).await,
            Command::Admin {
                action: AdminAction::Create { uid },
            } => account(&config, Kind::Admin, &uid, false).await,
            Command::Accounts {
                action: AccountsAction::Migrate,
            } => migrate(&config).await,
            Command::Token { action } => token_command::run(&config, action),
            Command::Store { action } => store_command::run(&config, action),
            Command::Healthcheck { url } => ops_command::healthcheck(&config, url.as_deref()).await,
            Command::Config { check } => ops_command::config(&config, check),
        }
    })
}

async fn serve(config: Config) -> ExitCode {
    // Listen for the signals before the listeners open, so a signal that
    // arrives as soon as the server is up is still handled.
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "always-online: cannot install signal handlers: {ec}",
                ec = Chain(&e)
            );
            return ExitCode::from(1);
        }
    };
    let app = match App::start(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("always-online: {ec}", ec = Chain(&e));
            return ExitCode::from(2);
        }
    };
    loop {
        match signals.next().await {
            Signal::Stop => break,
            // A failed reload is logged and keeps the old certificate.
            Signal::Reload => {
                let _ = app.reload_tls();
            }
        }
    }
    tracing::info!("shutting down");
    app.shutdown().await;
    ExitCode::SUCCESS
}

/// What a signal asks of the server.
#[cfg_attr(not(unix), allow(dead_code))]
enum Signal {
    /// SIGTERM, SIGINT (Ctrl-C): shut down gracefully.
    Stop,
    /// SIGHUP: re-read the TLS certificate and key.
    Reload,
}

/// SIGTERM, SIGINT and SIGHUP, registered with the OS when installed.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Reload,
        }
    }
}

/// Ctrl-C where there are no Unix signals.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn next(&mut self) -> Signal {
        let _ = tokio::signal::ctrl_c().await;
        Signal::Stop
    }
}

/// Hashes the original service's clear-text tokens (`accounts migrate`).
async fn migrate(config: &Config) -> ExitCode {
    let store = match open_accounts(config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    match store.hash_clear_tokens().await {
        Ok((users, admins)) => {
            println!(
                "hashed {} clear-text tokens ({users} users, {admins} admins)",
                users + admins
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("always-online: {ec}", ec = Chain(&e));
            ExitCode::from(1)
        }
    }
}

/// The account store the configuration names, or the exit code of why not.
async fn open_accounts(
    config: &Config,
) -> Result<std::sync::Arc<dyn always_online::accounts::AccountStore>, ExitCode> {
    let redis = match (&config.mongodb_url, &config.redis_url) {
        (None, Some(_)) => match always_online::redis::Redis::connect(config).await {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!(
                    "always-online: config error: AO_REDIS_URL: {ec}",
                    ec = Chain(&e)
                );
                return Err(ExitCode::from(2));
            }
        },
        _ => None,
    };
    always_online::accounts::open(config, redis.as_ref())
        .await
        .map_err(|e| {
            let key = if config.mongodb_url.is_some() {
                "AO_MONGODB_URL"
            } else {
                "data_dir"
            };
            eprintln!("always-online: config error: {key}: {ec}", ec = Chain(&e));
            ExitCode::from(2)
        })
}

async fn account(config: &Config, kind: Kind, uid: &str, refresh: bool) -> ExitCode {
    if !always_online::is_valid_id(uid) {
        eprintln!("always-online: invalid uid {uid:?}");
        return ExitCode::from(2);
    }
    let store = match open_accounts(config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let result = if refresh {
        store.refresh(kind, uid).await
    } else {
        store.create(kind, uid).await
    };
    match result {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(AccountError::Exists) => {
            eprintln!("always-online: {uid} already exists; use refresh to get a new token");
            ExitCode::from(1)
        }
        Err(AccountError::NotFound) => {
            eprintln!("always-online: {uid} does not exist");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("always-online: {ec}", ec = Chain(&e));
            ExitCode::from(1)
        }
    }
}
