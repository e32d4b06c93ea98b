//! The answer to a client's event: sent when the client asked for one,
//! nothing otherwise.

use serde::Serialize;

/// A client event's ack, if the client asked for one.
#[derive(Debug)]
pub(super) struct AckSender(Option<ao_socketio::AckSender>);

impl AckSender {
    /// The ack of an event (none when the client did not ask).
    pub(super) fn new(ack: Option<ao_socketio::AckSender>) -> Self {
        AckSender(ack)
    }

    /// Sends `data` as the ack's argument, if the client asked for an ack.
    pub(super) fn send<T: Serialize + ?Sized>(
        self,
        data: &T,
    ) -> Result<(), ao_socketio::SendError> {
        match self.0 {
            Some(ack) => ack.send(data),
            None => Ok(()),
        }
    }
}
