//! A websocket client's opening sequence: the server's open packet, the
//! socket.io CONNECT (engine.io 4; under engine.io 3 the server connects
//! the default namespace unasked) and the server's answer to it.
//!
//! Strict on purpose: anything but an engine.io ping between these packets
//! (an event sent before the CONNECT answer, say) is an error, so that the
//! tests see a server that gets the order wrong.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::frame::{self, Packet, SioPacket};

/// What the server sent during the opening sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// The open packet's JSON (`{"sid":..,"pingInterval":..,...}`).
    pub open: String,
    /// The server's CONNECT answer as sent: `40` under engine.io 3,
    /// `40{"sid":".."}` under engine.io 4 (see [`frame::connect_sid`]).
    pub answer: String,
}

/// Why the opening sequence failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The websocket failed.
    #[error("websocket: {0}")]
    Ws(#[from] tungstenite::Error),
    /// The server closed the connection (websocket or engine.io close).
    #[error("the server closed the connection during the handshake")]
    Closed,
    /// The server sent something else than the packet due.
    #[error("expected {expected}, got {got:.120}")]
    Unexpected {
        /// The packet due.
        expected: &'static str,
        /// The frame that came instead.
        got: String,
    },
    /// The server refused the CONNECT: its connect error frame (`44{...}`).
    #[error("socket.io connect refused: {0:.120}")]
    Refused(String),
}

/// Reads the open packet, sends `connect` when given (engine.io 4: `40`, or
/// `40{auth}`), and reads the server's CONNECT answer on the default
/// namespace. Engine.io pings that arrive meanwhile are answered; the caller
/// bounds the time.
pub async fn connect<S>(
    ws: &mut WebSocketStream<S>,
    connect: Option<&str>,
) -> Result<Connected, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let open = next_text(ws).await?;
    let Ok(Packet::Open(json)) = frame::decode(&open) else {
        return Err(HandshakeError::Unexpected {
            expected: "an engine.io open packet",
            got: open,
        });
    };
    let open = json.to_owned();
    if let Some(connect) = connect {
        ws.send(Message::text(connect)).await?;
    }
    let answer = next_text(ws).await?;
    match frame::decode(&answer) {
        Ok(Packet::Message(SioPacket::Connect { nsp: "/", .. })) => Ok(Connected { open, answer }),
        Ok(Packet::Message(SioPacket::Error { .. })) => Err(HandshakeError::Refused(answer)),
        Ok(Packet::Close) => Err(HandshakeError::Closed),
        _ => Err(HandshakeError::Unexpected {
            expected: "the socket.io CONNECT answer",
            got: answer,
        }),
    }
}

/// The next text frame; engine.io pings are answered, websocket control
/// frames skipped.
async fn next_text<S>(ws: &mut WebSocketStream<S>) -> Result<String, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == frame::PING => {
                ws.send(Message::text(frame::PONG)).await?;
            }
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(_))) | None => return Err(HandshakeError::Closed),
            Some(Ok(Message::Binary(b))) => {
                return Err(HandshakeError::Unexpected {
                    expected: "a text frame",
                    got: format!("a binary frame of {} bytes", b.len()),
                })
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;
    use tokio_tungstenite::tungstenite::protocol::Role;

    type Ws = WebSocketStream<DuplexStream>;

    async fn pair() -> (Ws, Ws) {
        let (c, s) = tokio::io::duplex(64 * 1024);
        (
            WebSocketStream::from_raw_socket(c, Role::Client, None).await,
            WebSocketStream::from_raw_socket(s, Role::Server, None).await,
        )
    }

    async fn send(ws: &mut Ws, text: &str) {
        ws.send(Message::text(text)).await.expect("send");
    }

    async fn recv(ws: &mut Ws) -> String {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn engine_io_4_sends_connect_and_answers_pings() {
        let (mut client, mut server) = pair().await;
        let serve = async {
            send(&mut server, r#"0{"sid":"e1","pingInterval":100}"#).await;
            assert_eq!(recv(&mut server).await, r#"40{"token":"t"}"#);
            send(&mut server, "2").await;
            assert_eq!(recv(&mut server).await, "3");
            send(&mut server, r#"40{"sid":"s1"}"#).await;
        };
        let (got, ()) = tokio::join!(connect(&mut client, Some(r#"40{"token":"t"}"#)), serve);
        let got = got.expect("connected");
        assert_eq!(got.open, r#"{"sid":"e1","pingInterval":100}"#);
        assert_eq!(frame::connect_sid(&got.answer), Ok("s1".to_owned()));
    }

    #[tokio::test]
    async fn engine_io_3_waits_for_the_unasked_connect() {
        let (mut client, mut server) = pair().await;
        let serve = async {
            send(&mut server, r#"0{"sid":"e1"}"#).await;
            send(&mut server, "40").await;
        };
        let (got, ()) = tokio::join!(connect(&mut client, None), serve);
        assert_eq!(got.expect("connected").answer, "40");
    }

    #[tokio::test]
    async fn a_refusal_and_a_wrong_order_are_errors() {
        let (mut client, mut server) = pair().await;
        let serve = async {
            send(&mut server, r#"0{"sid":"e1"}"#).await;
            recv(&mut server).await;
            send(&mut server, r#"44{"message":"no"}"#).await;
        };
        let (got, ()) = tokio::join!(connect(&mut client, Some("40")), serve);
        assert!(matches!(got, Err(HandshakeError::Refused(t)) if t == r#"44{"message":"no"}"#));

        let (mut client, mut server) = pair().await;
        let serve = async {
            send(&mut server, r#"0{"sid":"e1"}"#).await;
            recv(&mut server).await;
            send(&mut server, r#"42["early",1]"#).await;
        };
        let (got, ()) = tokio::join!(connect(&mut client, Some("40")), serve);
        assert!(
            matches!(got, Err(HandshakeError::Unexpected { .. })),
            "{got:?}"
        );

        let (mut client, mut server) = pair().await;
        let serve = async {
            send(&mut server, r#"40"#).await;
        };
        let (got, ()) = tokio::join!(connect(&mut client, None), serve);
        assert!(
            matches!(got, Err(HandshakeError::Unexpected { .. })),
            "{got:?}"
        );

        let (mut client, server) = pair().await;
        drop(server);
        assert!(connect(&mut client, None).await.is_err());
    }
}
