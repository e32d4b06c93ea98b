'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, startProxy, room, waitFor, delay } = require('../testlib/harness');

let server;
const rooms = [];
before(async () => {
  server = await startServer({ AO_SYNC_PAGE_SIZE: '20' });
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

/** Sends data 0..n-1 from `r`, one every `everyMs`, running `during(i)` after each. */
async function steady(r, n, everyMs, during) {
  const acks = [];
  for (let i = 0; i < n; i++) {
    acks.push(r.send(i));
    if (during) await during(i);
    await delay(everyMs);
  }
  return Promise.all(acks);
}

function assertExactlyInOrder(r, n) {
  const inserts = r.got.filter((g) => g.meta.storage === 'insert');
  const data = inserts.map((g) => g.m.data);
  const missing = [];
  for (let i = 0; i < n; i++) if (!data.includes(i)) missing.push(i);
  assert.deepEqual(missing, [], 'missing messages');
  assert.deepEqual(
    data,
    Array.from({ length: n }, (_, i) => i),
    'every message once, in order',
  );
  assert.deepEqual(
    inserts.map((g) => g.meta.seq),
    Array.from({ length: n }, (_, i) => i),
  );
}

test('connection cut mid-traffic (TCP proxy): resumed with no gap and no duplicate', async () => {
  const proxy = await startProxy(server.port);
  try {
    const a = await open('alice', 'cut');
    const b = await open('bob', 'cut', { url: proxy.url });
    const N = 500;
    let cuts = 0;
    const acks = await steady(a, N, 1, async (i) => {
      // Cut bob's connection three times while alice keeps sending.
      if (i === 100 || i === 250 || i === 400) {
        assert.ok(proxy.cut() > 0, 'a connection was cut');
        cuts++;
      }
    });
    assert.equal(cuts, 3);
    assert.deepEqual(
      acks.map((x) => x.seq),
      Array.from({ length: N }, (_, i) => i),
    );
    await waitFor(() => b.lastSeq === N - 1 && b.state === 'live', 'bob caught up', 15000);
    await delay(100);
    assertExactlyInOrder(b, N);
    // It did reconnect, and got part of the traffic from resumed syncs.
    assert.ok(b.states.filter((s) => s === 'authenticating').length >= 2, b.states.join(','));
    assert.ok(b.got.some((g) => !g.meta.live && g.meta.seq > 100), 'resumed sync delivered messages');
    assert.equal(b.resets, 0);
  } finally {
    await proxy.close();
  }
});

test('socket.io-client 2.x: engine closed mid-traffic, resumed with no gap and no duplicate', async () => {
  const a = await open('carol', 'sio2', { gen: 2 });
  const b = await open('dave', 'sio2', { gen: 2, gzip: true });
  const N = 300;
  await steady(a, N, 1, async (i) => {
    if (i === 80 || i === 200) b.sock.io.engine.close();
  });
  await waitFor(() => b.lastSeq === N - 1 && b.state === 'live', 'dave caught up', 15000);
  await delay(100);
  assertExactlyInOrder(b, N);
  assert.ok(b.states.filter((s) => s === 'authenticating').length >= 3, b.states.join(','));
  // A newcomer on the 2.x client syncs the whole history (gzip pages).
  const c = await open('erin', 'sio2', { gen: 2, gzip: true, transports: ['polling'] });
  assertExactlyInOrder(c, N);
});

test('epoch change: clear_room_msgs triggers reset and a resync from 0', async () => {
  const a = await open('frank', 'epoch');
  const b = await open('gina', 'epoch');
  for (let i = 0; i < 30; i++) await a.send(i);
  await waitFor(() => b.lastSeq === 29, 'gina got 30');
  const epoch1 = b.epoch;
  assert.ok(epoch1);

  // Cleared while gina is offline: her resume sync sees a new epoch.
  b.sock.disconnect();
  await waitFor(() => b.state === 'connecting', 'gina offline');
  const res = await server.admin('/admin/system/clear_room_msgs', { roomId: 'epoch' });
  assert.equal(res.meta.status, 0, JSON.stringify(res));
  for (let i = 0; i < 5; i++) assert.deepEqual(await a.send(`new-${i}`), { seq: i });
  let gotAtReset = -1;
  b.once('reset', () => {
    gotAtReset = b.got.length;
  });
  b.sock.connect();
  await waitFor(() => b.resets === 1 && b.state === 'live' && b.lastSeq === 4, 'gina reset and resynced');
  assert.equal(gotAtReset, 30, 'reset came before the redelivery');
  assert.notEqual(b.epoch, epoch1);
  assert.deepEqual(
    b.got.slice(30).map((g) => [g.m.data, g.meta.seq, g.meta.live]),
    Array.from({ length: 5 }, (_, i) => [`new-${i}`, i, false]),
  );

  // Cleared while gina is online: the next live insert has a seq she has
  // already seen; a check sync shows the new epoch.
  const epoch2 = b.epoch;
  const before = b.got.length;
  await server.admin('/admin/system/clear_room_msgs', { roomId: 'epoch' });
  assert.deepEqual(await a.send('after-clear'), { seq: 0 });
  await waitFor(() => b.resets === 2 && b.state === 'live' && b.got.length === before + 1, 'gina reset online');
  assert.notEqual(b.epoch, epoch2);
  assert.deepEqual(
    b.got.slice(before).map((g) => [g.m.data, g.meta.seq]),
    [['after-clear', 0]],
  );
  await a.send('then');
  await waitFor(() => b.lastSeq === 1, 'live again');
  assert.equal(b.got[b.got.length - 1].m.data, 'then');
});
