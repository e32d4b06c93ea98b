//! A socket.io namespace: the application's connect handler for it, and
//! its sockets and rooms on this server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::conn::{Conn, Connector, Socket};
use crate::engine::Frame;
use crate::id::Id;
use crate::inner::lock;
use crate::outbox::QueueError;

/// A namespace's state.
pub(crate) struct Nsp {
    /// `/` or `/name`.
    pub(crate) name: Box<str>,
    pub(crate) connector: Box<dyn Connector>,
    /// Its sockets by socket id.
    pub(crate) sockets: Mutex<HashMap<Id, Arc<Conn>>>,
    /// Each room's members, shared with the broadcasts going on: a
    /// broadcast holds the list without copying it, and a join or leave
    /// copies it only while a broadcast holds it.
    pub(crate) rooms: Mutex<HashMap<Box<str>, Members>>,
}

/// A room's members on this server (see [`Nsp::rooms`]).
pub(crate) type Members = Arc<Vec<Arc<Conn>>>;

impl Nsp {
    pub(crate) fn new(name: Box<str>, connector: Box<dyn Connector>) -> Nsp {
        Nsp {
            name,
            connector,
            sockets: Mutex::new(HashMap::new()),
            rooms: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn join(&self, conn: &Arc<Conn>, room: &str) {
        {
            let mut state = conn.state();
            if state.gone || state.rooms.iter().any(|r| &**r == room) {
                return;
            }
            state.rooms.push(room.into());
        }
        let mut rooms = lock(&self.rooms);
        Arc::make_mut(rooms.entry(room.into()).or_default()).push(conn.clone());
    }

    pub(crate) fn leave(&self, conn: &Arc<Conn>, room: &str) {
        {
            let mut state = conn.state();
            let Some(i) = state.rooms.iter().position(|r| &**r == room) else {
                return;
            };
            state.rooms.swap_remove(i);
        }
        self.remove_member(conn, room);
    }

    pub(crate) fn remove_member(&self, conn: &Arc<Conn>, room: &str) {
        let mut rooms = lock(&self.rooms);
        if let Some(members) = rooms.get_mut(room) {
            if let Some(i) = members.iter().position(|m| Arc::ptr_eq(m, conn)) {
                Arc::make_mut(members).swap_remove(i);
            }
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }
}

/// What one broadcast did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Connections the frame was queued for.
    pub sent: u64,
    /// Connections whose queue was full (they are being disconnected).
    pub dropped: u64,
}

/// A handle to one namespace of a server ([`crate::Server::of`]). Cheap
/// to clone.
#[derive(Clone)]
pub struct Namespace(pub(crate) Arc<Nsp>);

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Namespace").field(&self.0.name).finish()
    }
}

impl Namespace {
    /// The namespace's name (`/` or `/name`).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The socket with id `id`, if it is connected to this namespace here.
    pub fn socket(&self, id: &str) -> Option<Socket> {
        let id = Id::parse(id)?;
        lock(&self.0.sockets).get(&id).cloned().map(Socket)
    }

    /// Every socket connected to the namespace now.
    pub fn sockets(&self) -> Vec<Socket> {
        lock(&self.0.sockets)
            .values()
            .filter(|c| c.is_connected())
            .cloned()
            .map(Socket)
            .collect()
    }

    /// The members of `room` on this server.
    pub fn room(&self, room: &str) -> Vec<Socket> {
        lock(&self.0.rooms)
            .get(room)
            .map(|m| m.iter().cloned().map(Socket).collect())
            .unwrap_or_default()
    }

    /// Builds the frame of event `name` with one argument in this
    /// namespace, to encode once and send to many.
    pub fn event_frame<T: serde::Serialize + ?Sized>(&self, name: &str, data: &T) -> Frame {
        super::conn::event_frame_in(&self.0.name, name, data, None)
    }

    /// Queues `frame` (built once, by [`Namespace::event_frame`] or, on
    /// `/`, [`crate::event_frame`]) for every member of `room` but
    /// `except`. A member whose queue is full is disconnected as a slow
    /// client and counted in [`Delivery::dropped`].
    pub fn broadcast(&self, room: &str, frame: &Frame, except: Option<&Socket>) -> Delivery {
        let members = lock(&self.0.rooms).get(room).cloned();
        let mut delivery = Delivery::default();
        for conn in members.iter().flat_map(|m| m.iter()) {
            if except.is_some_and(|x| Arc::ptr_eq(&x.0, conn)) {
                continue;
            }
            match conn.push(frame.clone()) {
                Ok(()) => delivery.sent += 1,
                Err(QueueError::Full) => delivery.dropped += 1,
                Err(QueueError::Closed) => {}
            }
        }
        delivery
    }
}
