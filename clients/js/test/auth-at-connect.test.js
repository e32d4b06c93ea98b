'use strict';
// socket.io-client 4.x sockets log in with the connect itself
// (docs/PROTOCOL.md Part 2); 2.x sockets with the authenticate event.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, room, socket, once, waitFor } = require('../testlib/harness');
const { createRoom, AckError } = require('..');

let server;
const rooms = [];
before(async () => {
  server = await startServer({});
});
after(async () => {
  for (const r of rooms) r.close();
  await server.stop();
});

test('a 4.x socket sends its credentials with the connect, not as an event', async () => {
  const token = await server.user('connect-alice');
  const sock = socket(server.url, { gen: 4 });
  const sent = [];
  const emit = sock.emit.bind(sock);
  sock.emit = (event, ...args) => {
    sent.push(event);
    return emit(event, ...args);
  };
  const r = createRoom(sock, { uid: 'connect-alice', token, roomId: 'at-connect' });
  rooms.push(r);
  await waitFor(() => r.state === 'live', 'live');
  assert.deepEqual(sock.auth, { uid: 'connect-alice', token });
  assert.ok(!sent.includes('authenticate'), `emitted: ${sent}`);
  assert.deepEqual(await r.send('hi'), { seq: 0 });
});

test('a 2.x socket still authenticates with the event', async () => {
  const r = await room(server, 'connect-bob', 'at-connect-2', { gen: 2 });
  rooms.push(r);
  assert.equal(r._authAtConnect, false);
  assert.deepEqual(await r.send('hi'), { seq: 0 });
});

test('refused credentials in the connect fail the room with the reason', async () => {
  await server.user('connect-carol');
  const sock = socket(server.url, { gen: 4 });
  const r = createRoom(sock, { uid: 'connect-carol', token: '0'.repeat(64), roomId: 'x' });
  rooms.push(r);
  const err = await once(r, 'error');
  assert.ok(err instanceof AckError);
  assert.equal(err.message, 'auth failed, uid or token is wrong');
  assert.equal(err.status, 1);
  assert.equal(r.state, 'closed');
});
