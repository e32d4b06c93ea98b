//! What one client may make the server do: msgs per connection and per
//! room (`AO_MSG_RATE`, `AO_ROOM_MSG_RATE`), failed authentications per
//! address (`AO_AUTH_FAILURES_PER_IP`), and the bytes of msgs waiting for
//! the store on this node (`AO_STORE_QUEUE_MAX_BYTES`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::logging::Chain;
use crate::rate::{Keyed, Limit};
use crate::redis::Redis;

/// Counts a room's msgs per second in Redis, so every node sees the same
/// count: one key per room and second, gone two seconds later. A fixed
/// window: a room may take up to twice its rate across a second boundary.
/// KEYS: the window's key. Returns the count so far.
const ROOM_WINDOW: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], 2000) end
return n
"#;

/// How a room's msg rate is kept.
enum RoomRate {
    Off,
    /// One node: a token bucket per room.
    Local(Keyed<String>),
    /// A cluster: a shared count per room and second in Redis.
    Shared {
        redis: Redis,
        per_second: u32,
    },
}

/// The limits of one node, in [`crate::app::AppState`].
pub struct Limits {
    msg: Option<Limit>,
    room: RoomRate,
    auth_failures: Option<Keyed<IpAddr>>,
    api_login_failures: Option<Keyed<IpAddr>>,
    /// Bytes of msgs submitted to the store and not completed.
    store_queued: AtomicUsize,
    store_queue_max: usize,
}

impl Limits {
    /// The limits `config` sets; a cluster's room rate is kept in `redis`.
    pub fn new(config: &Config, redis: Option<&Redis>) -> Limits {
        let room = match (config.room_msg_rate, redis) {
            (0, _) => RoomRate::Off,
            (rate, Some(redis)) => RoomRate::Shared {
                redis: redis.clone(),
                per_second: rate,
            },
            (rate, None) => match Limit::per_second(rate, 0) {
                Some(limit) => RoomRate::Local(Keyed::new(limit)),
                None => RoomRate::Off,
            },
        };
        Limits {
            msg: Limit::per_second(config.msg_rate, config.msg_burst),
            room,
            auth_failures: Limit::per_minute(config.auth_failures_per_ip).map(Keyed::new),
            api_login_failures: Limit::per_minute(config.api_login_failures_per_ip).map(Keyed::new),
            store_queued: AtomicUsize::new(0),
            store_queue_max: config.store_queue_max_bytes,
        }
    }

    /// The limit of one connection's msgs, if any.
    pub fn msg(&self) -> Option<Limit> {
        self.msg
    }

    /// Whether rooms' msg rates are limited.
    pub fn rooms_limited(&self) -> bool {
        !matches!(self.room, RoomRate::Off)
    }

    /// Counts a msg to `room`; false when the room is over its rate. A
    /// cluster whose Redis does not answer lets the msg through: the store
    /// refuses it then anyway, and a rate limit must not become an outage.
    pub async fn room_takes(&self, room: &str) -> bool {
        match &self.room {
            RoomRate::Off => true,
            RoomRate::Local(buckets) => buckets.take(&room.to_owned()),
            RoomRate::Shared { redis, per_second } => {
                let second = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let key = format!("{}:{second}", redis.keys.room_rate(room));
                match crate::redis::scripts::run::<i64>(
                    &redis.client,
                    ROOM_WINDOW,
                    vec![key],
                    Vec::new(),
                )
                .await
                {
                    Ok(n) => n <= i64::from(*per_second),
                    Err(e) => {
                        tracing::warn!(error = %Chain(&e), "room rate not counted");
                        true
                    }
                }
            }
        }
    }

    /// Whether `ip` may try to authenticate (it has not used up its failures).
    pub fn auth_allowed(&self, ip: Option<IpAddr>) -> bool {
        match (&self.auth_failures, ip) {
            (Some(failures), Some(ip)) => failures.allows(&ip),
            _ => true,
        }
    }

    /// Records a failed authentication from `ip`.
    pub fn auth_failed(&self, ip: Option<IpAddr>) {
        if let (Some(failures), Some(ip)) = (&self.auth_failures, ip) {
            failures.take(&ip);
        }
    }

    /// `Err(retry after)` when `ip` used up its failed API logins.
    pub fn api_login_allowed(&self, ip: Option<IpAddr>) -> Result<(), std::time::Duration> {
        match (&self.api_login_failures, ip) {
            (Some(failures), Some(ip)) if !failures.allows(&ip) => {
                Err(failures.limit().retry_after())
            }
            _ => Ok(()),
        }
    }

    /// Records a failed admin login on the HTTP APIs from `ip`.
    pub fn api_login_failed(&self, ip: Option<IpAddr>) {
        if let (Some(failures), Some(ip)) = (&self.api_login_failures, ip) {
            failures.take(&ip);
        }
    }

    /// Reserves `bytes` of the store's queue; false when it is full.
    pub fn store_reserve(&self, bytes: usize) -> bool {
        let max = self.store_queue_max;
        self.store_queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                let next = queued.checked_add(bytes)?;
                (next <= max).then_some(next)
            })
            .is_ok()
    }

    /// Gives back what [`Limits::store_reserve`] took.
    pub fn store_release(&self, bytes: usize) {
        self.store_queued.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Bytes of msgs waiting for the store now.
    pub fn store_queued(&self) -> usize {
        self.store_queued.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_queue_is_bounded_in_bytes() {
        let config = Config {
            store_queue_max_bytes: 100,
            ..Config::default()
        };
        let limits = Limits::new(&config, None);
        assert!(limits.store_reserve(60));
        assert!(limits.store_reserve(40));
        assert!(!limits.store_reserve(1), "full");
        limits.store_release(60);
        assert!(limits.store_reserve(50));
        assert_eq!(limits.store_queued(), 90);
    }

    #[tokio::test]
    async fn a_rooms_rate_is_its_own() {
        let config = Config {
            room_msg_rate: 2,
            ..Config::default()
        };
        let limits = Limits::new(&config, None);
        assert!(limits.room_takes("a").await);
        assert!(limits.room_takes("a").await);
        assert!(!limits.room_takes("a").await);
        assert!(limits.room_takes("b").await);
    }

    #[test]
    fn failed_authentications_are_counted_per_address() {
        let config = Config {
            auth_failures_per_ip: 2,
            ..Config::default()
        };
        let limits = Limits::new(&config, None);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        limits.auth_failed(Some(a));
        assert!(limits.auth_allowed(Some(a)));
        limits.auth_failed(Some(a));
        assert!(!limits.auth_allowed(Some(a)));
        assert!(limits.auth_allowed(Some(b)));
        assert!(limits.auth_allowed(None), "no address, no count");
    }
}
