'use strict';
// A stand-in for the WeChat mini program runtime's socket API, so that the
// real weapp.socket.io clients run in Node: `wx.connectSocket` and the
// socket task it returns (`onOpen`, `onMessage`, `onClose`, `onError`,
// `send`, `close`), and the older global form (`wx.onSocketOpen`,
// `wx.sendSocketMessage`, `wx.closeSocket`, ... for the one socket a mini
// program had open), all over the `ws` package. Nothing else of `wx` is
// used by the clients.

const WebSocket = require('ws');

/** What a socket task's `onMessage` gets: text as a string, binary as an ArrayBuffer. */
function message(data, isBinary) {
  if (!isBinary) return { data: data.toString() };
  const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data);
  return { data: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length) };
}

function makeWx() {
  let current = null;
  const global = {};
  const send = (ws, { data, success, fail } = {}) => {
    ws.send(data, (err) => {
      if (err) fail && fail({ errMsg: String(err) });
      else success && success({ errMsg: 'sendSocketMessage:ok' });
    });
  };
  return {
    connectSocket({ url, header, protocols, success, fail } = {}) {
      let ws;
      try {
        ws = new WebSocket(url, protocols, { headers: header });
      } catch (err) {
        fail && fail({ errMsg: String(err) });
        throw err;
      }
      current = ws;
      ws.on('open', () => global.open && ws === current && global.open({}));
      ws.on('message', (d, bin) => global.message && ws === current && global.message(message(d, bin)));
      ws.on('close', (code, reason) => global.close && ws === current && global.close({ code, reason: String(reason) }));
      ws.on('error', (err) => global.error && ws === current && global.error({ errMsg: String(err) }));
      success && success({ errMsg: 'connectSocket:ok' });
      return {
        onOpen: (cb) => ws.on('open', () => cb({})),
        onMessage: (cb) => ws.on('message', (d, bin) => cb(message(d, bin))),
        onClose: (cb) => ws.on('close', (code, reason) => cb({ code, reason: String(reason) })),
        onError: (cb) => ws.on('error', (err) => cb({ errMsg: String(err) })),
        send: (o) => send(ws, o),
        close: ({ code = 1000, reason } = {}) => ws.close(code, reason),
      };
    },
    onSocketOpen: (cb) => (global.open = cb),
    onSocketMessage: (cb) => (global.message = cb),
    onSocketClose: (cb) => (global.close = cb),
    onSocketError: (cb) => (global.error = cb),
    sendSocketMessage: (o) => current && send(current, o),
    closeSocket: ({ code = 1000, reason } = {}) => current && current.close(code, reason),
  };
}

/** Installs the stand-in as the global `wx` (and `window`, which the clients' bundles expect). */
function install() {
  if (!globalThis.wx) globalThis.wx = makeWx();
  if (typeof globalThis.window === 'undefined') globalThis.window = globalThis;
}

module.exports = { install };
