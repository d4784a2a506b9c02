// The module's start page: directory, mode switch, "Anruf starten", guest rooms, incoming calls.
// Wires api.js and protocol.js to the page; names are always inserted as text.

import * as api from './api.js';
import {CLOSE_SIGNED_OUT, ServerConnection, serverUrl} from './protocol.js';
import {startRinging} from './ring.js';
import {refusalText, t} from './i18n.js';
import {$, say} from './page.js';

const selected = new Set();
let stopped = false;  // the server refused this page for good
let selfStream = null;
let directoryPoll;

async function loadDirectory() {
  const {users} = await api.call('GET', '/api/users');
  const query = $('search').value.trim().toLowerCase();
  const list = $('users');
  list.replaceChildren();
  for (const user of users) {
    if (user.me || (query && !user.name.toLowerCase().includes(query) && !user.login.toLowerCase().includes(query))) continue;
    const item = document.createElement('li');
    const label = document.createElement('label');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = selected.has(user.login);
    box.onchange = () => {
      if (box.checked) selected.add(user.login); else selected.delete(user.login);
      $('start').disabled = selected.size === 0;
    };
    label.append(box, document.createTextNode(user.name));
    const presence = document.createElement('span');
    presence.className = `presence ${user.presence}`;
    presence.textContent = t(user.presence);
    item.append(label, presence);
    list.append(item);
  }
}

async function showSelf() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({video: true, audio: false});
    if (stopped) {  // refused while the camera was starting
      for (const track of stream.getTracks()) track.stop();
      return;
    }
    selfStream = stream;
    $('self').srcObject = stream;
  } catch (e) {
    document.querySelector('input[name=mode][value="audio-only"]').checked = true;
    say(t('no_camera_audio_only'));
  }
}

function listenForCalls() {
  const conn = new ServerConnection(serverUrl());
  let stopRinging = null;
  conn.onmessage = (msg) => {
    if (msg.type === 'ring') {
      const mode = t(msg.mode === 'audio-only' ? 'mode_audio_only' : 'mode_audio_video');
      $('ring-title').textContent = t('calls_you', {name: msg.from.name, mode});
      $('ring-dialog').dataset.call = msg.call;
      if (!$('ring-dialog').open) $('ring-dialog').showModal();
      if (!stopRinging) stopRinging = startRinging();
    } else if (msg.type === 'ring-ended' && $('ring-dialog').dataset.call === msg.call) {
      $('ring-dialog').close();
    }
  };
  $('ring-dialog').onclose = () => { if (stopRinging) stopRinging(); stopRinging = null; };
  $('accept').onclick = async () => {
    const id = $('ring-dialog').dataset.call;
    const answer = await api.call('POST', `/api/calls/${id}/accept`);
    location.href = `/r/${answer.room}`;
  };
  $('decline').onclick = async () => {
    await api.call('POST', `/api/calls/${$('ring-dialog').dataset.call}/decline`).catch(() => {});
    $('ring-dialog').close();
  };
  conn.onconnectionlost = (lost) => { if (!stopped) say(lost ? t('server_lost') : ''); };
  conn.onrefused = (code, message) => stop(refusalText(code, message), code === CLOSE_SIGNED_OUT);
  conn.connect().catch(() => conn.lost());  // lost() does nothing after a final refusal
  return conn;
}

/**
 * The server refused this page for good (docs/protocol.md, "Closing"; e.g. 4001: signed
 * out): no more ringing or directory, the camera off, and why in the banner.
 * @param {string} text @param {boolean} signIn offer to sign in again
 */
function stop(text, signIn) {
  if (stopped) return;
  stopped = true;
  clearInterval(directoryPoll);
  if (selfStream) for (const track of selfStream.getTracks()) track.stop();
  $('self').srcObject = null;
  for (const id of ['ring-dialog', 'room-dialog']) if ($(id).open) $(id).close('stopped');
  say(text);
  document.body.classList.add('ended');
  $('sign-in').hidden = !signIn;
  $('stopped').hidden = !signIn;
}

async function main() {
  await api.me();
  if (!localStorage.getItem('p2pconf.permission-explained')) $('permission').hidden = false;
  $('permission-ok').onclick = () => {
    localStorage.setItem('p2pconf.permission-explained', '1');
    $('permission').hidden = true;
  };
  $('search').oninput = loadDirectory;
  $('start').onclick = async () => {
    const mode = document.querySelector('input[name=mode]:checked').value;
    try {
      const call = await api.call('POST', '/api/calls', {invitees: [...selected], mode});
      location.href = `/r/${call.room.id}`;
    } catch (e) {
      say(t('call_failed', {message: e.message}));
    }
  };
  $('invite').onclick = () => $('room-dialog').showModal();
  $('room-dialog').onclose = async () => {
    const name = $('room-name').value.trim();
    if ($('room-dialog').returnValue !== 'ok' || !name) return;
    try {
      const made = await api.call('POST', '/api/rooms', {name});
      sessionStorage.setItem(`p2pconf.link.${made.room.id}`, made.invite.link);
      location.href = `/r/${made.room.id}`;
    } catch (e) {
      say(t('room_failed', {message: e.message}));
    }
  };
  await loadDirectory();
  directoryPoll = setInterval(() => loadDirectory().catch(() => {}), 10000);
  const conn = listenForCalls();
  showSelf();
  window.p2pconf = {conn};  // for tests and debugging
}

main();
