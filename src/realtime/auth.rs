//! authenticate: credentials (stored tokens, or JSON Web Tokens with room
//! grants), development mode, rate limit, kickout of older logins.

use serde_json::Value;
use tokio::time::Instant;

use super::session::{Flow, Login, Phase, Session};
use crate::accounts::Kind;
use crate::client_log::Clipped;
use crate::cluster::PresenceSeq;
use crate::grants::{jwt, Grant, JwtError};
use crate::logging::Chain;
use crate::protocol::{self, event, reason, SenderStamp, StatusReply};

/// Outcome of checking a client's credentials.
enum Check {
    /// Accepted; with the grant of the JSON Web Token it logged in with.
    Accepted(protocol::Uid, Option<Grant>),
    Refused(&'static str),
    /// A JSON Web Token that did not verify: refused as wrong credentials.
    JwtRefused(JwtError),
}

/// The metric label of an authentication refusal reason.
pub(super) fn metric_reason(why: &str) -> &'static str {
    match why {
        reason::RATE_LIMIT => "rate_limit",
        reason::SERVER_ERROR => "server_error",
        reason::AUTH_TIMEOUT => "timeout",
        _ => "wrong_credentials",
    }
}

impl Session {
    /// The `authenticate` event.
    pub(super) async fn authenticate(&mut self, data: Result<Value, String>) -> Flow {
        if !matches!(self.phase, Phase::Connected) {
            let _ = self.socket.emit(
                event::AUTHENTICATE,
                &StatusReply::fail(1, reason::ALREADY_AUTHENTICATED),
            );
            return Flow::Continue;
        }
        match self.log_in(data.unwrap_or(Value::Null)).await {
            Ok(()) => {
                let _ = self
                    .socket
                    .emit(event::AUTHENTICATE, &StatusReply::ok(reason::AUTH_SUCCESS));
                Flow::Continue
            }
            Err(why) => {
                let _ = self
                    .socket
                    .emit(event::AUTHENTICATE, &StatusReply::fail(1, why));
                self.deadline = None;
                self.disconnect();
                Flow::Stop
            }
        }
    }

    /// Credentials a socket.io 3+/4 client sent as its CONNECT payload
    /// (`io(url, {auth: {uid, token}})`): checked as `authenticate` checks
    /// them; the connect is then answered, followed by the same
    /// `authenticate` reply, or refused with a CONNECT error carrying the
    /// reason.
    pub(super) async fn authenticate_at_connect(&mut self, credentials: Value) -> Flow {
        match self.log_in(credentials).await {
            Ok(()) => {
                self.socket.accept();
                let _ = self
                    .socket
                    .emit(event::AUTHENTICATE, &StatusReply::ok(reason::AUTH_SUCCESS));
                Flow::Continue
            }
            Err(why) => {
                self.deadline = None;
                self.socket.refuse(&ao_socketio::ConnectError {
                    message: why.to_owned(),
                    data: Some(serde_json::to_value(StatusReply::fail(1, why)).unwrap_or_default()),
                });
                Flow::Stop
            }
        }
    }

    /// Checks credentials and logs the session in: older logins of the
    /// uid are kicked out, the join deadline starts. Refusals are counted
    /// and logged here; the caller answers with the reason.
    async fn log_in(&mut self, credentials: Value) -> Result<(), &'static str> {
        let ip = self.socket.peer().map(|a| a.ip());
        // An address that used up its failed attempts is refused unchecked.
        let throttled = !self.state.limits().auth_allowed(ip);
        let checked = if throttled {
            Check::Refused(reason::RATE_LIMIT)
        } else {
            self.check(credentials).await
        };
        let (uid, grant) = match checked {
            Check::Accepted(uid, grant) => (uid, grant),
            Check::JwtRefused(e) => {
                tracing::info!(sid = %self.sid, reason = %Clipped(&e), "authentication refused: JSON Web Token");
                self.state.limits().auth_failed(ip);
                self.state.metrics().auth_failed(e.metric_label());
                return Err(reason::AUTH_FAILED);
            }
            Check::Refused(why) => {
                tracing::info!(sid = %self.sid, reason = why, "authentication refused");
                if why == reason::AUTH_FAILED {
                    self.state.limits().auth_failed(ip);
                }
                self.state.metrics().auth_failed(if throttled {
                    "too_many_failures"
                } else {
                    metric_reason(why)
                });
                return Err(why);
            }
        };
        let replaced_rooms = self.kick_older_logins(&uid.key).await;
        tracing::info!(sid = %self.sid, uid = ?Clipped(&uid.key), jwt = grant.is_some(), "authenticated");
        if let Some(mailbox) = self.socket.data::<super::inbox::Mailbox>() {
            let _ = mailbox.uid.set(uid.key.clone());
        }
        self.logged_in(Login {
            stamp: SenderStamp::of(&uid.json),
            uid,
            grant,
            replaced_rooms,
        });
        self.inbox.authenticated();
        self.deadline = Some(Instant::now() + self.state.config().join_timeout);
        Ok(())
    }

    async fn check(&self, payload: Value) -> Check {
        let Some(creds) = protocol::parse_credentials(&payload) else {
            return Check::Refused(reason::AUTH_FAILED);
        };
        let state = &self.state;
        // With a JWT key configured, a token shaped like a JWT is checked as
        // one (also in development mode, so its grant means something);
        // any other token goes the stored-token way.
        let jwt = match (&state.jwt(), creds.token.as_deref()) {
            (Some(verifier), Some(token)) if jwt::looks_like_jwt(token) => {
                match verifier.verify(token, Some(&creds.uid.key)) {
                    Ok(verified) => Some(verified.grant),
                    Err(e) => return Check::JwtRefused(e),
                }
            }
            _ => None,
        };
        let skip_tokens = jwt.is_some()
            || state.config().dev && !state.cluster().force_user_auth().await.unwrap_or(true);
        if !skip_tokens {
            let Some(token) = creds.token.as_deref() else {
                return Check::Refused(reason::AUTH_FAILED);
            };
            match state
                .accounts()
                .verify(Kind::User, &creds.uid.key, token)
                .await
            {
                Ok(true) => {}
                Ok(false) => return Check::Refused(reason::AUTH_FAILED),
                Err(e) => {
                    tracing::error!(error = %Chain(&e), "account store failed during authenticate");
                    return Check::Refused(reason::SERVER_ERROR);
                }
            }
        }
        match state
            .cluster()
            .auth_allowed(&creds.uid.key, state.config().auth_rate_limit)
            .await
        {
            Ok(true) => Check::Accepted(creds.uid, jwt),
            Ok(false) => Check::Refused(reason::RATE_LIMIT),
            Err(e) => {
                tracing::error!(error = %Chain(&e), "rate limiter failed during authenticate");
                Check::Refused(reason::SERVER_ERROR)
            }
        }
    }

    /// Removes older connections of `uid` from their rooms without a word to
    /// the room, and tells their sessions to send `kickout` and close.
    /// Returns the rooms this login takes over, with the numbers of their
    /// removals.
    async fn kick_older_logins(&self, uid: &str) -> Vec<(String, PresenceSeq)> {
        let cluster = &self.state.cluster();
        let older = match cluster.register_connection(uid, &self.sid).await {
            Ok(older) => older,
            Err(e) => {
                tracing::error!(error = %Chain(&e), "connection registry failed");
                return Vec::new();
            }
        };
        let mut replaced_rooms = Vec::new();
        for sid in older {
            if let Ok(Some(room)) = cluster.room_of(&sid).await {
                // Only a member the room knew of is taken over silently; a
                // replaced observer was never announced.
                if let Ok(Some(gone)) = cluster.leave(&room, &sid).await {
                    if !gone.member.dummy {
                        replaced_rooms.push((room, gone.seq));
                    }
                }
            }
            self.state.bus().kick(&sid).await;
        }
        replaced_rooms
    }

    /// This connection was replaced by a newer login of its uid.
    pub(super) async fn kicked_out(&mut self) -> Flow {
        tracing::info!(sid = %self.sid, "kicked out by a newer login");
        if let Some(joined) = self.take_room() {
            self.inbox.gate().shut();
            // The newer login already took this member out of the room
            // (possibly from another node); forget it here too, silently.
            if let Err(e) = self.state.cluster().leave(&joined.room, &self.sid).await {
                tracing::debug!(error = %Chain(&e), "leave after kickout failed");
            }
            self.socket.leave(&joined.sio_room);
            self.state.bus().unwatch(&joined.room).await;
        }
        if let Some(uid) = self.log_out() {
            if let Err(e) = self
                .state
                .cluster()
                .unregister_connection(&uid.key, &self.sid)
                .await
            {
                tracing::debug!(error = %Chain(&e), "unregister after kickout failed");
            }
        }
        self.deadline = None;
        let _ = self.socket.emit(event::KICKOUT, &0);
        self.state.metrics().disconnected("kickout");
        self.disconnect();
        Flow::Stop
    }
}
