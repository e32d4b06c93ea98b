//! The Lua scripts that make multi-key changes atomic, and the one way they
//! are run: `EVAL` with the script's text, sent once and never retried.
//!
//! Not `EVALSHA`: after Redis restarts its script cache is empty, and the
//! `EVAL` that retries a refused `EVALSHA` goes out after commands sent
//! meanwhile, which would reorder one sender's messages.

use fred::prelude::{Client, ClientLike, FromValue};
use fred::types::{ClusterHash, CustomCommand, Value};

use super::RedisError;

/// Runs `script` and converts its reply to `R`.
///
/// Sent as a custom `EVAL` command rather than with fred's
/// `LuaInterface::eval`: fred 10.1's `WithOptions` does not implement that
/// interface, so `client.with_options(..).eval(..)` reaches the plain client
/// through `Deref` and drops the options. A script sent while Redis was
/// unreachable then waited for its whole timeout (3 s for every join, leave
/// and login) instead of failing at once like every other command.
pub(crate) async fn run<R: FromValue>(
    client: &Client,
    script: &str,
    keys: Vec<String>,
    args: Vec<String>,
) -> Result<R, RedisError> {
    // On a Redis Cluster the script runs where its first key lives (a
    // custom command routes only by an explicit slot).
    let hash = keys.first().map_or(ClusterHash::Random, |key| {
        ClusterHash::Custom(fred::util::redis_keyslot(key.as_bytes()))
    });
    let mut eval: Vec<Value> = Vec::with_capacity(2 + keys.len() + args.len());
    eval.push(script.into());
    eval.push(Value::Integer(keys.len() as i64));
    eval.extend(keys.into_iter().map(Value::from));
    eval.extend(args.into_iter().map(Value::from));
    Ok(client
        .with_options(&super::once())
        .custom(CustomCommand::new_static("EVAL", hash, false), eval)
        .await?)
}

/// Appends an insert and publishes it, atomically.
/// KEYS: insert list, epoch. ARGV: the message's JSON without its closing
/// brace, the frame head to publish it in, the room's channel, a fresh epoch.
/// Returns `{seq, ts}`.
pub(crate) const INSERT: &str = r#"
local t = redis.call('TIME')[1]
local n = redis.call('LLEN', KEYS[1])
local msg = ARGV[1] .. ',"seq":' .. n .. '}'
redis.call('RPUSH', KEYS[1], '{"data":' .. msg .. ',"ts":' .. t .. '}')
redis.call('SET', KEYS[2], ARGV[4], 'NX')
redis.call('SPUBLISH', ARGV[3], ARGV[2] .. msg .. '}')
return {n, tonumber(t)}
"#;

/// Replaces an update (keeping the one it replaces in the backup hash),
/// records the update order and publishes it, atomically. The original
/// service kept its backups as a list under the same key, which nothing
/// reads: such a list is left as it is rather than written to as a hash.
/// KEYS: update hash, backup hash, order zset, epoch. ARGV: message JSON,
/// msgId, frame head, channel, fresh epoch.
pub(crate) const UPDATE: &str = r#"
local t = redis.call('TIME')[1]
local old = redis.call('HGET', KEYS[1], ARGV[2])
if old and redis.call('TYPE', KEYS[2])['ok'] ~= 'list' then
  redis.call('HSET', KEYS[2], ARGV[2], old)
end
redis.call('HSET', KEYS[1], ARGV[2], '{"data":' .. ARGV[1] .. ',"ts":' .. t .. '}')
local top = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
local s = 1
if top[2] then s = tonumber(top[2]) + 1 end
redis.call('ZADD', KEYS[3], s, ARGV[2])
redis.call('SET', KEYS[4], ARGV[5], 'NX')
redis.call('SPUBLISH', ARGV[4], ARGV[3] .. ARGV[1] .. '}')
return tonumber(t)
"#;

/// One page of inserts with the history's length and epoch (created if
/// missing): up to `limit` elements from `offset` whose bytes stay within
/// `max bytes` (at least one; 0: no byte limit), read in chunks so a page
/// of large elements is not read whole.
/// KEYS: insert list, epoch. ARGV: offset, limit, fresh epoch, max bytes.
/// Returns `{len, epoch, items}`.
pub(crate) const PAGE: &str = r#"
local len = redis.call('LLEN', KEYS[1])
local e = redis.call('GET', KEYS[2])
if not e then
  e = ARGV[3]
  redis.call('SET', KEYS[2], e)
end
local from = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local maxb = tonumber(ARGV[4])
local items = {}
local bytes = 0
while from < len and #items < limit do
  local n = math.min(limit - #items, 50)
  local chunk = redis.call('LRANGE', KEYS[1], from, from + n - 1)
  if #chunk == 0 then break end
  for _, it in ipairs(chunk) do
    if maxb > 0 and #items > 0 and bytes + #it > maxb then return {len, e, items} end
    bytes = bytes + #it
    table.insert(items, it)
  end
  from = from + #chunk
end
return {len, e, items}
"#;

/// One page of a room's updates that have an order record, after order
/// key `after`, whose bytes stay within `max bytes` (at least one); or
/// `{"legacy"}` when some updates have no order record (the original
/// service's), which the caller pages itself.
/// KEYS: update hash, order zset. ARGV: after, max bytes.
/// Returns `{more, key1, element1, key2, element2, ...}`.
pub(crate) const UPDATES_PAGE: &str = r#"
if redis.call('HLEN', KEYS[1]) > redis.call('ZCARD', KEYS[2]) then return {'legacy'} end
local maxb = tonumber(ARGV[2])
local out = {0}
local bytes = 0
local after = '(' .. ARGV[1]
while true do
  local ids = redis.call('ZRANGEBYSCORE', KEYS[2], after, '+inf', 'WITHSCORES', 'LIMIT', 0, 50)
  if #ids == 0 then return out end
  for i = 1, #ids, 2 do
    local el = redis.call('HGET', KEYS[1], ids[i])
    if el then
      if #out > 1 and bytes + #el > maxb then
        out[1] = 1
        return out
      end
      bytes = bytes + #el
      table.insert(out, ids[i + 1])
      table.insert(out, el)
    end
    after = '(' .. ids[i + 1]
  end
end
"#;

/// Deletes a room's history, starts a new epoch and tells every node the
/// room's seqs start again (in the same step, so no insert slips between).
/// KEYS: insert, update, backup, order, ignore, epoch. ARGV: new epoch,
/// channel, reset frame.
pub(crate) const CLEAR: &str = r#"
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('SET', KEYS[6], ARGV[1])
redis.call('SPUBLISH', ARGV[2], ARGV[3])
return 1
"#;

/// Publishes a numbered presence event and keeps it in the room's presence
/// log, atomically: a node whose subscriber missed the event reads it back
/// from the log ([`crate::redis::Redis::presence_log`]). The log keeps the
/// room's last `cap` events, for `ttl` seconds after the last one.
/// KEYS: the room's presence log. ARGV: the event's presence seq, the
/// frame, the room's channel, cap, ttl.
pub(crate) const PRESENCE: &str = r#"
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[4]) + 1))
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SPUBLISH', ARGV[3], ARGV[2])
return 1
"#;

/// The frames of a room's presence log numbered after ARGV[1].
/// KEYS: the room's presence log.
pub(crate) const PRESENCE_AFTER: &str = r#"
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
"#;

/// Lua that sets `seq` to the next presence seq, the counter being KEYS[5].
/// A counter that is missing (a fresh Redis, or one that lost its data
/// while nodes kept their members' numbers) starts from the current time in
/// microseconds, so numbers keep growing across such a loss as long as
/// there were fewer presence changes than microseconds since the last one
/// started. Returned as text (`%d`): `tostring` would round numbers this
/// large.
macro_rules! next_presence_seq {
    () => {
        r#"
if redis.call('EXISTS', KEYS[5]) == 0 then
  local now = redis.call('TIME')
  redis.call('SET', KEYS[5], string.format('%d', tonumber(now[1]) * 1000000 + tonumber(now[2])))
end
local seq = redis.call('INCR', KEYS[5])
"#
    };
}

/// Adds a member to a room; returns the join's presence seq (the next value
/// of the counter every join and leave takes, also its score in the room),
/// then the members before it, in join order; nothing when an existing
/// entry was kept.
/// KEYS: room zset, members hash, rooms set, node's member set, presence counter.
/// ARGV: room, sid, member JSON, "1" to leave an existing entry as it is.
pub(crate) const JOIN: &str = concat!(
    r#"
if ARGV[4] == '1' and redis.call('ZSCORE', KEYS[1], ARGV[2]) then return {} end
local before = redis.call('ZRANGE', KEYS[1], 0, -1)
"#,
    next_presence_seq!(),
    r#"
local out = {string.format('%d', seq)}
for _, sid in ipairs(before) do
  if sid ~= ARGV[2] then
    local m = redis.call('HGET', KEYS[2], sid)
    if m then table.insert(out, m) end
  end
end
redis.call('ZADD', KEYS[1], seq, ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[2])
return out
"#
);

/// Removes a member from a room; returns its JSON and the leave's presence
/// seq, or nil if it was not there.
/// KEYS: room zset, members hash, rooms set, node's member set, presence
/// counter. ARGV: room, sid.
pub(crate) const LEAVE: &str = concat!(
    r#"
redis.call('SREM', KEYS[4], ARGV[2])
if redis.call('ZREM', KEYS[1], ARGV[2]) == 0 then return false end
local m = redis.call('HGET', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[2], ARGV[2])
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[1]) end
if not m then return false end
"#,
    next_presence_seq!(),
    r#"
return {m, string.format('%d', seq)}
"#
);

/// The members of a room in join order.
/// KEYS: room zset, members hash.
pub(crate) const MEMBERS: &str = r#"
local out = {}
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local m = redis.call('HGET', KEYS[2], sid)
  if m then table.insert(out, m) end
end
return out
"#;

/// Makes `sid` the connection of a uid; returns the one it replaces.
/// KEYS: the uid's connection key, connections hash, node's connection set.
/// ARGV: sid, connection JSON.
pub(crate) const REGISTER: &str = r#"
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
if old and old ~= ARGV[1] then
  redis.call('HDEL', KEYS[2], old)
  return {old}
end
return {}
"#;

/// Registers `sid` again as the connection of a uid (after Redis missed
/// this node's state) unless a newer login of the uid took its place
/// meanwhile: 1 if registered, 0 if superseded.
/// KEYS: the uid's connection key, connections hash, node's connection set.
/// ARGV: sid, connection JSON.
pub(crate) const REREGISTER: &str = r#"
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"#;

/// Forgets a connection.
/// KEYS: the uid's connection key, connections hash, node's connection set. ARGV: sid.
pub(crate) const UNREGISTER: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
"#;

/// Counts an authentication in the uid's fixed window; 1 if allowed.
/// KEYS: the uid's window counter. ARGV: limit, window seconds.
pub(crate) const RATE: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
return 1
"#;

/// Takes responsibility for cleaning up after a node whose heartbeat
/// expired: 1 for exactly one caller, who also marks the node as reaped
/// for a day (should it come back, it announces its members again).
/// KEYS: the node's heartbeat, nodes set, the node's reaped marker.
/// ARGV: node id.
pub(crate) const CLAIM: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local claimed = redis.call('SREM', KEYS[2], ARGV[1])
if claimed == 1 then redis.call('SET', KEYS[3], '1', 'EX', 86400) end
return claimed
"#;

/// Creates an account unless it exists: 1 if created.
/// KEYS: the account hash. ARGV: token hash, now.
pub(crate) const ACCOUNT_CREATE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'token_hash', ARGV[1], 'created', ARGV[2], 'updated', ARGV[2])
return 1
"#;

/// Replaces an existing account's token: 1 if it existed.
/// KEYS: the account hash. ARGV: token hash, now.
pub(crate) const ACCOUNT_REFRESH: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'token_hash', ARGV[1], 'updated', ARGV[2])
return 1
"#;

/// Sets an account's token, creating the account if needed.
/// KEYS: the account hash. ARGV: token hash, now.
pub(crate) const ACCOUNT_ENSURE: &str = r#"
redis.call('HSETNX', KEYS[1], 'created', ARGV[2])
redis.call('HSET', KEYS[1], 'token_hash', ARGV[1], 'updated', ARGV[2])
return 1
"#;
