'use strict';
// One room shared by both client generations over every transport: each sees
// the others' messages and presence events, whatever they connected with.
// defineMixedRoomSuite() is run by mixed-room.test.js against one server and
// by cluster-mixed-room.test.js against a 2-node cluster (consecutive clients
// alternate between the nodes; a uid logging in again goes to the other node).

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const h = require('./harness');

const KINDS = [
  [2, 'websocket'],
  [2, 'polling'],
  [4, 'websocket'],
  [4, 'polling'],
  [2, 'upgrade'],
  [4, 'upgrade'],
];

/** `cluster`: run against that many nodes sharing a private Redis instead of one server. */
function defineMixedRoomSuite({ cluster = 0 } = {}) {
  const where = cluster ? ` on a ${cluster}-node cluster` : '';
  describe(`a room mixing socket.io-client 2.x and 4.x over websocket, polling and upgrade${where}`, { timeout: 60000 }, () => {
    let server;
    let pool;

    before(async () => {
      server = cluster ? await h.startCluster({ nodes: cluster }) : await h.startServer();
      pool = new h.Pool(server);
    });
    afterEach(() => pool.closeAll());
    after(async () => {
      if (pool) pool.closeAll();
      if (server) await server.stop();
    });

    it('everyone sees everyone: roster, remote_join, msg, remote_sync, remote_leave, remote_disconnect', async () => {
      const roomId = 'mixed-1';
      const members = [];
      for (const [gen, mode] of KINDS) {
        const c = await pool.login(gen, mode, `mixed-${gen}-${mode}`);
        c.emit('join', { roomId });
        const ack = await c.nextEntry('join');
        assert.deepEqual(ack.data, { status: 0, data: 'join success' }, c.label);
        // Roster: every member already there, in join order, after the ack.
        for (const earlier of members) {
          const rj = await c.nextEntry('remote_join');
          assert.deepEqual(rj.data, { uid: earlier.uid }, `${c.label} roster`);
          assert.ok(ack.i < rj.i);
        }
        for (const earlier of members) {
          assert.deepEqual(await earlier.next('remote_join'), { uid: c.uid }, `${earlier.label} hears ${c.label}`);
        }
        members.push(c);
      }
      await h.expectNone(members, 'remote_join');
      for (const c of members.filter((m) => m.mode === 'upgrade')) {
        if (c.transport !== 'websocket') assert.equal(await c.next('upgrade'), 'websocket');
      }

      // Each sends once, in turn; every other member gets every message, in send order.
      const sent = [];
      for (const [i, c] of members.entries()) {
        const msg = { data: { from: c.label, text: `hello ${i}` }, '1': `id-${i}` };
        assert.deepEqual(await c.emitAck('msg', msg), { status: 0, seq: i }, c.label);
        sent.push({ ...msg, '2': c.uid, seq: i });
      }
      for (const c of members) {
        const expected = sent.filter((m) => m['2'] !== c.uid);
        const got = [];
        for (let k = 0; k < expected.length; k++) got.push(await c.next('msg'));
        assert.deepEqual(got, expected, `${c.label} receives the others' messages`);
      }
      await h.expectNone(members, 'msg');

      // A gzip sync from offset 0 (sio4 polling) returns them all and tells the others.
      const syncer = members[3];
      const page = await h.sync(syncer, { offset: 0, encoding: 'gzip' });
      assert.equal(page.encoding, 'gzip');
      assert.deepEqual(h.gunzipData(page.data), sent);
      assert.deepEqual({ offset: page.offset, next: page.next }, { offset: 6, next: 0 });
      for (const c of members.filter((m) => m !== syncer)) {
        assert.deepEqual(await c.next('remote_sync'), { uid: syncer.uid }, c.label);
      }
      // The same page, plain, from a sio2 websocket client.
      const plain = await h.sync(members[0], { offset: 0 });
      assert.deepEqual(plain.data, sent);

      // sio2 polling leaves.
      const leaver = members[1];
      leaver.emit('leave');
      const rest1 = members.filter((m) => m !== leaver);
      for (const c of rest1) assert.deepEqual(await c.next('remote_leave'), { uid: leaver.uid }, c.label);
      await leaver.expectServerDisconnect();

      // sio4 websocket drops its connection.
      const dropper = members[2];
      dropper.close();
      const rest2 = rest1.filter((m) => m !== dropper);
      for (const c of rest2) assert.deepEqual(await c.next('remote_disconnect'), { uid: dropper.uid }, c.label);

      // The others still talk: sio4 upgrade → the rest.
      const speaker = members[5];
      speaker.emit('msg', { data: 'still here', s: 2 });
      for (const c of rest2.filter((m) => m !== speaker)) {
        assert.deepEqual(await c.next('msg'), { data: 'still here', s: 2, '2': speaker.uid }, c.label);
      }
      await h.expectNone(rest2, ['msg', 'remote_leave', 'remote_join']);
    });

    it('kickout across generations and transports; the room hears nothing', async () => {
      const roomId = 'mixed-kick';
      const uid = 'mixed-kick-x';
      const peer = await pool.member(4, 'websocket', 'mixed-kick-peer', roomId);
      let current = await pool.member(2, 'polling', uid, roomId);
      assert.deepEqual(await current.next('remote_join'), { uid: peer.uid });
      assert.deepEqual(await peer.next('remote_join'), { uid });

      for (const [gen, mode] of [
        [4, 'websocket'],
        [2, 'websocket'],
        [4, 'polling'],
      ]) {
        const fresh = await pool.login(gen, mode, uid);
        const kick = await current.nextEntry('kickout');
        assert.equal(kick.data, 0, `${current.label} kicked by ${fresh.label}`);
        const disc = await current.expectServerDisconnect();
        assert.ok(kick.i < disc.i);
        await h.join(fresh, roomId);
        assert.deepEqual(await fresh.next('remote_join'), { uid: peer.uid });
        await h.expectNone(peer, ['remote_join', 'remote_leave', 'remote_disconnect']);
        peer.emit('msg', { data: `to ${fresh.label}`, s: 2 });
        assert.deepEqual(await fresh.next('msg'), { data: `to ${fresh.label}`, s: 2, '2': peer.uid });
        fresh.emit('msg', { data: `from ${fresh.label}`, s: 2 });
        assert.deepEqual(await peer.next('msg'), { data: `from ${fresh.label}`, s: 2, '2': uid });
        assert.equal(current.entries.filter((e) => e.event === 'msg' && !e.taken).length, 0, 'the kicked connection gets nothing more');
        current = fresh;
      }
    });
  });
}

module.exports = { defineMixedRoomSuite, KINDS };
