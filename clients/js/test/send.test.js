'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, room, waitFor, delay, once, socket, delayAcks } = require('../testlib/harness');
const { createRoom, AckError } = require('..');

let server;
const rooms = [];
before(async () => {
  server = await startServer({ AO_MAX_MSG_BYTES: '200' });
});
after(async () => {
  for (const r of rooms) r.close();
  await server.stop();
});

async function open(uid, roomId, opts) {
  const r = await room(server, uid, roomId, opts);
  rooms.push(r);
  return r;
}

test('send resolves with the seq of an insert, {} for update and ignore', async () => {
  const a = await open('alice', 'acks');
  const b = await open('bob', 'acks');
  assert.deepEqual(await a.send('x'), { seq: 0 });
  assert.deepEqual(await b.send('y'), { seq: 1 });
  assert.deepEqual(await a.send('u', { storage: 'update', msgId: 'k' }), {});
  assert.deepEqual(await a.send('t', { storage: 'ignore' }), {});
  await waitFor(() => b.got.length === 3, 'bob got 3');
  assert.deepEqual(
    b.got.map((g) => [g.m.data, g.meta.storage, g.meta.live]),
    [
      ['x', 'insert', true],
      ['u', 'update', true],
      ['t', 'ignore', true],
    ],
  );
  // Own inserts are not delivered back, and count as seen: a resync brings nothing new.
  await waitFor(() => a.lastSeq === 1, 'alice saw seq 1');
  assert.deepEqual(
    a.got.map((g) => g.m.data),
    ['y'],
  );
});

test('send rejects with the server reason for a too large message', async () => {
  const a = await open('carol', 'big');
  const b = await open('dave', 'big');
  await assert.rejects(a.send('x'.repeat(500)), (err) => {
    assert.ok(err instanceof AckError);
    assert.equal(err.message, 'message too large');
    assert.equal(err.status, 4);
    return true;
  });
  assert.deepEqual(await a.send('small'), { seq: 0 });
  await waitFor(() => b.got.length === 1, 'small arrives');
  await delay(100);
  assert.deepEqual(
    b.got.map((g) => g.m.data),
    ['small'],
  );
});

test('a dummy observes but cannot send', async () => {
  const a = await open('erin', 'watch');
  const d = await open('watcher', 'watch', { dummy: true });
  await a.send(1);
  await waitFor(() => d.got.length === 1, 'dummy got the msg');
  await assert.rejects(d.send(2), /dummy/);
});

test('retries after ack timeouts: a msg stored several times is delivered once', async () => {
  // Acks reach the room 250 ms late and it waits 100 ms: the msg goes out
  // at 0, 100 and 200 ms (2 retries), is stored three times, and the first
  // ack, arriving after its timeout, settles the send.
  const a = await open('frank', 'retry', { ackTimeoutMs: 100, retries: 2, wrap: (s) => delayAcks(s, 250) });
  const b = await open('gina', 'retry');
  let raw = 0;
  b.sock.on('msg', () => raw++);
  assert.deepEqual(await a.send('once'), { seq: 0 });
  await waitFor(() => raw === 3, 'three stored copies relayed');
  await delay(100);
  assert.equal(raw, 3);
  assert.deepEqual(
    b.got.map((g) => g.m.data),
    ['once'],
  );
  assert.equal(b.lastSeq, 2);
  // A newcomer syncing the history also sees it once.
  const c = await open('hank', 'retry');
  assert.deepEqual(
    c.got.map((g) => g.m.data),
    ['once'],
  );
  // The sender only knew seq 0 as its own: gina's next msg (seq 3) shows a
  // hole at 1..2, which a sync fills with the copies, dropped by their _cid.
  assert.deepEqual(await b.send('next'), { seq: 3 });
  await waitFor(() => a.lastSeq === 3, 'sender caught up');
  assert.deepEqual(
    a.got.map((g) => [g.m.data, g.meta.seq]),
    [['next', 3]],
  );
  assert.equal(a.stats.resyncs, 1);
  // With retries exhausted, send rejects.
  const z = await open('zed', 'retry2', { ackTimeoutMs: 50, retries: 1, wrap: (s) => delayAcks(s, 400) });
  await assert.rejects(z.send('lost?'), /ack timeout/);
});

test('presence, system and kickout events', async () => {
  const a = await open('ivan', 'pres');
  const seen = [];
  a.on('presence', (p) => seen.push(p));
  const b = await open('judy', 'pres');
  await waitFor(() => seen.some((p) => p.type === 'sync'), 'remote_sync');
  assert.deepEqual(seen.slice(0, 2), [
    { type: 'join', uid: 'judy' },
    { type: 'sync', uid: 'judy' },
  ]);
  const sys = once(a, 'system');
  const res = await server.admin('/admin/system/push', { roomId: 'pres', content: { hello: 1 } });
  assert.equal(res.meta.status, 0);
  assert.deepEqual(await sys, { hello: 1 });
  // judy logs in elsewhere: the old room is kicked out and stays closed.
  const kicked = once(b, 'kickout');
  const b2 = await open('judy', 'pres');
  await kicked;
  await waitFor(() => b.state === 'closed', 'kicked room closed');
  await assert.rejects(b.send(1), /closed/);
  b2.leave();
  await waitFor(() => seen.some((p) => p.type === 'leave'), 'remote_leave');
  assert.equal(b2.state, 'closed');
});

test('wrong credentials close the room with an error', async () => {
  const sock = socket(server.url);
  const r = createRoom(sock, { uid: 'nobody', token: 'nope', roomId: 'x' });
  const err = await once(r, 'error');
  assert.match(err.message, /auth failed/);
  await waitFor(() => r.state === 'closed', 'closed');
  sock.close();
});
