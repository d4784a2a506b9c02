// The conference view: own picture, one tile per participant, "Beenden".
// Only wires protocol.js and mesh.js to the page; names are inserted as text.

import {ServerConnection, serverUrl} from './protocol.js';
import {Mesh} from './mesh.js';

const roomId = document.body.dataset.room;
const tiles = document.getElementById('tiles');
const banner = document.getElementById('banner');

/** A participant's tile: their video and their name, as text. */
function tile(id, name, stream, self = false) {
  let figure = document.getElementById(`tile-${id}`);
  if (!figure) {
    figure = document.createElement('figure');
    figure.id = `tile-${id}`;
    figure.className = self ? 'tile self' : 'tile';
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = self;
    const caption = document.createElement('figcaption');
    caption.textContent = name;
    figure.append(video, caption);
    figure.setAttribute('aria-label', name);
    tiles.append(figure);
  }
  const video = figure.querySelector('video');
  if (video.srcObject !== stream) video.srcObject = stream;
  return figure;
}

function say(text) {
  banner.textContent = text;
  banner.hidden = !text;
}

async function main() {
  const me = await (await fetch('/api/me')).json();
  const call = me.kind === 'guest' ? {mode: 'audio+video'} : {};
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({audio: true, video: call.mode !== 'audio-only'});
  } catch (e) {
    say('Kamera oder Mikrofon nicht verfügbar – Teilnahme nur mit Ton.');
    stream = await navigator.mediaDevices.getUserMedia({audio: true, video: false});
  }
  const conn = new ServerConnection(serverUrl());
  const welcome = await conn.connect();
  const hasVideo = stream.getVideoTracks().length > 0;
  const media = {mode: hasVideo ? 'audio+video' : 'audio-only', mic: true, cam: hasVideo};
  let joined;
  try {
    joined = await conn.join(roomId, me.name, media);
  } catch (e) {
    say(e.code === 'room-full' ? 'Der Raum ist voll.' : `Beitritt nicht möglich: ${e.message}`);
    return;
  }
  tile('self', me.name, stream, true);
  let mesh = new Mesh(conn, welcome.iceServers, stream);
  const wire = (m) => {
    m.ontrack = (peer) => tile(peer.id, peer.name, peer.stream);
    m.onremove = (peer) => document.getElementById(`tile-${peer.id}`)?.remove();
  };
  wire(mesh);
  mesh.offerTo(joined.peers);
  conn.onmessage = (msg) => {
    if (msg.type === 'peer-joined') mesh.expect(msg.peer);
    else if (msg.type === 'peer-left') mesh.remove(msg.id);
    else if (['offer', 'answer', 'candidate', 'renegotiate'].includes(msg.type)) mesh.signal(msg);
  };
  conn.onconnectionlost = (lost) => say(lost ? 'Verbindung zum Server unterbrochen – neuer Versuch …' : '');
  conn.onreconnected = (again) => {
    mesh.close();
    mesh = new Mesh(conn, conn.welcome.iceServers, stream);
    wire(mesh);
    mesh.offerTo(again.peers);
  };
  document.getElementById('leave').onclick = () => {
    mesh.close();
    conn.close();
    for (const t of stream.getTracks()) t.stop();
    say('Sie haben die Konferenz verlassen.');
    tiles.replaceChildren();
  };
  window.p2pconf = {conn, get mesh() { return mesh; }};  // for tests and debugging
}

main();
