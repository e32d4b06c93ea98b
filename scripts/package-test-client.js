'use strict';
// The client half of scripts/package-test: two real socket.io clients
// against the installed server (AO_URL), one socket.io-client 4.x on
// websocket and one 2.x on long-polling, each authenticating with a token
// the installed binary created (AO_UID/AO_TOKEN, AO_UID2/AO_TOKEN2): both
// join a room, one sends a msg that is acknowledged with its seq and relayed
// to the other, and a sync returns it from the store. AO_URL2, when given,
// is the second client's server (another node of a cluster). Exits 1 on any
// failure.
const path = require('node:path');
const modules = path.join(__dirname, '..', 'tests', 'clients', 'node_modules');
const { io: io4 } = require(path.join(modules, 'sio4'));
const io2 = require(path.join(modules, 'sio2'));

const url = process.env.AO_URL;
const url2 = process.env.AO_URL2 || url;
const roomId = Math.floor(Date.now() / 1000); // a fresh room each run
const timer = setTimeout(() => fail('timed out'), 10000);

function fail(why) {
  console.error(`client: ${why}`);
  process.exit(1);
}

function once(socket, event) {
  return new Promise((resolve) => socket.once(event, resolve));
}

async function member(socket, uid, token, label) {
  if (!socket.connected) await once(socket, 'connect');
  socket.emit('authenticate', { uid, token });
  const auth = await once(socket, 'authenticate');
  if (auth.status !== 0) fail(`${label}: authenticate answered ${JSON.stringify(auth)}`);
  socket.emit('join', { roomId });
  const join = await once(socket, 'join');
  if (join.status !== 0) fail(`${label}: join answered ${JSON.stringify(join)}`);
  console.log(`client: ${label} authenticated as ${uid} and joined ${roomId}`);
}

(async () => {
  const a = io4(url, { transports: ['websocket'], forceNew: true, reconnection: false });
  await member(a, process.env.AO_UID, process.env.AO_TOKEN, 'socket.io-client 4.x (websocket)');
  const b = io2(url2, { transports: ['polling'], forceNew: true, reconnection: false });
  await member(b, process.env.AO_UID2, process.env.AO_TOKEN2, 'socket.io-client 2.x (polling)');

  const relayed = once(b, 'msg');
  const ack = await new Promise((resolve) =>
    a.emit('msg', { data: 'hello from the package test', s: 0 }, resolve));
  if (ack.status !== 0 || ack.seq !== 0) fail(`msg ack ${JSON.stringify(ack)}`);
  const m = await relayed;
  if (m.data !== 'hello from the package test' || m['2'] !== process.env.AO_UID) {
    fail(`relayed ${JSON.stringify(m)}`);
  }
  console.log(`client: msg acknowledged (seq ${ack.seq}) and relayed: ${JSON.stringify(m)}`);

  b.emit('sync', { offset: 0 });
  const page = await once(b, 'sync');
  if (page.data.length !== 1 || page.data[0].data !== m.data) fail(`sync ${JSON.stringify(page)}`);
  console.log(`client: sync from the store returned ${JSON.stringify(page)}`);
  a.close();
  b.close();
  clearTimeout(timer);
})().catch((e) => fail(e.stack || e));
