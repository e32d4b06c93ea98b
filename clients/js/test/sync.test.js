'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, room, waitFor, delay } = require('../testlib/harness');

let server;
const rooms = [];
before(async () => {
  server = await startServer({ AO_SYNC_PAGE_SIZE: '7' });
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

/** Asserts `r` delivered inserts with data 0..n-1 exactly once, in seq order 0..n-1. */
function assertExactly(r, n) {
  const inserts = r.got.filter((g) => g.meta.storage === 'insert');
  assert.deepEqual(
    inserts.map((g) => g.m.data),
    Array.from({ length: n }, (_, i) => i),
  );
  assert.deepEqual(
    inserts.map((g) => g.meta.seq),
    Array.from({ length: n }, (_, i) => i),
  );
}

for (const [label, opts] of [
  ['plain', {}],
  ['gzip (zlib)', { gzip: true }],
  ['gzip (DecompressionStream)', { gzip: true, gunzip: 'stream' }],
]) {
  test(`multi-page history is synced, then live messages follow: ${label}`, async () => {
    const roomId = `hist-${label}`;
    const a = await open('alice', roomId);
    for (let i = 0; i < 30; i++) await a.send(i);
    // Two updates of one msgId and one of another: only their latest versions are history.
    await a.send('draft-1', { storage: 'update', msgId: 'doc' });
    await a.send('draft-2', { storage: 'update', msgId: 'doc' });
    await a.send('title', { storage: 'update', msgId: 'title' });
    await a.send('typing', { storage: 'ignore' });

    const b = await open('bob', roomId, opts);
    // 30 inserts = 5 pages of 7 (the last page also carries the updates).
    assert.ok(b.stats.syncPages >= 5, `pages: ${b.stats.syncPages}`);
    assert.equal(b.lastSeq, 29);
    assert.ok(b.got.every((g) => g.meta.live === false));
    assert.equal(b.got[0].meta.uid, 'alice');
    const updates = b.got.filter((g) => g.meta.storage === 'update').map((g) => g.m.data);
    assert.deepEqual(updates.sort(), ['draft-2', 'title']);

    for (let i = 30; i < 40; i++) {
      const { seq } = await a.send(i);
      assert.equal(seq, i);
    }
    await a.send('draft-3', { storage: 'update', msgId: 'doc' });
    await waitFor(() => b.got.some((g) => g.m.data === 'draft-3'), 'live update');
    assertExactly(b, 40);
    assert.ok(b.got.filter((g) => g.meta.storage === 'insert' && g.meta.seq >= 30).every((g) => g.meta.live));
    assert.deepEqual(b.states.slice(0, 5), ['connecting', 'authenticating', 'joining', 'syncing', 'live']);
  });
}

test('a live burst during the sync: every message exactly once, in seq order', async () => {
  const roomId = 'burst';
  const a = await open('carol', roomId);
  // The burst goes on until dave syncs and AFTER more messages past that, so
  // it overlaps dave's sync however long dave takes to connect.
  const AFTER = 240;
  let d = null;
  let sent = 0;
  const sending = (async () => {
    const acks = [];
    let syncingAt = null;
    for (let i = 0; i < 5000 && (syncingAt === null || i <= syncingAt + AFTER); i++) {
      acks.push(a.send(i));
      sent++;
      if (i % 5 === 4) await delay(2);
      if (syncingAt === null && d && d.states.includes('syncing')) syncingAt = i;
    }
    return Promise.all(acks);
  })();
  await waitFor(() => sent >= 60, 'first messages sent');
  // dave joins mid-burst: its sync pages (7 per page, each handed over 20 ms
  // late so the sync surely spans the rest of the burst) race the live relays.
  const slowSync = (sock) => {
    const on = sock.on.bind(sock);
    sock.on = (event, fn) => on(event, event === 'sync' ? (r) => setTimeout(() => fn(r), 20) : fn);
  };
  d = await open('dave', roomId, { live: false, wrap: slowSync });
  let rawLive = 0;
  d.sock.on('msg', () => rawLive++);
  const acks = await sending;
  const N = acks.length;
  assert.deepEqual(
    acks.map((x) => x.seq),
    Array.from({ length: N }, (_, i) => i),
  );
  await waitFor(() => d.lastSeq === N - 1 && d.state === 'live', 'dave caught up', 10000);
  await delay(100);
  assertExactly(d, N);
  const liveDelivered = d.got.filter((g) => g.meta.live).length;
  const synced = d.got.length - liveDelivered;
  assert.ok(synced > 0, 'some history came from sync');
  // Relays of messages that the sync pages had already delivered were received and dropped.
  // (Relays that arrive before the join ack are ignored without counting: the sync covers them.)
  assert.ok(d.stats.duplicates > 0, `the burst overlapped the sync: raw ${rawLive}, live ${liveDelivered}`);
  assert.ok(d.stats.duplicates <= rawLive - liveDelivered, `raw ${rawLive}, live ${liveDelivered}`);
});

test('updates are delivered when their content changes, not again on resync', async () => {
  const roomId = 'updates';
  const a = await open('erin', roomId);
  const b = await open('frank', roomId);
  await a.send({ v: 1 }, { storage: 'update', msgId: 'm' });
  await waitFor(() => b.got.length === 1, 'update 1');
  // A reconnect resyncs: the last page repeats the update, which is not delivered again.
  b.sock.io.engine.close();
  await waitFor(() => b.state === 'connecting', 'disconnected');
  await waitFor(() => b.state === 'live', 'live again');
  await a.send({ v: 2 }, { storage: 'update', msgId: 'm' });
  await waitFor(() => b.got.length === 2, 'update 2');
  await delay(100);
  assert.deepEqual(
    b.got.map((g) => g.m.data),
    [{ v: 1 }, { v: 2 }],
  );
  assert.equal(b.got[1].meta.msgId, 'm');
});
