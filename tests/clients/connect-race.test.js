'use strict';
// Real apps emit `authenticate` from their 'connect' handler, at once (or a
// tick later). The reply to that first event must always arrive. Each case
// connects many times in a row, since a race needs the right timing, and fails
// at the first lost reply.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const h = require('./harness');

/** Connections per case: the race shows most with socket.io-client 4 over websocket. */
const CASES = [
  [4, 'websocket', 1000],
  [4, 'polling', 100],
  [2, 'websocket', 200],
  [2, 'polling', 100],
];
/** A reply slower than this on loopback counts as lost. */
const REPLY_MS = 2000;

describe('the reply to an event emitted in the connect handler is never lost', { timeout: 120000 }, () => {
  let server;
  let pool;

  before(async () => {
    server = await h.startServer();
    pool = new h.Pool(server);
  });
  afterEach(() => pool.closeAll());
  after(async () => {
    if (pool) pool.closeAll();
    if (server) await server.stop();
  });

  for (const [gen, mode, rounds] of CASES) {
    it(`socket.io-client ${gen}.x over ${mode}: ${rounds} connects, authenticate emitted on connect`, async () => {
      const uids = Array.from({ length: rounds }, (_, i) => `race-${gen}-${mode}-${i}`);
      const tokens = [];
      for (let i = 0; i < uids.length; i += 15) {
        tokens.push(...(await Promise.all(uids.slice(i, i + 15).map((u) => server.user(u)))));
      }
      for (let i = 0; i < rounds; i++) {
        const c = pool.raw(gen, mode);
        const send = () => c.emit('authenticate', { uid: uids[i], token: tokens[i] });
        // In the handler itself, a microtask later, a macrotask later.
        const how = ['handler', 'microtask', 'timeout 0'][i % 3];
        if (how === 'handler') c.socket.once('connect', send);
        else if (how === 'microtask') c.socket.once('connect', () => queueMicrotask(send));
        else c.socket.once('connect', () => setTimeout(send, 0));
        let reply;
        try {
          reply = await c.next('authenticate', REPLY_MS);
        } catch {
          assert.fail(
            `connection ${i + 1} of ${rounds} (${c.label}, socket id ${c.socket.id}): ` +
              `authenticate emitted on connect (${how}) got no reply within ${REPLY_MS} ms; ` +
              `client saw: ${c.describe()}`,
          );
        }
        assert.deepEqual(reply, { status: 0, data: 'auth success' });
        pool.closeAll();
      }
    });
  }
});
