'use strict';
// socket.io-client 4.x sending its credentials with the connect,
// io(url, {auth: {uid, token}}) (docs/PROTOCOL.md Part 2), over every
// transport mode.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { io } = require('sio4');

const h = require('./harness');

const TRANSPORTS = {
  websocket: ['websocket'],
  polling: ['polling'],
  upgrade: ['polling', 'websocket'],
};

describe('socket.io-client 4.x authenticating at connect', { timeout: 60000 }, () => {
  let server;
  const sockets = [];
  before(async () => {
    server = await h.startServer();
  });
  after(async () => {
    for (const s of sockets) s.close();
    if (server) await server.stop();
  });

  function connect(auth, transports) {
    const s = io(server.url, { auth, transports, forceNew: true, reconnection: false });
    sockets.push(s);
    return s;
  }

  for (const [mode, transports] of Object.entries(TRANSPORTS)) {
    it(`is answered with connect, then authenticate {status: 0}, over ${mode}`, async () => {
      const uid = `ac-${mode}`;
      const token = await server.user(uid);
      const s = connect({ uid, token }, transports);
      const order = [];
      s.on('connect', () => order.push('connect'));
      const reply = await new Promise((resolve) => s.once('authenticate', resolve));
      assert.deepEqual(order, ['connect']);
      assert.deepEqual(reply, { status: 0, data: 'auth success' });
      const join = await new Promise((resolve) => {
        s.once('join', resolve);
        s.emit('join', { roomId: `ac-room-${mode}` });
      });
      assert.deepEqual(join, { status: 0, data: 'join success' });
    });

    it(`refuses wrong credentials with a connect_error over ${mode}`, async () => {
      const uid = `ac-wrong-${mode}`;
      await server.user(uid);
      const s = connect({ uid, token: '0'.repeat(64) }, transports);
      const err = await new Promise((resolve) => s.once('connect_error', resolve));
      assert.equal(err.message, 'auth failed, uid or token is wrong');
      assert.deepEqual(err.data, { status: 1, data: 'auth failed, uid or token is wrong' });
      assert.equal(s.connected, false);
    });
  }

  it('leaves the authenticate event working for a connect without credentials', async () => {
    const uid = 'ac-event';
    const token = await server.user(uid);
    const s = connect(undefined, ['websocket']);
    await new Promise((resolve) => s.once('connect', resolve));
    const reply = await new Promise((resolve) => {
      s.once('authenticate', resolve);
      s.emit('authenticate', { uid, token });
    });
    assert.deepEqual(reply, { status: 0, data: 'auth success' });
  });
});
