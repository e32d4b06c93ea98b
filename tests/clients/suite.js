'use strict';
// The compatibility suite run for one client generation over one transport
// mode. Each *.test.js file of the matrix calls defineCompatSuite once; the
// file gets a server of its own (sync page size 3, every other setting at its
// default, real tokens made with the CLI). The cluster-*.test.js files run it
// against a 2-node cluster (`{ cluster: 2 }`): consecutive clients connect to
// alternate nodes, so every room has members on both.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const h = require('./harness');

/** Sync page size of the suite's server. */
const PAGE = 3;
/** The default max_msg_bytes. */
const MAX_MSG_BYTES = 512000;

/**
 * `cluster`: run against that many nodes sharing a private Redis
 * (h.startCluster) instead of one server.
 */
function defineCompatSuite(gen, mode, { cluster = 0 } = {}) {
  const start = cluster
    ? (opts) => h.startCluster({ nodes: cluster, ...opts })
    : (opts) => h.startServer(opts);
  const where = cluster ? ` on a ${cluster}-node cluster` : '';
  describe(`socket.io-client ${gen}.x over ${mode}${where}`, { timeout: 60000 }, () => {
    let server;
    let pool;
    let n = 0;
    const tag = `g${gen}${mode}`;
    /** A fresh uid (string) for this suite. */
    const uid = (name) => `${tag}-${name}-${++n}`;
    /** A fresh room id (string) for this suite. */
    const room = (name) => `${tag}-room-${name}-${++n}`;

    before(async () => {
      server = await start({ env: { AO_SYNC_PAGE_SIZE: String(PAGE) } });
      pool = new h.Pool(server);
    });

    afterEach(() => pool.closeAll());

    after(async () => {
      if (pool) pool.closeAll();
      if (server) await server.stop();
    });

    const member = (name, roomId, opts) => pool.member(gen, mode, uid(name), roomId, opts);

    /** Three members of a fresh room, each having seen the others' presence. */
    async function trio(name) {
      const r = room(name);
      const a = await member('a', r);
      const b = await member('b', r);
      assert.deepEqual(await a.next('remote_join'), { uid: b.uid });
      assert.deepEqual(await b.next('remote_join'), { uid: a.uid });
      const c = await member('c', r);
      assert.deepEqual(await a.next('remote_join'), { uid: c.uid });
      assert.deepEqual(await b.next('remote_join'), { uid: c.uid });
      assert.deepEqual(await c.next('remote_join'), { uid: a.uid });
      assert.deepEqual(await c.next('remote_join'), { uid: b.uid });
      return { r, a, b, c };
    }

    it(`connects with engine.io protocol ${gen === 2 ? 3 : 4} over ${mode}`, async () => {
      const c = await pool.client(gen, mode);
      assert.equal(c.eio, gen === 2 ? 3 : 4);
      if (mode === 'upgrade') {
        assert.equal(c.openedWith, 'polling', 'the handshake is done over polling');
        const up = await c.next('upgrade');
        assert.equal(up, 'websocket');
        assert.equal(c.transport, 'websocket');
        // The upgraded connection carries the protocol.
        const id = uid('up');
        c.emit('authenticate', { uid: id, token: await server.user(id) });
        assert.deepEqual(await c.next('authenticate'), { status: 0, data: 'auth success' });
        await h.join(c, room('up'));
      } else {
        assert.equal(c.transport, mode);
        await c.expectNone(['upgrade', 'disconnect']);
        assert.equal(c.transport, mode, 'no transport change');
      }
    });

    it('authenticate succeeds with a token made by the CLI', async () => {
      const c = await pool.login(gen, mode, uid('auth'));
      assert.equal(c.socket.connected, true);
      await c.expectNone(['disconnect', 'authenticate']);
    });

    it('a second authenticate on the same socket is refused and changes nothing', async () => {
      const id = uid('twice');
      const c = await pool.login(gen, mode, id);
      c.emit('authenticate', { uid: id, token: await server.user(id) });
      assert.deepEqual(await c.next('authenticate'), { status: 1, data: 'already authenticated' });
      await h.join(c, room('twice'));
      assert.equal(c.socket.connected, true);
    });

    it('a wrong token is refused, then the server disconnects and the client does not reconnect', async () => {
      const id = uid('wrong');
      await server.user(id);
      const c = await pool.client(gen, mode);
      c.emit('authenticate', { uid: id, token: 'not-the-token' });
      const reply = await c.nextEntry('authenticate');
      assert.deepEqual(reply.data, { status: 1, data: 'auth failed, uid or token is wrong' });
      const disc = await c.expectServerDisconnect();
      assert.ok(reply.i < disc.i, 'the failed authenticate arrives before the disconnect');
    });

    it('an unknown uid is refused like a wrong token', async () => {
      const c = await pool.client(gen, mode);
      c.emit('authenticate', { uid: uid('nobody'), token: 'whatever' });
      assert.deepEqual(await c.next('authenticate'), {
        status: 1,
        data: 'auth failed, uid or token is wrong',
      });
      await c.expectServerDisconnect();
    });

    it('events before authenticate are ignored', async () => {
      const id = uid('early');
      const token = await server.user(id);
      const c = await pool.client(gen, mode);
      c.emit('join', { roomId: room('early') });
      c.emit('sync', { offset: 0 });
      await c.expectNone(['join', 'sync', 'disconnect']);
      c.emit('authenticate', { uid: id, token });
      assert.deepEqual(await c.next('authenticate'), { status: 0, data: 'auth success' });
      await h.join(c, room('early'));
    });

    it('join acks, then roster: remote_join for members already present, in join order', async () => {
      const roomNum = 700000 + gen * 1000 + Object.keys(h.MODES).indexOf(mode) * 100 + n;
      // "123" and 123 are the same room.
      const a = await member('a', String(roomNum));
      const b = await pool.login(gen, mode, uid('b'));
      b.emit('join', { roomId: String(roomNum) });
      const ackB = await b.nextEntry('join');
      assert.deepEqual(ackB.data, { status: 0, data: 'join success' });
      const rosterB = await b.nextEntry('remote_join');
      assert.deepEqual(rosterB.data, { uid: a.uid });
      assert.ok(ackB.i < rosterB.i, 'the join ack comes before the roster');
      assert.deepEqual(await a.next('remote_join'), { uid: b.uid });

      const c = await pool.login(gen, mode, uid('c'));
      c.emit('join', { roomId: roomNum });
      const ackC = await c.nextEntry('join');
      assert.deepEqual(ackC.data, { status: 0, data: 'join success' });
      const first = await c.nextEntry('remote_join');
      const second = await c.nextEntry('remote_join');
      assert.deepEqual([first.data, second.data], [{ uid: a.uid }, { uid: b.uid }], 'join order');
      assert.ok(ackC.i < first.i);
      assert.deepEqual(await a.next('remote_join'), { uid: c.uid });
      assert.deepEqual(await b.next('remote_join'), { uid: c.uid });
      // Never its own uid, nothing twice.
      await h.expectNone([a, b, c], 'remote_join');
    });

    it('a failed join (no roomId) keeps the socket open for a retry', async () => {
      const c = await pool.login(gen, mode, uid('nojoin'));
      c.emit('join', { roomId: '' });
      assert.deepEqual(await c.next('join'), { status: 1, data: 'join failed, require roomId' });
      await h.join(c, room('retry'));
      assert.equal(c.socket.connected, true);
    });

    it('msg is relayed to the others, not echoed, stamped "2" = sender uid, with seq', async () => {
      const { a, b, c } = await trio('msg');
      a.emit('msg', { data: { text: 'hi', n: [1, 2] }, '2': 'forged' });
      const expected = { data: { text: 'hi', n: [1, 2] }, '2': a.uid, seq: 0 };
      assert.deepEqual(await b.next('msg'), expected);
      assert.deepEqual(await c.next('msg'), expected);

      b.emit('msg', { data: 'back', s: 0, '1': 'id-1' });
      const back = { data: 'back', s: 0, '1': 'id-1', '2': b.uid, seq: 1 };
      assert.deepEqual(await a.next('msg'), back);
      assert.deepEqual(await c.next('msg'), back);

      // Send order is kept.
      for (let i = 0; i < 5; i++) c.emit('msg', { data: i });
      for (const peer of [a, b]) {
        const got = [];
        for (let i = 0; i < 5; i++) got.push(await peer.next('msg'));
        assert.deepEqual(
          got,
          [0, 1, 2, 3, 4].map((i) => ({ data: i, '2': c.uid, seq: 2 + i })),
        );
      }
      await h.expectNone([a, b, c], 'msg');
    });

    it('a numeric uid is echoed as a number in remote_join and the "2" stamp', async () => {
      const r = room('num');
      const a = await member('a', r);
      const numeric = String(880000 + gen * 1000 + Object.keys(h.MODES).indexOf(mode) * 100 + n);
      const b = await pool.member(gen, mode, numeric, r, { asNumber: true });
      assert.equal(typeof b.uid, 'number');
      assert.deepEqual(await a.next('remote_join'), { uid: b.uid });
      assert.deepEqual(await b.next('remote_join'), { uid: a.uid });
      b.emit('msg', { data: 'from a number' });
      assert.deepEqual(await a.next('msg'), { data: 'from a number', '2': b.uid, seq: 0 });
      a.emit('msg', { data: 'to a number' });
      assert.deepEqual(await b.next('msg'), { data: 'to a number', '2': a.uid, seq: 1 });
    });

    it('msg acks: {status:0, seq} for inserts, {status:0} for updates and ignores', async () => {
      const r = room('ack');
      const a = await member('a', r);
      const b = await member('b', r);
      await a.next('remote_join');
      assert.deepEqual(await a.emitAck('msg', { data: 'one' }), { status: 0, seq: 0 });
      assert.deepEqual(await a.emitAck('msg', { data: 'two', s: 0 }), { status: 0, seq: 1 });
      assert.deepEqual(await a.emitAck('msg', { data: 'u', s: 1, '1': 'k' }), { status: 0 });
      assert.deepEqual(await a.emitAck('msg', { data: 'e', s: 2 }), { status: 0 });
      assert.deepEqual(await b.emitAck('msg', { data: 'three' }), { status: 0, seq: 2 });
      assert.deepEqual(await b.next('msg'), { data: 'one', '2': a.uid, seq: 0 });
      assert.deepEqual(await b.next('msg'), { data: 'two', s: 0, '2': a.uid, seq: 1 });
      assert.deepEqual(await b.next('msg'), { data: 'u', s: 1, '1': 'k', '2': a.uid });
      assert.deepEqual(await b.next('msg'), { data: 'e', s: 2, '2': a.uid });
      assert.deepEqual(await a.next('msg'), { data: 'three', '2': b.uid, seq: 2 });
    });

    it('update/ignore with the compact keys s and "1": sync keeps the latest update, never ignores', async () => {
      const r = room('compact');
      const a = await member('a', r);
      const b = await member('b', r);
      await a.next('remote_join');
      const sent = [
        { data: 'v1', s: 1, '1': 'u1' },
        { data: 'i0', s: 0 },
        { data: 'v2', s: 1, '1': 'u1' },
        { data: 'e1', s: 2 },
        { data: 'w1', s: 1, '1': 7 },
        { data: 'i1' },
        { data: 'e2', s: 2, '1': 'u1' },
      ];
      for (const m of sent) a.emit('msg', m);
      const relayed = [];
      for (let i = 0; i < sent.length; i++) relayed.push(await b.next('msg'));
      assert.deepEqual(relayed, [
        { data: 'v1', s: 1, '1': 'u1', '2': a.uid },
        { data: 'i0', s: 0, '2': a.uid, seq: 0 },
        { data: 'v2', s: 1, '1': 'u1', '2': a.uid },
        { data: 'e1', s: 2, '2': a.uid },
        { data: 'w1', s: 1, '1': 7, '2': a.uid },
        { data: 'i1', '2': a.uid, seq: 1 },
        { data: 'e2', s: 2, '1': 'u1', '2': a.uid },
      ]);
      const page = await h.sync(b, { offset: 0 });
      assert.equal(page.next, 0);
      assert.equal(page.offset, 2);
      assert.equal(typeof page.epoch, 'string');
      assert.deepEqual(page.data.slice(0, 2), [relayed[1], relayed[5]], 'inserts first, oldest first');
      assert.deepEqual(h.byMsgId(page.data.slice(2)), h.byMsgId([relayed[2], relayed[4]]), 'latest update per msgId');
      // sync offset 0 tells the others.
      assert.deepEqual(await a.next('remote_sync'), { uid: b.uid });
      await h.expectNone(b, 'remote_sync');
    });

    it('update/ignore with the long keys storage and msgId (the compact key wins when both are given)', async () => {
      const r = room('long');
      const a = await member('a', r);
      const b = await member('b', r);
      await a.next('remote_join');
      const sent = [
        { data: 'x1', storage: 1, msgId: 'm1' },
        { data: 'x2', storage: 1, msgId: 'm1' },
        { data: 'ins', storage: 0 },
        { data: 'eph', storage: 2 },
        { data: 'y1', storage: 1, msgId: 42 },
        // compact wins: an ignore, not an insert
        { data: 'c-ign', s: 2, storage: 0 },
        // compact wins: updates "m2", not "m1"
        { data: 'c-upd', storage: 1, msgId: 'm1', '1': 'm2' },
        // compact wins: an insert, not an update
        { data: 'c-ins', s: 0, storage: 1, msgId: 'm1' },
      ];
      for (const m of sent) assert.equal((await a.emitAck('msg', m)).status, 0);
      const relayed = [];
      for (let i = 0; i < sent.length; i++) relayed.push(await b.next('msg'));
      relayed.forEach((m, i) => assert.deepEqual(m, { ...sent[i], '2': a.uid, ...(m.seq !== undefined ? { seq: m.seq } : {}) }));
      assert.equal(relayed[2].seq, 0);
      assert.equal(relayed[7].seq, 1);
      assert.equal(relayed.filter((m) => m.seq !== undefined).length, 2, 'only inserts carry seq');
      const page = await h.sync(a, { offset: 0 });
      assert.equal(page.next, 0);
      assert.equal(page.offset, 2);
      assert.deepEqual(page.data.slice(0, 2), [relayed[2], relayed[7]]);
      assert.deepEqual(
        h.byMsgId(page.data.slice(2)),
        h.byMsgId([relayed[1], relayed[4], relayed[6]]),
      );
      assert.deepEqual(await b.next('remote_sync'), { uid: a.uid });
    });

    it(`sync pages through 8 inserts ${PAGE} at a time, updates on the last page`, async () => {
      const r = room('paging');
      const a = await member('a', r);
      const b = await member('b', r);
      await a.next('remote_join');
      const acks = [];
      for (let i = 0; i < 8; i++) {
        acks.push(await a.emitAck('msg', { data: `p${i}`, s: 0 }));
        if (i === 4) {
          assert.deepEqual(await a.emitAck('msg', { data: 'up-old', s: 1, '1': 'state' }), { status: 0 });
          assert.deepEqual(await a.emitAck('msg', { data: 'up-new', s: 1, '1': 'state' }), { status: 0 });
        }
      }
      assert.deepEqual(acks.map((x) => x.seq), [0, 1, 2, 3, 4, 5, 6, 7]);
      const relayed = [];
      for (let i = 0; i < 10; i++) relayed.push(await b.next('msg'));
      const inserts = relayed.filter((m) => m.seq !== undefined);
      const update = relayed.find((m) => m.data === 'up-new');

      const p1 = await h.sync(b, { offset: 0 });
      assert.deepEqual({ offset: p1.offset, next: p1.next }, { offset: 3, next: 1 });
      assert.deepEqual(p1.data, inserts.slice(0, 3));
      const p2 = await h.sync(b, { offset: p1.offset });
      assert.deepEqual({ offset: p2.offset, next: p2.next }, { offset: 6, next: 1 });
      assert.deepEqual(p2.data, inserts.slice(3, 6));
      const p3 = await h.sync(b, { offset: p2.offset });
      assert.deepEqual({ offset: p3.offset, next: p3.next }, { offset: 8, next: 0 });
      assert.deepEqual(p3.data, [...inserts.slice(6), update]);
      assert.equal(p1.epoch, p3.epoch);
      // Only the offset-0 request announces remote_sync.
      assert.deepEqual(await a.next('remote_sync'), { uid: b.uid });
      // A resume from the middle: offset = last seen seq + 1.
      const resumed = await h.sync(b, { offset: 5 });
      // Seqs 5..7 fill the page exactly and nothing remains: it is the last page.
      assert.deepEqual({ offset: resumed.offset, next: resumed.next }, { offset: 8, next: 0 });
      assert.deepEqual(resumed.data, [...inserts.slice(5, 8), update]);
      const tail = await h.sync(b, { offset: 8 });
      assert.deepEqual({ offset: tail.offset, next: tail.next, data: tail.data }, { offset: 8, next: 0, data: [update] });
      await h.expectNone([a, b], 'remote_sync');
    });

    it('sync with encoding gzip returns base64 gzip of the same JSON page', async () => {
      const r = room('gzip');
      const a = await member('a', r);
      const b = await member('b', r);
      await a.next('remote_join');
      for (let i = 0; i < 4; i++) await a.emitAck('msg', { data: { i, text: 'é ü 漢字 😀' } });
      await a.emitAck('msg', { data: 'state', s: 1, '1': 'g' });
      for (let i = 0; i < 5; i++) await b.next('msg');

      const plain1 = await h.sync(b, { offset: 0 });
      const gz1 = await h.sync(b, { offset: 0, encoding: 'gzip' });
      assert.equal(gz1.encoding, 'gzip');
      assert.equal(typeof gz1.data, 'string');
      assert.match(gz1.data, /^[A-Za-z0-9+/]+={0,2}$/);
      assert.deepEqual(h.gunzipData(gz1.data), plain1.data);
      assert.deepEqual({ offset: gz1.offset, next: gz1.next }, { offset: 3, next: 1 });

      const plain2 = await h.sync(b, { offset: 3 });
      const gz2 = await h.sync(b, { offset: 3, encoding: 'gzip' });
      assert.equal(gz2.encoding, 'gzip');
      const data2 = h.gunzipData(gz2.data);
      assert.deepEqual(data2, plain2.data);
      assert.equal(data2.length, 2);
      assert.equal(data2[1].data, 'state');
      assert.deepEqual({ offset: gz2.offset, next: gz2.next }, { offset: 4, next: 0 });
      assert.equal(plain1.encoding, undefined);
    });

    it(`a ~500 kB message passes; exactly ${MAX_MSG_BYTES} bytes passes; one byte more is dropped`, { timeout: 30000 }, async () => {
      const r = room('big');
      const a = await member('a', r);
      const b = await member('b', r);
      await a.next('remote_join');
      const big = { data: 'x'.repeat(500000) };
      assert.deepEqual(await a.emitAck('msg', big, 10000), { status: 0, seq: 0 });
      const got = await b.next('msg', 10000);
      assert.equal(got.data.length, 500000);
      assert.deepEqual(got, { ...big, '2': a.uid, seq: 0 });

      // {"data":"…"} is 11 bytes around the string.
      const limit = { data: 'y'.repeat(MAX_MSG_BYTES - 11) };
      assert.equal(JSON.stringify(limit).length, MAX_MSG_BYTES);
      assert.deepEqual(await b.emitAck('msg', limit, 10000), { status: 0, seq: 1 });
      const atLimit = await a.next('msg', 10000);
      assert.equal(atLimit.data.length, MAX_MSG_BYTES - 11);

      const over = { data: 'z'.repeat(MAX_MSG_BYTES - 10) };
      const refused = await a.emitAck('msg', over, 10000);
      assert.equal(refused.status, 4);
      assert.equal(refused.data, 'message too large');
      await b.expectNone('msg');

      // The big ones come back from sync (two inserts on one page).
      const page = await h.sync(b, { offset: 0 });
      assert.equal(page.next, 0);
      assert.deepEqual(page.data.map((m) => [m.seq, m.data.length]), [[0, 500000], [1, MAX_MSG_BYTES - 11]]);
      assert.equal(a.socket.connected && b.socket.connected, true);
    });

    it('leave: the others get remote_leave, the leaver is disconnected by the server', async () => {
      const { a, b, c } = await trio('leave');
      a.emit('leave', {});
      assert.deepEqual(await b.next('remote_leave'), { uid: a.uid });
      assert.deepEqual(await c.next('remote_leave'), { uid: a.uid });
      await a.expectServerDisconnect();
      // The room goes on without the leaver.
      b.emit('msg', { data: 'after leave' });
      assert.deepEqual(await c.next('msg'), { data: 'after leave', '2': b.uid, seq: 0 });
      await h.expectNone([b, c], ['remote_leave', 'remote_join']);
      assert.equal(a.entries.filter((e) => e.event === 'msg').length, 0);
    });

    it('remote_disconnect when a member closes its connection', async () => {
      const { a, b, c } = await trio('close');
      a.close();
      assert.deepEqual(await b.next('remote_disconnect'), { uid: a.uid });
      assert.deepEqual(await c.next('remote_disconnect'), { uid: a.uid });
      await h.expectNone([b, c], ['remote_leave', 'remote_disconnect']);
    });

    it('kickout: a new login of the same uid closes the old one; the room hears nothing', async () => {
      const r = room('kick');
      const old = await member('x', r);
      const x = old.uid;
      const b = await member('b', r);
      assert.deepEqual(await old.next('remote_join'), { uid: b.uid });
      assert.deepEqual(await b.next('remote_join'), { uid: x });

      const fresh = await pool.login(gen, mode, x);
      const kick = await old.nextEntry('kickout');
      assert.equal(kick.data, 0);
      const disc = await old.expectServerDisconnect();
      assert.ok(kick.i < disc.i, 'kickout arrives before the disconnect');

      await h.join(fresh, r);
      assert.deepEqual(await fresh.next('remote_join'), { uid: b.uid });
      await h.expectNone(b, ['remote_join', 'remote_leave', 'remote_disconnect']);
      await h.expectNone(fresh, 'remote_join');

      // The room works with the new connection.
      b.emit('msg', { data: 'to the new one' });
      assert.deepEqual(await fresh.next('msg'), { data: 'to the new one', '2': b.uid, seq: 0 });
      fresh.emit('msg', { data: 'from the new one' });
      assert.deepEqual(await b.next('msg'), { data: 'from the new one', '2': x, seq: 1 });
      assert.equal(old.entries.filter((e) => e.event === 'msg').length, 0);
    });
  });
}

module.exports = { defineCompatSuite, PAGE, MAX_MSG_BYTES };
