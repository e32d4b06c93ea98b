//! The binary's `token` command: signs JSON Web Tokens for room grants
//! (`token create`) and checks them as the server would (`token check`).

use std::process::ExitCode;

use always_online::config::Config;
use always_online::grants::jwt::{looks_like_jwt, KeyError};
use always_online::grants::{ttl, Claims, Signer, Verifier};

use crate::TokenAction;
use always_online::logging::Chain;

/// Runs `token create` or `token check`.
pub(crate) fn run(config: &Config, action: TokenAction) -> ExitCode {
    match action {
        TokenAction::Create {
            uid,
            rooms,
            observer,
            ttl,
            key,
        } => create(config, &uid, rooms, observer, &ttl, key.as_deref()),
        TokenAction::Check { token, uid } => check(config, &token, uid.as_deref()),
    }
}

/// Prints `message` on stderr and gives exit code 2 (a usage or configuration error).
fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("always-online: {message}");
    ExitCode::from(2)
}

fn create(
    config: &Config,
    uid: &str,
    rooms: Option<Vec<String>>,
    observer: bool,
    ttl: &str,
    key: Option<&std::path::Path>,
) -> ExitCode {
    if !always_online::is_valid_id(uid) {
        return usage(format!("invalid uid {uid:?}"));
    }
    let ttl = match ttl::parse(ttl) {
        Ok(t) => t,
        Err(e) => return usage(format!("--ttl: {ec}", ec = Chain(&e))),
    };
    let rooms = match rooms {
        Some(list) => {
            let list: Vec<String> = list.into_iter().map(|r| r.trim().to_owned()).collect();
            if let Some(bad) = list.iter().find(|r| !always_online::is_valid_id(r)) {
                return usage(format!("--rooms: invalid room id or pattern {bad:?}"));
            }
            Some(list)
        }
        None => None,
    };
    let signer = match signer(config, key) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let token = match signer.sign(&Claims::new(uid, ttl, rooms, observer)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("always-online: {ec}", ec = Chain(&e));
            return ExitCode::from(1);
        }
    };
    // A token this server would refuse (a --key that is not the configured
    // public key's pair) is not handed out.
    if let Ok(Some(verifier)) = Verifier::from_config(config) {
        if let Err(e) = verifier.verify(&token, Some(uid)) {
            eprintln!(
                "always-online: this server would refuse the token ({e}); it verifies {}",
                verifier.algorithms()
            );
            return ExitCode::from(1);
        }
    }
    println!("{token}");
    ExitCode::SUCCESS
}

/// The signing key: `--key`, else the HMAC secret; or the exit code of why none.
fn signer(config: &Config, key: Option<&std::path::Path>) -> Result<Signer, ExitCode> {
    if let Some(path) = key {
        let pem = std::fs::read_to_string(path).map_err(|e| {
            usage(format!(
                "--key: cannot read {}: {ec}",
                path.display(),
                ec = Chain(&e)
            ))
        })?;
        return Signer::private_key(&pem)
            .map_err(|e| usage(format!("--key: {ec}", ec = Chain(&e))));
    }
    match (&config.jwt_hmac_secret, &config.jwt_public_key) {
        (Some(secret), _) => Signer::hmac(secret.as_bytes()).map_err(|e: KeyError| {
            usage(format!(
                "config error: AO_JWT_HMAC_SECRET: {ec}",
                ec = Chain(&e)
            ))
        }),
        (None, Some(_)) => Err(usage(
            "cannot sign: AO_JWT_PUBLIC_KEY is a public key, which only verifies; \
             sign with its private key: --key <PEM file>",
        )),
        (None, None) => Err(usage(
            "no signing key: set AO_JWT_HMAC_SECRET, or pass --key <PEM file>",
        )),
    }
}

fn check(config: &Config, token: &str, uid: Option<&str>) -> ExitCode {
    let verifier = match Verifier::from_config(config) {
        Ok(Some(v)) => v,
        Ok(None) => {
            return usage(
                "config error: AO_JWT_HMAC_SECRET: no JWT key configured \
                 (set AO_JWT_HMAC_SECRET or AO_JWT_PUBLIC_KEY)",
            )
        }
        Err(e) => {
            return usage(format!(
                "config error: {}: {ec}",
                e.setting(),
                ec = Chain(&e)
            ))
        }
    };
    let token = token.trim();
    if !looks_like_jwt(token) {
        eprintln!("always-online: token refused: not a JSON Web Token (three base64url parts)");
        return ExitCode::from(1);
    }
    match verifier.verify(token, uid) {
        Ok(verified) => match serde_json::to_string_pretty(&verified.payload) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("always-online: {ec}", ec = Chain(&e));
                ExitCode::from(1)
            }
        },
        Err(e) => {
            eprintln!("always-online: token refused: {ec}", ec = Chain(&e));
            ExitCode::from(1)
        }
    }
}
