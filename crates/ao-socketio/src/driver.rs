//! The one task of each connection. On a websocket it reads the client's
//! frames, writes the outbound queue and keeps the heartbeat, all in one
//! future; on long-polling it keeps the heartbeat and runs the probe of a
//! websocket that upgrades the session (the HTTP requests themselves carry
//! the packets). It ends by closing the connection for good.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::engine::session::Session;
use crate::engine::{DisconnectReason, Transport};
use crate::engine::{EngineVersion, Frame, Packet};
use crate::websocket::Ws;

/// How long a closing connection may take to hand its last packets over.
const CLOSE_DRAIN: Duration = Duration::from_secs(2);

/// How long a client told to disconnect may take to close its websocket
/// before the server closes it.
const CLIENT_CLOSE_WAIT: Duration = Duration::from_millis(1000);

/// Runs connection `conn`, opened on websocket `ws`.
pub(crate) async fn run_websocket(conn: Arc<Session>, ws: Ws) {
    if let Some(mut hb) = Heartbeat::new(&conn) {
        websocket(&conn, ws, &mut hb).await;
    }
    conn.finish();
}

/// Runs long-polling connection `conn`, and the websocket that upgrades it.
/// The probe and the websocket phase are boxed: the task lives as long as
/// the connection, and inlined they would make every polling connection
/// carry the websocket phase's state before it has a websocket.
pub(crate) async fn run_polling(conn: Arc<Session>) {
    if let Some(mut hb) = Heartbeat::new(&conn) {
        while let Some(on_upgrade) = polling(&conn, &mut hb).await {
            if let Some(ws) = Box::pin(probe(&conn, on_upgrade, &mut hb)).await {
                Box::pin(websocket(&conn, ws, &mut hb)).await;
                break;
            }
        }
    }
    conn.finish();
}

/// The heartbeat as each engine.io revision keeps it, and the deadline of
/// a socket.io 3.x/4.x client's namespace connect.
struct Heartbeat {
    interval: Duration,
    timeout: Duration,
    upgrade_timeout: Duration,
    connect_timeout: Duration,
    connect_by: Option<Instant>,
    /// engine.io 4: when the unanswered ping went out.
    ping_sent: Option<Instant>,
    next_ping: Instant,
    /// When to check next.
    next: Instant,
}

impl Heartbeat {
    fn new(conn: &Session) -> Option<Heartbeat> {
        let server = conn.server.upgrade()?;
        let c = &server.config;
        // Counted from the handshake, as the client counts.
        let now = Instant::from_std(conn.created);
        let connect_by = (conn.socket_io && conn.eio == EngineVersion::V4)
            .then(|| Instant::from_std(conn.created) + c.connect_timeout);
        let mut hb = Heartbeat {
            interval: c.ping_interval,
            timeout: c.ping_timeout,
            upgrade_timeout: c.upgrade_timeout,
            connect_timeout: c.connect_timeout,
            connect_by,
            ping_sent: None,
            next_ping: now + c.ping_interval,
            next: now,
        };
        hb.next = hb.bounded(match conn.eio {
            EngineVersion::V4 => hb.next_ping,
            EngineVersion::V3 => now + c.ping_interval + c.ping_timeout,
        });
        Some(hb)
    }

    fn bounded(&self, at: Instant) -> Instant {
        match self.connect_by {
            Some(by) => at.min(by),
            None => at,
        }
    }

    /// Runs at [`Heartbeat::next`]: pings, or closes a connection that went
    /// silent; sets the next check. A connection whose reads the
    /// application paused is not timed out: its answer may be waiting
    /// behind the pause.
    fn check(&mut self, conn: &Arc<Session>) {
        let now = Instant::now();
        let (connected, heard) = {
            let state = conn.state();
            (
                !conn.socket_io || state.has_socket(),
                Instant::from_std(state.last_heard),
            )
        };
        if connected {
            self.connect_by = None;
        } else if self.connect_by.is_some_and(|by| now >= by) {
            conn.close(DisconnectReason::ConnectTimeout);
            return;
        } else if self.connect_by.is_none() {
            // Its last socket left: the session may connect again in time.
            self.connect_by = Some(now + self.connect_timeout);
        }
        let paused = conn.gate.is_closed();
        let at = match conn.eio {
            EngineVersion::V3 => {
                let deadline = heard + self.interval + self.timeout;
                if now < deadline {
                    deadline
                } else if paused {
                    now + self.timeout
                } else {
                    conn.close(DisconnectReason::PingTimeout);
                    return;
                }
            }
            EngineVersion::V4 => {
                if let Some(sent) = self.ping_sent {
                    if heard >= sent {
                        self.ping_sent = None;
                        self.next_ping = heard + self.interval;
                    } else if now < sent + self.timeout {
                        return self.next = self.bounded(sent + self.timeout);
                    } else if paused {
                        return self.next = self.bounded(now + self.timeout);
                    } else {
                        conn.close(DisconnectReason::PingTimeout);
                        return;
                    }
                }
                if now >= self.next_ping {
                    let _ = conn.push(Frame::Text(Bytes::from_static(b"2")));
                    // Timed from when it was due: a timer that fired late
                    // does not give the client longer than it was told.
                    let sent = now
                        .checked_sub(self.timeout / 8)
                        .map_or(self.next_ping, |t| self.next_ping.max(t));
                    self.ping_sent = Some(sent);
                    sent + self.timeout
                } else {
                    self.next_ping
                }
            }
        };
        self.next = self.bounded(at);
    }
}

/// Long-polling: waits for the close, an upgrade or the heartbeat. Gives
/// a websocket's upgrade to probe, or `None` once the connection closed.
async fn polling(conn: &Arc<Session>, hb: &mut Heartbeat) -> Option<hyper::upgrade::OnUpgrade> {
    let sleep = sleep_until(hb.next);
    tokio::pin!(sleep);
    loop {
        if let Some(reason) = conn.closing() {
            drain_polling(conn, reason).await;
            return None;
        }
        {
            let mut state = conn.state();
            if let Some(up) = state.upgrade.take() {
                state.probing = true;
                return Some(up);
            }
        }
        tokio::select! {
            _ = conn.wake.notified() => {}
            _ = &mut sleep => {
                hb.check(conn);
                sleep.as_mut().reset(hb.next);
            }
        }
    }
}

/// A closing long-polling connection: its last packets and the close
/// packet go out with the next poll, if one comes soon.
async fn drain_polling(conn: &Arc<Session>, reason: DisconnectReason) {
    if reason == DisconnectReason::ClientClose {
        await_crossing_poll(conn).await;
        return;
    }
    if matches!(
        reason,
        DisconnectReason::TransportClose
            | DisconnectReason::PingTimeout
            | DisconnectReason::ProtocolError
    ) {
        return;
    }
    let until = Instant::now() + CLOSE_DRAIN;
    while Instant::now() < until {
        let polling = conn.state().polling;
        if conn.outbox.bytes() == 0 && !polling {
            // Either a poll took everything with the close packet, or one
            // may still come: give it a moment.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if conn.outbox.bytes() == 0 && !conn.state().polling {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client that closed its session over long-polling: a poll it sent
/// just before the close can reach the server just after it, on another
/// connection. It is answered as a poll waiting at the close is, with a
/// noop (the poll then ends the session), rather than refused as unknown,
/// when it comes within [`CLOSE_CROSSING`].
async fn await_crossing_poll(conn: &Arc<Session>) {
    let until = Instant::now() + CLOSE_CROSSING;
    loop {
        let Some(server) = conn.server.upgrade() else {
            return;
        };
        if !server.knows(conn) {
            return;
        }
        drop(server);
        // The poll that answers forgets the session, then wakes this.
        if tokio::time::timeout_at(until, conn.wake.notified())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// How long a session its client closed over long-polling waits for a
/// poll that crossed the close.
const CLOSE_CROSSING: Duration = Duration::from_millis(200);

/// The upgrade of a long-polling session: the websocket answers the
/// client's probe, makes pending polls return, and takes over at the
/// client's upgrade packet. `None` when the websocket failed or timed out
/// (the session goes on polling).
async fn probe(
    conn: &Arc<Session>,
    on_upgrade: hyper::upgrade::OnUpgrade,
    hb: &mut Heartbeat,
) -> Option<Ws> {
    let give_up = |conn: &Session| {
        let mut state = conn.state();
        state.upgrading = false;
        state.probing = false;
    };
    let Some(server) = conn.server.upgrade() else {
        give_up(conn);
        return None;
    };
    let deadline = Instant::now() + hb.upgrade_timeout;
    let upgraded = match tokio::time::timeout_at(deadline, on_upgrade).await {
        Ok(Ok(up)) => up,
        _ => {
            give_up(conn);
            return None;
        }
    };
    let mut ws = crate::websocket::stream(&server, upgraded).await;
    drop(server);
    let sleep = sleep_until(hb.next);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => Bytes::from(t),
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => {
                        give_up(conn);
                        return None;
                    }
                };
                match Packet::decode_text(text) {
                    Ok(Packet::Ping(data)) if &data[..] == b"probe" => {
                        if ws.send(Message::text("3probe")).await.is_err() {
                            give_up(conn);
                            return None;
                        }
                        {
                            let mut state = conn.state();
                            state.upgrading = true;
                            state.probing = false;
                        }
                        // A pending poll answers now (noop), so the client can pause polling.
                        conn.outbox.wake();
                    }
                    Ok(Packet::Upgrade) => {
                        {
                            let mut state = conn.state();
                            if !state.upgrading {
                                continue;
                            }
                            state.upgrading = false;
                            state.transport = Transport::Websocket;
                        }
                        conn.outbox.wake();
                        return Some(ws);
                    }
                    _ => {}
                }
            }
            _ = sleep_until(deadline) => {
                give_up(conn);
                return None;
            }
            _ = conn.wake.notified() => {
                // Closing before the probe: polling delivers the last
                // packets. After it the client stopped polling and its
                // upgrade packet is on the way: the websocket delivers them.
                let probed = conn.state().upgrading;
                if conn.closing().is_some() && !probed {
                    give_up(conn);
                    return None;
                }
            }
            _ = &mut sleep => {
                hb.check(conn);
                sleep.as_mut().reset(hb.next);
            }
        }
    }
}

enum Step {
    Read(Message),
    Tick,
    Closing(DisconnectReason),
    Failed,
}

/// A frame as a websocket message.
fn message(eio: EngineVersion, frame: Frame) -> Option<Message> {
    match frame {
        Frame::Text(text) => Utf8Bytes::try_from(text).ok().map(Message::Text),
        Frame::Binary(data) => Some(Message::Binary(match eio {
            EngineVersion::V4 => data,
            EngineVersion::V3 => {
                let mut typed = Vec::with_capacity(data.len() + 1);
                typed.push(4);
                typed.extend_from_slice(&data);
                Bytes::from(typed)
            }
        })),
    }
}

/// The websocket phase: reads, writes and the heartbeat in one future.
async fn websocket(conn: &Arc<Session>, mut ws: Ws, hb: &mut Heartbeat) {
    let sleep = sleep_until(hb.next);
    tokio::pin!(sleep);
    // A message taken from the outbox that the websocket has not accepted yet.
    let mut out: Option<Message> = None;
    let mut unflushed = false;
    loop {
        let step = std::future::poll_fn(|cx| {
            if let Some(reason) = conn.closing() {
                return Poll::Ready(Step::Closing(reason));
            }
            loop {
                if out.is_none() {
                    match conn.outbox.poll_next(cx) {
                        Poll::Ready(frame) => out = message(conn.eio, frame),
                        Poll::Pending => break,
                    }
                    if out.is_none() {
                        continue;
                    }
                }
                match Pin::new(&mut ws).poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        if let Some(m) = out.take() {
                            if Pin::new(&mut ws).start_send(m).is_err() {
                                return Poll::Ready(Step::Failed);
                            }
                            unflushed = true;
                        }
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(Step::Failed),
                    Poll::Pending => break,
                }
            }
            if out.is_some() {
                // A close from outside (a slow client, `Socket::disconnect`,
                // shutdown) wakes the outbox's writer: this task, even while
                // it waits on a full socket and takes no frames. Checked
                // again after registering: a close in between woke no one.
                conn.outbox.register(cx);
                if let Some(reason) = conn.closing() {
                    return Poll::Ready(Step::Closing(reason));
                }
            }
            if unflushed {
                match Pin::new(&mut ws).poll_flush(cx) {
                    Poll::Ready(Ok(())) => unflushed = false,
                    Poll::Ready(Err(_)) => return Poll::Ready(Step::Failed),
                    Poll::Pending => {}
                }
            }
            if conn.gate.poll_open(cx).is_ready() {
                match Pin::new(&mut ws).poll_next(cx) {
                    Poll::Ready(Some(Ok(msg))) => return Poll::Ready(Step::Read(msg)),
                    Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(Step::Failed),
                    Poll::Pending => {}
                }
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Step::Tick);
            }
            Poll::Pending
        })
        .await;
        match step {
            Step::Read(msg) => {
                // A ping answered by the websocket layer waits for a flush.
                unflushed = true;
                let packet = match msg {
                    Message::Text(text) => Packet::decode_text(Bytes::from(text)),
                    Message::Binary(data) => Packet::decode_binary(conn.eio, data),
                    Message::Close(_) => {
                        conn.close(DisconnectReason::TransportClose);
                        continue;
                    }
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                };
                match packet {
                    Ok(packet) => conn.on_packet(packet),
                    Err(e) => conn.malformed(&e),
                }
            }
            Step::Tick => {
                hb.check(conn);
                sleep.as_mut().reset(hb.next);
            }
            Step::Closing(reason) => {
                // Boxed: only a closing connection needs its state.
                Box::pin(close_websocket(conn, ws, out, reason)).await;
                return;
            }
            Step::Failed => {
                conn.close(DisconnectReason::TransportClose);
                return;
            }
        }
    }
}

/// Sends what is left (a disconnect packet, say) and the websocket's close,
/// unless the client is gone or does not read.
async fn close_websocket(
    conn: &Arc<Session>,
    mut ws: Ws,
    out: Option<Message>,
    reason: DisconnectReason,
) {
    if matches!(
        reason,
        DisconnectReason::TransportClose
            | DisconnectReason::PingTimeout
            | DisconnectReason::SlowClient
    ) {
        return;
    }
    let mut rest = Vec::new();
    conn.outbox.take_now(&mut rest);
    let code = if reason == DisconnectReason::ServerShutdown {
        CloseCode::Away
    } else {
        CloseCode::Normal
    };
    let drain = async {
        if let Some(m) = out {
            ws.feed(m).await?;
        }
        for frame in rest {
            if let Some(m) = message(conn.eio, frame) {
                ws.feed(m).await?;
            }
        }
        ws.flush().await?;
        if reason == DisconnectReason::ServerDisconnect {
            // The client closes the transport itself on the disconnect
            // packet. Closing first can overtake the packet in clients that
            // handle packets on another thread than their reader
            // (python-socketio 4), which would then reconnect.
            let until = Instant::now() + CLIENT_CLOSE_WAIT;
            while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(until, ws.next()).await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        }
        ws.send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(""),
        })))
        .await
    };
    let _ = tokio::time::timeout(CLOSE_DRAIN, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;
    impl crate::Connector for Nothing {
        fn connect(&self, _: &crate::Socket, _: Option<&str>) -> crate::Connect {
            unreachable!("no client connects")
        }
    }

    /// The connection's task lives as long as the connection: its future
    /// is what every idle connection carries, so it must stay small.
    #[tokio::test]
    async fn the_connection_task_stays_small() {
        let server = crate::Server::new(crate::Config::default(), Nothing);
        let conn = server
            .inner
            .open(EngineVersion::V4, false, Transport::Polling, None);
        let mut hb = Heartbeat::new(&conn).expect("the server is alive");
        let sizes = [
            std::mem::size_of_val(&run_polling(conn.clone())),
            std::mem::size_of_val(&polling(&conn, &mut hb)),
        ];
        assert!(sizes.iter().all(|&s| s <= 1024), "{sizes:?}");
    }
}
