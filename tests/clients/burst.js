'use strict';
// Bursts of un-acknowledged inserts (issue 17 item 1). When socket.io-client
// reconnects it flushes every emit it buffered meanwhile at once, without
// waiting for anything; the server must keep every one of them, in order,
// and keep answering that connection (a `sync` right after the burst).
//
// Each case: a sender and a receiver (another uid) join a fresh room; the
// sender emits N `msg` inserts ({data: {i, p}, s: 0}, ~100 bytes of JSON
// each) synchronously in one loop, no acks, then a `sync {offset: 0}` in the
// same tick. Checked, each as a subtest of its own:
//   - the receiver gets every insert exactly once, in send order, stamped
//     with the sender's uid and seq = i;
//   - the sync emitted right after the burst is answered, with a prefix page
//     of the room's history (seq 0..k-1, the sender's inserts in order);
//   - /metrics: ao_messages_dropped_total is 0 for every reason (and
//     ao_disconnects_total, where exported); neither client was disconnected;
//   - a fresh client (a third uid) joins and syncs the room page by page,
//     following `offset` while `next` is 1, and gets all N inserts exactly
//     once, in order, seq 0..N-1 (on a cluster: one fresh client per node).
//
// Over polling, socket.io-client 2.x (engine.io-client 3) sends everything
// it buffered in one POST, whatever its size: 20,000 such inserts make one
// ~2.2 MB request body, which the server must take too (engine.io 3 servers
// took up to 100 MB). 4.x (engine.io-client 6) splits its POSTs at the max
// payload the server announces.
//
// defineBurstSuite() is run by burst.test.js against one server and by
// cluster-burst.test.js against a 2-node cluster, where the sender is on
// node 0 and the receiver on node 1.
//
// The events are counted by listeners of their own, not awaited one by one:
// a case ends when all N arrived, or fails when nothing new arrived for
// STALL_MS (the lost ones would never come).

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');

const h = require('./harness');

/** The default sync_page_size (the servers here run with the defaults). */
const PAGE = 200;
/** A burst that made no progress for this long has lost what it still waits for. */
const STALL_MS = 10000;
/** How long the sync emitted after the burst may take once the burst is delivered (3 s if it stalled). */
const SYNC_AFTER_MS = 15000;
/** Watched after the last expected msg, for duplicates or extras. */
const QUIET_MS = 500;
/** Padding that makes each msg ~100 bytes of JSON. */
const PAD = 'x'.repeat(64);

/** The i-th insert of a burst (~100 bytes). */
function insert(i) {
  return { data: { i, p: PAD }, s: 0 };
}

/**
 * `null` if `values` is exactly 0..n-1, else what is wrong with it: how many
 * arrived, missing, duplicated, out of order.
 */
function sequenceProblem(values, n) {
  if (values.length === n && values.every((v, k) => v === k)) return null;
  const seen = new Map();
  for (const v of values) seen.set(v, (seen.get(v) || 0) + 1);
  const missing = [];
  for (let k = 0; k < n; k++) if (!seen.has(k)) missing.push(k);
  const dup = [...seen].filter(([, c]) => c > 1).length;
  const extra = [...seen.keys()].filter((v) => !(Number.isInteger(v) && v >= 0 && v < n));
  const disorder = values.findIndex((v, k) => k > 0 && !(v > values[k - 1]));
  const parts = [`got ${values.length} of ${n}`];
  if (missing.length) {
    // Ranges of missing indices, the first few.
    const ranges = [];
    for (let k = 0; k < missing.length && ranges.length < 5; k++) {
      let j = k;
      while (j + 1 < missing.length && missing[j + 1] === missing[j] + 1) j++;
      ranges.push(j > k ? `${missing[k]}..${missing[j]}` : `${missing[k]}`);
      k = j;
    }
    parts.push(`missing ${missing.length} (${ranges.join(', ')}${ranges.length === 5 ? ', …' : ''})`);
  }
  if (dup) parts.push(`${dup} indices more than once`);
  if (extra.length) parts.push(`${extra.length} unexpected values (first ${JSON.stringify(extra[0])})`);
  if (disorder >= 0) parts.push(`first out of order at position ${disorder}: ${values[disorder - 1]} then ${values[disorder]}`);
  return parts.join('; ');
}

/** Records every `event` a client receives, with the time of the last one. */
function collect(client, event) {
  const col = { got: [], lastAt: Date.now() };
  client.socket.on(event, (m) => {
    col.got.push(m);
    col.lastAt = Date.now();
  });
  return col;
}

/**
 * Waits until `col` has `n` events (then QUIET_MS more, for extras), or
 * nothing new arrived for STALL_MS, or `capMs` passed. Returns how it ended.
 */
async function waitCount(col, n, capMs) {
  const start = Date.now();
  for (;;) {
    if (col.got.length >= n) {
      await h.delay(QUIET_MS);
      return 'complete';
    }
    if (Date.now() - col.lastAt > STALL_MS) return `stalled (nothing new for ${STALL_MS} ms)`;
    if (Date.now() - start > capMs) return `gave up after ${capMs} ms`;
    await h.delay(25);
  }
}

/** The non-zero entries of { reason: count }. */
function nonZeroOf(counts) {
  return Object.fromEntries(Object.entries(counts).filter(([, v]) => v !== 0));
}

/** The lifecycle events a client saw (disconnects, reconnects), for failure messages. */
function lifecycle(c) {
  const evs = c.entries.filter((e) => ['connect', 'disconnect', 'connect_error', 'reconnect_attempt'].includes(e.event));
  return evs.map((e) => `${e.event}${e.args.length ? ` ${JSON.stringify(e.args[0])}` : ''}`).join(', ') || 'none';
}

/**
 * Syncs `roomId` from offset 0 with member `c`, page by page, following
 * `offset` while `next` is 1; returns every message and the pages' shapes.
 */
async function syncAll(c, n) {
  const all = [];
  const pages = [];
  let offset = 0;
  const maxPages = Math.ceil(n / PAGE) + 5;
  for (;;) {
    c.emit('sync', { offset });
    const page = await c.next('sync', 20000);
    assert.ok(Array.isArray(page.data), `${c.label}: sync page data is an array: ${JSON.stringify(page).slice(0, 200)}`);
    pages.push({ at: offset, len: page.data.length, offset: page.offset, next: page.next });
    all.push(...page.data);
    if (page.next !== 1) break;
    assert.equal(page.offset, offset + page.data.length, `${c.label}: next offset = request offset + items (page at ${offset})`);
    assert.ok(page.offset > offset, `${c.label}: the offset moves on (page at ${offset})`);
    offset = page.offset;
    assert.ok(pages.length <= maxPages, `${c.label}: more than ${maxPages} pages for ${n} inserts`);
  }
  return { all, pages };
}

/**
 * `cluster`: run against that many nodes sharing a private Redis (sender on
 * node 0, receiver on node 1, a fresh syncing client on each node).
 * `cases`: [gen, mode, n] triples.
 */
function defineBurstSuite({ cluster = 0, cases }) {
  const where = cluster ? ` on a ${cluster}-node cluster (sender on node 0, receiver on node 1)` : '';
  describe(`a burst of un-acknowledged inserts is kept whole and in order${where}`, () => {
    let server;
    /** One pool per node (the cluster's nodes, or the one server). */
    let pools;
    let counter = 0;

    before(async () => {
      server = cluster ? await h.startCluster({ nodes: cluster }) : await h.startServer();
      pools = (server.nodes || [server]).map((node) => new h.Pool(node));
    });
    // Not afterEach: node:test runs it after every subtest too (each case's
    // checks are subtests), and that would close the clients between checks.
    after(async () => {
      if (pools) pools.forEach((p) => p.closeAll());
      if (server) await server.stop();
    });

    /** A member of `roomId` on node `i` (0 on a single server), uid labelled `name`. */
    async function member(i, gen, mode, name, roomId) {
      const pool = pools[i % pools.length];
      const uid = `burst-${cluster ? 'c' : 's'}${gen}${mode[0]}-${name}-${++counter}`;
      const c = await pool.member(gen, mode, uid, roomId);
      if (cluster) c.label += `@n${i % pools.length}`;
      return c;
    }

    for (const [gen, mode, n] of cases) {
      // 2,000 takes a few seconds; 20,000 over polling may take tens of seconds.
      const timeout = n > 5000 ? 240000 : 90000;
      it(`socket.io-client ${gen}.x over ${mode}: ${n} ~100-byte inserts emitted at once without acks`, { timeout }, async (t) => {
        try {
          const roomId = `burst-${gen}-${mode}-${n}-${++counter}`;
          const sender = await member(0, gen, mode, 'sender', roomId);
          const receiver = await member(1, gen, mode, 'receiver', roomId);
          assert.deepEqual(await sender.next('remote_join', 10000), { uid: receiver.uid });
          assert.deepEqual(await receiver.next('remote_join', 10000), { uid: sender.uid });
          const droppedBefore = await h.droppedMessages(server);

          const col = collect(receiver, 'msg');
          const t0 = Date.now();
          for (let i = 0; i < n; i++) sender.emit('msg', insert(i));
          sender.emit('sync', { offset: 0 });
          const emitMs = Date.now() - t0;

          const ended = await waitCount(col, n, timeout - 30000);
          const deliverMs = Date.now() - t0;
          let syncReply = null;
          let syncError = null;
          try {
            // The sync is handled after the burst: once the receiver stalled
            // the server is done with it, so a short wait shows a lost one.
            syncReply = await sender.next('sync', ended === 'complete' ? SYNC_AFTER_MS : 3000);
          } catch (e) {
            syncError = e;
          }
          const dropped = await h.droppedMessages(server);
          const disconnects = await h.countsByReason(server, 'ao_disconnects_total');
          const droppedNow = Object.fromEntries(
            Object.entries(dropped).map(([r, v]) => [r, v - (droppedBefore[r] || 0)]),
          );
          t.diagnostic(
            `${n} emitted in ${emitMs} ms; receiver: ${col.got.length} msgs, ${ended} after ${deliverMs} ms; ` +
              `sync after the burst: ${syncReply ? `answered (${syncReply.data.length} items, next ${syncReply.next})` : 'no answer'}; ` +
              `dropped during the burst: ${JSON.stringify(nonZeroOf(droppedNow))}; server disconnects: ${JSON.stringify(nonZeroOf(disconnects))}`,
          );
          const context =
            `(receiver ${ended}; sender saw: ${lifecycle(sender)}; receiver saw: ${lifecycle(receiver)}; ` +
            `ao_messages_dropped_total during the burst: ${JSON.stringify(nonZeroOf(droppedNow))})`;

          await t.test(`the receiver gets all ${n} exactly once, in send order, stamped and with seq`, () => {
            const problem = sequenceProblem(col.got.map((m) => m && m.data && m.data.i), n);
            assert.equal(problem, null, `${receiver.label}: ${problem} ${context}`);
            col.got.forEach((m, k) => {
              if (m['2'] !== sender.uid || m.seq !== k || m.s !== 0 || m.data.p !== PAD) {
                assert.deepEqual(m, { ...insert(k), '2': sender.uid, seq: k }, `${receiver.label}: msg #${k}`);
              }
            });
          });

          await t.test('the sync emitted right after the burst is answered with a prefix page of the history', () => {
            assert.ok(
              syncReply,
              `${sender.label}: no answer to the sync emitted after ${n} inserts: ${syncError && syncError.message.slice(0, 300)} ${context}`,
            );
            const page = syncReply;
            assert.ok(Array.isArray(page.data), `sync data: ${JSON.stringify(page).slice(0, 200)}`);
            const k = page.data.length;
            assert.ok(k <= PAGE, `at most a page (${PAGE}), got ${k}`);
            assert.equal(page.offset, k, 'offset = 0 + items');
            if (k < PAGE) assert.equal(page.next, 0, `a short page (${k}) is the last one`);
            page.data.forEach((m, j) => {
              assert.deepEqual(m, { ...insert(j), '2': sender.uid, seq: j }, `${sender.label}: sync item ${j}`);
            });
            t.diagnostic(`sync after the burst: ${k} items, offset ${page.offset}, next ${page.next}`);
          });

          await t.test('nothing is dropped or disconnected (/metrics and both clients)', () => {
            assert.ok(Object.keys(dropped).length > 0, '/metrics exports ao_messages_dropped_total{reason=…}');
            const changed = Object.entries(dropped).filter(([r, v]) => v !== (droppedBefore[r] || 0));
            assert.deepEqual(
              Object.fromEntries(changed),
              {},
              `ao_messages_dropped_total grew during the burst (before ${JSON.stringify(droppedBefore)})`,
            );
            // Nothing else on this server drops anything: every reason is still 0
            // (queue_full, the reason of the bug, or whatever replaces it).
            const nonZero = Object.entries(dropped).filter(([, v]) => v !== 0);
            assert.deepEqual(Object.fromEntries(nonZero), {}, 'ao_messages_dropped_total: every reason is 0');
            const closedNonZero = Object.entries(disconnects).filter(([, v]) => v !== 0);
            assert.deepEqual(Object.fromEntries(closedNonZero), {}, 'ao_disconnects_total (if exported): every reason is 0');
            for (const c of [sender, receiver]) {
              assert.equal(lifecycle(c), 'connect', `${c.label}: connected once, never disconnected`);
              assert.equal(c.socket.connected, true, `${c.label}: still connected`);
            }
          });

          for (let i = 0; i < pools.length; i++) {
            await t.test(`a fresh client${cluster ? ` on node ${i}` : ''} syncs all ${n} page by page, in order, seq 0..${n - 1}`, async () => {
              const fresh = await member(i, gen, mode, 'late', roomId);
              const t1 = Date.now();
              const { all, pages } = await syncAll(fresh, n);
              t.diagnostic(`${fresh.label}: ${all.length} items in ${pages.length} pages, ${Date.now() - t1} ms`);
              const seqProblem = sequenceProblem(all.map((m) => m && m.seq), n);
              assert.equal(seqProblem, null, `${fresh.label} sync seq: ${seqProblem} (last page ${JSON.stringify(pages.at(-1))}) ${context}`);
              const iProblem = sequenceProblem(all.map((m) => m && m.data && m.data.i), n);
              assert.equal(iProblem, null, `${fresh.label} sync data.i: ${iProblem} ${context}`);
              all.forEach((m, k) => {
                if (m['2'] !== sender.uid || m.s !== 0 || m.data.p !== PAD) {
                  assert.deepEqual(m, { ...insert(k), '2': sender.uid, seq: k }, `${fresh.label}: sync item ${k}`);
                }
              });
              assert.equal(pages.at(-1).next, 0, 'the last page says next 0');
              assert.equal(pages.at(-1).offset, n, 'the last page ends at the history length');
              // Full pages until the last.
              pages.slice(0, -1).forEach((p) => assert.equal(p.len, PAGE, `page at ${p.at} is full`));
            });
          }
        } finally {
          pools.forEach((p) => p.closeAll());
        }
      });
    }
  });
}

module.exports = { defineBurstSuite, sequenceProblem, insert, PAGE };
