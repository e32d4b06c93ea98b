// The ES module entry exposes the same implementation as the CommonJS one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import def, { createRoom, Room, AckError, STATES } from 'always-online-client';

const require = createRequire(import.meta.url);
const cjs = require('always-online-client');

test('ESM and CommonJS entries are the same module', () => {
  assert.equal(createRoom, cjs.createRoom);
  assert.equal(Room, cjs.Room);
  assert.equal(AckError, cjs.AckError);
  assert.equal(def, cjs);
  assert.deepEqual(STATES, ['connecting', 'authenticating', 'joining', 'syncing', 'live', 'closed']);
});

test('base64 decoding matches Buffer', () => {
  const { base64ToBytes } = cjs._internal;
  for (const s of ['', 'a', 'ab', 'abc', 'héllo wörld ✓', 'x'.repeat(1000)]) {
    const b64 = Buffer.from(s).toString('base64');
    assert.deepEqual(Buffer.from(base64ToBytes(b64)), Buffer.from(s));
  }
});

test('createRoom validates its arguments', () => {
  assert.throws(() => createRoom(null, { uid: 'a', token: 't', roomId: 'r' }), TypeError);
  const fake = { connected: false, on() {}, off() {}, emit() {}, connect() {}, disconnect() {} };
  assert.throws(() => createRoom(fake, { token: 't', roomId: 'r' }), /uid/);
  assert.throws(() => createRoom(fake, { uid: 'a', token: 't', roomId: '' }), /roomId/);
  const r = createRoom(fake, { uid: 'a', token: 't', roomId: 'r' });
  assert.equal(r.state, 'connecting');
  r.close();
  assert.equal(r.state, 'closed');
});
