//! Accounts: users (who connect over socket.io) and admins (who call the
//! HTTP APIs). Tokens are stored hashed and compared in constant time.

pub mod sqlite;
pub mod token;

/// Which kind of account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Admin,
}

impl Kind {
    /// The table / collection that holds this kind.
    pub fn table(self) -> &'static str {
        match self {
            Kind::User => "users",
            Kind::Admin => "admins",
        }
    }
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("account already exists")]
    Exists,
    #[error("account does not exist")]
    NotFound,
    #[error("account store unavailable: {0}")]
    Unavailable(String),
}

/// Where accounts live.
#[async_trait::async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Creates an account with a fresh token and returns the token.
    async fn create(&self, kind: Kind, uid: &str) -> Result<String, AccountError>;
    /// Replaces the token of an existing account; the old one stops working at once.
    async fn refresh(&self, kind: Kind, uid: &str) -> Result<String, AccountError>;
    /// Sets the account's token to `token`, creating the account if needed.
    async fn ensure(&self, kind: Kind, uid: &str, token: &str) -> Result<(), AccountError>;
    /// Whether `token` is the account's current token.
    async fn verify(&self, kind: Kind, uid: &str, token: &str) -> Result<bool, AccountError>;
}
