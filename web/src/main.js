// Always Online web demo: a shared whiteboard and a chat room.
// Strokes and chat lines are stored inserts, so everything replays on sync.
import { io } from 'socket.io-client';
import { createRoom } from '../../clients/js/index.js';

const $ = (sel) => document.querySelector(sel);
const loginForm = $('#login');
const loginError = $('#login-error');
const app = $('#app');
const badge = $('#state');
const canvas = $('#board');
const ctx = canvas.getContext('2d');
const chatList = $('#chat');
const presenceList = $('#presence');

/** Page state, also read by the browser test. */
const demo = {
  uid: null,
  roomId: null,
  state: 'offline',
  strokes: [], // {uid, color, points: [[x, y], …]}
  chat: [], // {uid, text}
  presence: [], // uids in the room, including our own
  room: null,
};
window.demo = demo;

// ---- login -----------------------------------------------------------------

loginForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const f = new FormData(loginForm);
  join(String(f.get('uid')).trim(), String(f.get('token')), String(f.get('room')).trim());
});

function join(uid, token, roomId) {
  demo.uid = uid;
  demo.roomId = roomId;
  loginError.hidden = true;

  const socket = io(location.origin, { transports: ['websocket'] });
  const room = createRoom(socket, { uid, token, roomId, gzip: true });
  demo.room = room;

  let problem = '';
  room.on('state', (s) => {
    setState(s);
    // A (re)join announces every member again: start the list afresh.
    if (s === 'authenticating') setPresence([uid]);
    if (s === 'closed' && demo.room === room) showLogin(problem || 'The room was closed.');
  });
  room.on('message', (msg) => receive(msg['2'], msg.data));
  room.on('presence', ({ type, uid: who }) => {
    if (who == null || String(who) === uid) return;
    const others = demo.presence.filter((u) => u !== String(who));
    setPresence(type === 'join' || type === 'sync' ? [...others, String(who)] : others);
  });
  room.on('reset', () => {
    demo.strokes = [];
    demo.chat = [];
    redraw();
    renderChat();
  });
  room.on('kickout', () => (problem = 'You logged in somewhere else.'));
  // Authentication or join failures (the room then closes), or a bug in a listener.
  room.on('error', (err) => {
    problem = err.message;
    console.error(err);
  });

  $('#room-name').textContent = `${uid} in “${roomId}”`;
  loginForm.hidden = true;
  app.hidden = false;
}

function showLogin(message) {
  const room = demo.room;
  demo.room = null;
  if (room) room.close();
  loginError.textContent = message;
  loginError.hidden = !message;
  app.hidden = true;
  loginForm.hidden = false;
}

function setState(s) {
  demo.state = s;
  badge.textContent = s;
  badge.dataset.state = s;
}

function setPresence(uids) {
  demo.presence = [...new Set(uids)];
  presenceList.replaceChildren(
    ...demo.presence.map((u) => {
      const li = document.createElement('li');
      li.textContent = u;
      li.dataset.uid = u;
      if (u === demo.uid) li.className = 'me';
      return li;
    }),
  );
}

// ---- messages ----------------------------------------------------------------

function receive(from, data) {
  if (!data || typeof data !== 'object') return;
  const uid = from == null ? '?' : String(from);
  if (data.type === 'stroke' && Array.isArray(data.points)) {
    addStroke({ uid, color: String(data.color || '#000'), points: data.points });
  } else if (data.type === 'chat' && typeof data.text === 'string') {
    addChat({ uid, text: data.text });
  }
}

function send(data) {
  demo.room.send(data, { storage: 'insert' }).catch((err) => {
    addChat({ uid: 'system', text: `not sent: ${err.message}` });
  });
}

// ---- whiteboard ----------------------------------------------------------------

function addStroke(stroke) {
  demo.strokes.push(stroke);
  drawStroke(stroke);
  $('#stroke-count').textContent = `${demo.strokes.length} stroke${demo.strokes.length === 1 ? '' : 's'}`;
}

function drawStroke({ color, points }) {
  if (!points.length) return;
  ctx.strokeStyle = color;
  ctx.fillStyle = color;
  ctx.lineWidth = 4;
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  ctx.beginPath();
  ctx.moveTo(points[0][0], points[0][1]);
  for (const [x, y] of points.slice(1)) ctx.lineTo(x, y);
  if (points.length === 1) ctx.lineTo(points[0][0] + 0.1, points[0][1]);
  ctx.stroke();
}

function redraw() {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  demo.strokes.forEach(drawStroke);
  $('#stroke-count').textContent = `${demo.strokes.length} strokes`;
}

let current = null; // the stroke being drawn

function canvasPoint(ev) {
  const r = canvas.getBoundingClientRect();
  return [
    Math.round(((ev.clientX - r.left) * canvas.width) / r.width),
    Math.round(((ev.clientY - r.top) * canvas.height) / r.height),
  ];
}

canvas.addEventListener('pointerdown', (ev) => {
  if (!demo.room) return;
  canvas.setPointerCapture(ev.pointerId);
  current = { uid: demo.uid, color: $('#color').value, points: [canvasPoint(ev)] };
});

canvas.addEventListener('pointermove', (ev) => {
  if (!current) return;
  const p = canvasPoint(ev);
  const last = current.points[current.points.length - 1];
  if (p[0] === last[0] && p[1] === last[1]) return;
  current.points.push(p);
  drawStroke({ color: current.color, points: [last, p] });
});

function endStroke() {
  if (!current) return;
  const stroke = current;
  current = null;
  addStroke(stroke);
  send({ type: 'stroke', color: stroke.color, points: stroke.points });
}
canvas.addEventListener('pointerup', endStroke);
canvas.addEventListener('pointercancel', endStroke);

// ---- chat ------------------------------------------------------------------------

function chatItem({ uid, text }) {
  const li = document.createElement('li');
  const who = document.createElement('b');
  who.textContent = uid;
  li.append(who, document.createTextNode(text));
  return li;
}

function addChat(line) {
  demo.chat.push(line);
  chatList.append(chatItem(line));
  chatList.scrollTop = chatList.scrollHeight;
}

function renderChat() {
  chatList.replaceChildren(...demo.chat.map(chatItem));
}

$('#chat-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $('#chat-input');
  const text = input.value.trim();
  if (!text || !demo.room) return;
  input.value = '';
  addChat({ uid: demo.uid, text });
  send({ type: 'chat', text });
});
