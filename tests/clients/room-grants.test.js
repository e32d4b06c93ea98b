'use strict';
// Room grants with the real socket.io-client 2.x and 4.x, over websocket and
// polling: a JSON Web Token signed here (HS256, Node's crypto) with the
// server's AO_JWT_HMAC_SECRET lets its client into the rooms its `rooms`
// claim grants (a `*` pattern among them) and no other; the refusal is
// `join {status: 1, data: 'join failed, room not granted'}` and the socket
// stays usable. With AO_DUMMY_REQUIRES_GRANT=1 only a token with
// `observer: true` watches as a dummy. Expired and foreign-signed tokens,
// and a token for another uid, are refused as wrong credentials.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');

const h = require('./harness');

const SECRET = crypto.randomBytes(32).toString('hex');
const AUTH_FAILED = { status: 1, data: 'auth failed, uid or token is wrong' };
const NOT_GRANTED = { status: 1, data: 'join failed, room not granted' };
const OBSERVER_NOT_GRANTED = { status: 1, data: 'join failed, observer not granted' };

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** An HS256 JSON Web Token of `claims` (exp one minute ahead unless given), signed with `secret`. */
function jwt(claims, secret = SECRET) {
  const now = Math.floor(Date.now() / 1000);
  const body = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({ iat: now, exp: now + 60, ...claims })}`;
  const sig = crypto.createHmac('sha256', secret).update(body).digest('base64url');
  return `${body}.${sig}`;
}

for (const [gen, mode] of [
  [2, 'websocket'],
  [2, 'polling'],
  [4, 'websocket'],
  [4, 'polling'],
]) {
  describe(`room grants, socket.io-client ${gen}.x over ${mode}`, { timeout: 60000 }, () => {
    let server;
    let pool;
    let n = 0;
    const uid = (name) => `g${gen}${mode}-${name}-${++n}`;

    before(async () => {
      server = await h.startServer({
        env: { AO_JWT_HMAC_SECRET: SECRET, AO_DUMMY_REQUIRES_GRANT: '1' },
      });
      pool = new h.Pool(server);
    });

    afterEach(() => pool.closeAll());

    after(async () => {
      if (pool) pool.closeAll();
      if (server) await server.stop();
    });

    /** A client authenticated as `id` with `token`, asserting the reply. */
    async function login(id, token, expected = { status: 0, data: 'auth success' }) {
      const c = await pool.client(gen, mode);
      c.uid = id;
      c.emit('authenticate', { uid: id, token });
      assert.deepEqual(await c.next('authenticate'), expected, c.label);
      return c;
    }

    async function joinReply(c, roomId, extra = {}) {
      c.emit('join', { roomId, ...extra });
      return c.next('join');
    }

    it('lets a token into its granted rooms and refuses the others', async () => {
      const alice = uid('alice');
      const c = await login(alice, jwt({ sub: alice, rooms: ['team-*', 1000] }));
      assert.deepEqual(await joinReply(c, 'lobby'), NOT_GRANTED);
      assert.deepEqual(await joinReply(c, 1001), NOT_GRANTED);
      await h.join(c, 1000);
      await h.join(c, 'team-blue');

      // A stored-token member of the granted room hears it and talks to it.
      const bob = await pool.member(gen, mode, uid('bob'), 'team-blue');
      assert.deepEqual(await c.next('remote_join'), { uid: bob.uid });
      assert.deepEqual(await bob.next('remote_join'), { uid: alice });
      bob.emit('msg', { data: 'hello', s: 0 });
      assert.equal((await c.next('msg')).data, 'hello');
      // Refused again, still in its room.
      assert.deepEqual(await joinReply(c, 'admin'), NOT_GRANTED);
      c.emit('msg', { data: 'still here', s: 2 });
      assert.equal((await bob.next('msg')).data, 'still here');
      await bob.expectNone(['remote_leave', 'remote_disconnect']);
    });

    it('watches as a dummy only with observer: true', async () => {
      const r = `g${gen}${mode}-watched`;
      const member = await pool.member(gen, mode, uid('member'), r);
      const stored = await pool.login(gen, mode, uid('stored'));
      assert.deepEqual(await joinReply(stored, r, { dummy: true }), OBSERVER_NOT_GRANTED);
      const plainId = uid('plain');
      const plain = await login(plainId, jwt({ sub: plainId, rooms: [r] }));
      assert.deepEqual(await joinReply(plain, r, { dummy: true }), OBSERVER_NOT_GRANTED);
      const watcherId = uid('watcher');
      const watcher = await login(watcherId, jwt({ sub: watcherId, rooms: [r], observer: true }));
      await h.join(watcher, r, { dummy: true });
      assert.deepEqual(await watcher.next('remote_join'), { uid: member.uid });
      member.emit('msg', { data: 'seen', s: 2 });
      assert.equal((await watcher.next('msg')).data, 'seen');
      await member.expectNone(['remote_join']);
    });

    it('refuses expired, foreign-signed and other-uid tokens', async () => {
      const id = uid('carol');
      const now = Math.floor(Date.now() / 1000);
      for (const token of [
        jwt({ sub: id, iat: now - 120, exp: now - 1 }),
        jwt({ sub: id }, crypto.randomBytes(32).toString('hex')),
        jwt({ sub: `${id}-other` }),
        `${b64url({ alg: 'none' })}.${b64url({ sub: id, exp: now + 60 })}.`,
      ]) {
        const c = await login(id, token, AUTH_FAILED);
        await c.expectServerDisconnect();
      }
    });
  });
}
