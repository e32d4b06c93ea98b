'use strict';
// A WeChat mini program client, the real weapp.socket.io (2.1: the
// socket.io 2 protocol; 3.x: the socket.io 4 protocol) on the `wx`
// stand-in of wx.js: websocket only, numeric uid and room id and the
// compact message keys, end to end against a socket.io-client 4.x peer.
// defineWeappSuite() is run by weapp-websocket.test.js against one server and
// by cluster-weapp-websocket.test.js against a 2-node cluster, where the peer
// and the mini program are on different nodes and the mini program's
// reconnection lands on the other node.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const h = require('./harness');

/**
 * `flavor`: 'weapp2' (weapp.socket.io 2.1) or 'weapp3' (3.x); `cluster`:
 * run against that many nodes sharing a private Redis instead of one server.
 */
function defineWeappSuite({ cluster = 0, flavor = 'weapp2' } = {}) {
  const where = cluster ? ` on a ${cluster}-node cluster` : '';
  const version = flavor === 'weapp2' ? '2.1' : '3.x';
  describe(`WeChat mini program client weapp.socket.io ${version}${where}`, { timeout: 60000 }, () => {
    let server;
    let pool;

    before(async () => {
      const env = { AO_SYNC_PAGE_SIZE: '3' };
      server = cluster ? await h.startCluster({ nodes: cluster, env }) : await h.startServer({ env });
      pool = new h.Pool(server);
    });
    afterEach(() => pool.closeAll());
    after(async () => {
      if (pool) pool.closeAll();
      if (server) await server.stop();
    });

    const weapp = (uid, roomId) =>
      pool.member(flavor, 'websocket', uid, roomId, { asNumber: true, opts: { upgrade: false } });

    it('end to end: join, roster, msg both ways, update/ignore, gzip sync, reconnect and resume, leave', async () => {
      const roomId = 20240601;
      const peer = await pool.member(4, 'websocket', 'weapp-peer', roomId);

      let wx = await weapp('100200', roomId);
      assert.equal(wx.openedWith, 'websocket', 'no polling request first');
      assert.equal(wx.transport, 'websocket');
      assert.equal(wx.eio, flavor === 'weapp2' ? 3 : 4);
      assert.equal(wx.uid, 100200);
      assert.deepEqual(await wx.next('remote_join'), { uid: 'weapp-peer' });
      assert.deepEqual(await peer.next('remote_join'), { uid: 100200 });

      // Mini program → peer, compact keys.
      const out = [
        { '1': 'wx-1', s: 0, data: { type: 'stroke', points: [1, 2, 3] } },
        { '1': 'cursor', s: 1, data: { x: 1 } },
        { s: 2, data: { typing: true } },
        { '1': 'cursor', s: 1, data: { x: 2 } },
        { '1': 'wx-2', s: 0, data: { type: 'text', text: '你好' } },
      ];
      for (const m of out) wx.emit('msg', m);
      const relayed = [];
      for (let i = 0; i < out.length; i++) relayed.push(await peer.next('msg'));
      assert.deepEqual(relayed, [
        { ...out[0], '2': 100200, seq: 0 },
        { ...out[1], '2': 100200 },
        { ...out[2], '2': 100200 },
        { ...out[3], '2': 100200 },
        { ...out[4], '2': 100200, seq: 1 },
      ]);
      await wx.expectNone('msg');

      // Peer → mini program.
      assert.deepEqual(await peer.emitAck('msg', { data: 'from the web' }), { status: 0, seq: 2 });
      assert.deepEqual(await wx.next('msg'), { data: 'from the web', '2': 'weapp-peer', seq: 2 });

      // gzip sync from 0: the 3 inserts fill page one (page size 3) and nothing
      // remains, so the latest "cursor" update follows on the same page.
      const p1 = await h.sync(wx, { offset: 0, encoding: 'gzip' });
      assert.equal(p1.encoding, 'gzip');
      const d1 = h.gunzipData(p1.data);
      assert.deepEqual(d1, [
        relayed[0],
        relayed[4],
        { data: 'from the web', '2': 'weapp-peer', seq: 2 },
        relayed[3],
      ]);
      assert.deepEqual({ offset: p1.offset, next: p1.next }, { offset: 3, next: 0 });
      assert.deepEqual(await peer.next('remote_sync'), { uid: 100200 });
      const plain = await h.sync(wx, { offset: 0 });
      assert.deepEqual(plain.data, d1);
      assert.deepEqual(await peer.next('remote_sync'), { uid: 100200 });
      const lastSeq = 2;

      // The mini program goes to the background: its socket drops.
      wx.close();
      assert.deepEqual(await peer.next('remote_disconnect'), { uid: 100200 });
      peer.emit('msg', { data: 'while you were away 1' });
      peer.emit('msg', { data: 'while you were away 2' });
      assert.deepEqual(await peer.emitAck('msg', { data: 'away 3' }), { status: 0, seq: 5 });

      // Back: a new connection, same uid; resume from the last seq seen.
      wx = await weapp('100200', roomId);
      assert.deepEqual(await wx.next('remote_join'), { uid: 'weapp-peer' });
      assert.deepEqual(await peer.next('remote_join'), { uid: 100200 });
      const resumed = await h.sync(wx, { offset: lastSeq + 1 });
      assert.deepEqual({ offset: resumed.offset, next: resumed.next }, { offset: 6, next: 0 });
      assert.deepEqual(resumed.data.slice(0, 3).map((m) => [m.seq, m.data]), [
        [3, 'while you were away 1'],
        [4, 'while you were away 2'],
        [5, 'away 3'],
      ]);
      assert.deepEqual(resumed.data.slice(3), [relayed[3]], 'the latest update to "cursor"');
      await h.expectNone(peer, 'remote_sync');

      // Leave.
      wx.emit('leave', {});
      assert.deepEqual(await peer.next('remote_leave'), { uid: 100200 });
      await wx.expectServerDisconnect();
    });

    it('a wrong token: refused, server disconnect, no reconnect, over websocket only', async () => {
      await server.user('100300');
      const wx = await pool.client(flavor, 'websocket', { upgrade: false });
      wx.emit('authenticate', { uid: 100300, token: 'bad' });
      assert.deepEqual(await wx.next('authenticate'), { status: 1, data: 'auth failed, uid or token is wrong' });
      await wx.expectServerDisconnect();
    });

    it('kickout: a login of the same uid elsewhere closes the mini program\'s connection', async () => {
      const roomId = 20240602;
      const wx = await weapp('100400', roomId);
      const other = await pool.client(4, 'websocket');
      other.emit('authenticate', { uid: 100400, token: await server.user('100400') });
      assert.deepEqual(await other.next('authenticate'), { status: 0, data: 'auth success' });
      assert.equal(await wx.next('kickout'), 0);
      await wx.expectServerDisconnect();
    });
  });
}

module.exports = { defineWeappSuite };
