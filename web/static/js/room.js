// The conference view: a large picture in the centre, one tile per participant at
// the right edge (yourself included), mute toggles and "Beenden" (top left).
// Only wires protocol.js and mesh.js to the page; names are inserted as text.

import * as api from './api.js';
import {ServerConnection, serverUrl} from './protocol.js';
import {Mesh} from './mesh.js';
import {t} from './i18n.js';
import {$, say} from './page.js';

const {room: roomId, mode: roomMode} = document.body.dataset;
const SELF = 'self';

let centre = SELF;
/** @type {Map<string, {name: string, stream: MediaStream, media: object, note: string}>} */
const people = new Map();

/** Draw (or update) the tile of one participant. */
function drawTile(id) {
  const person = people.get(id);
  let tile = $(`tile-${id}`);
  if (!tile) {
    tile = document.createElement('button');
    tile.type = 'button';
    tile.id = `tile-${id}`;
    tile.className = id === SELF ? 'tile self' : 'tile';
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = id === SELF;
    const name = document.createElement('span');
    name.className = 'name';
    const flags = document.createElement('span');
    flags.className = 'flags';
    tile.append(video, name, flags);
    tile.onclick = () => { centre = id; drawStage(); };
    $('tiles').append(tile);
  }
  const video = tile.querySelector('video');
  if (video.srcObject !== person.stream) video.srcObject = person.stream;
  tile.querySelector('.name').textContent = person.name;
  const flags = [];
  if (person.media.mic === false) flags.push(t('mic_muted'));
  if (person.media.cam === false) flags.push(t('cam_muted'));
  if (person.note) flags.push(person.note);
  const box = tile.querySelector('.flags');
  box.replaceChildren(...flags.map((f) => Object.assign(document.createElement('span'), {textContent: f})));
  drawStage();
}

function dropTile(id) {
  people.delete(id);
  $(`tile-${id}`)?.remove();
  if (centre === id) centre = SELF;
  drawStage();
}

function drawStage() {
  if (!people.has(centre)) centre = SELF;
  const person = people.get(centre);
  for (const tile of $('tiles').children) {
    if (tile.id === `tile-${centre}`) tile.setAttribute('aria-current', 'true');
    else tile.removeAttribute('aria-current');
  }
  if (!person) return;
  if ($('stage-video').srcObject !== person.stream) $('stage-video').srcObject = person.stream;
  $('stage-name').textContent = person.name;
}

// A mesh sends one stream per peer: ask for a modest picture (the camera may give more).
const VIDEO = {width: {ideal: 640}, height: {ideal: 360}, frameRate: {ideal: 15, max: 24}};

async function camera(video) {
  try {
    return await navigator.mediaDevices.getUserMedia({audio: true, video: video && VIDEO});
  } catch (e) {
    if (!video) throw e;
    // No camera or no permission: offer to take part with sound only.
    $('audio-only-offer').hidden = false;
    await new Promise((resolve) => { $('join-audio-only').onclick = resolve; });
    $('audio-only-offer').hidden = true;
    return navigator.mediaDevices.getUserMedia({audio: true, video: false});
  }
}

function showLink() {
  const link = sessionStorage.getItem(`p2pconf.link.${roomId}`);
  if (!link) return;
  $('invite-link').value = link;
  $('copy-link').onclick = async () => {
    try {
      await navigator.clipboard.writeText(link);
    } catch (e) {
      $('invite-link').select();
      document.execCommand('copy');
    }
    $('copy-link').textContent = t('copied');
  };
  $('link-dialog').showModal();
}

function showStatus(msg) {
  let item = $(`status-${msg.login}`);
  if (!item) {
    item = document.createElement('li');
    item.id = `status-${msg.login}`;
    $('call-status').append(item);
  }
  item.textContent = `${msg.name}: ${t(msg.status)}`;
}

async function main() {
  const me = await api.me();
  let stream;
  try {
    stream = await camera(roomMode !== 'audio-only');
  } catch (e) {
    say(t('no_microphone'));
    return;
  }
  const hasVideo = stream.getVideoTracks().length > 0;
  const media = {mode: hasVideo ? 'audio+video' : 'audio-only', mic: true, cam: hasVideo};
  $('cam').hidden = !hasVideo;
  const conn = new ServerConnection(serverUrl());
  let joined;
  try {
    await conn.connect();
    joined = await conn.join(roomId, me.name, media);
  } catch (e) {
    say(e.code === 'room-full' ? t('room_full', {max: conn.welcome?.maxRoomSize ?? 6})
                               : t('join_failed', {message: e.message}));
    for (const track of stream.getTracks()) track.stop();
    document.body.classList.add('ended');
    return;
  }
  people.set(SELF, {name: me.name, stream, media, note: ''});
  drawTile(SELF);
  showLink();

  let mesh;
  const startMesh = (peers) => {
    mesh = new Mesh(conn, conn.welcome.iceServers, stream, roomMode !== 'audio-only');
    mesh.ontrack = (peer) => {
      const person = people.get(peer.id) || {name: peer.name, stream: peer.stream, media: peer.media, note: ''};
      people.set(peer.id, person);
      drawTile(peer.id);
    };
    mesh.onstate = (peer, state) => {
      const person = people.get(peer.id);
      if (!person) return;
      person.note = state === 'failed' || state === 'disconnected' ? t('peer_trouble') : '';
      drawTile(peer.id);
    };
    mesh.onremove = (peer) => dropTile(peer.id);
    mesh.offerTo(peers);
  };
  startMesh(joined.peers);

  conn.onmessage = (msg) => {
    if (msg.type === 'peer-joined') mesh.expect(msg.peer);
    else if (msg.type === 'peer-left') mesh.remove(msg.id);
    else if (msg.type === 'peer-media') {
      const peer = mesh.peers.get(msg.id);
      if (peer) peer.media = msg.media;
      const person = people.get(msg.id);
      if (person) { person.media = msg.media; drawTile(msg.id); }
    } else if (msg.type === 'call-status' && msg.call === roomId) showStatus(msg);
    else if (['offer', 'answer', 'candidate', 'renegotiate'].includes(msg.type)) mesh.signal(msg);
  };
  conn.onconnectionlost = (lost) => say(lost ? t('server_lost') : '');
  conn.onreconnected = (again) => {
    mesh.close();
    startMesh(again.peers);
  };

  const toggle = (button, kind, on, off, key) => {
    button.onclick = () => {
      const tracks = kind === 'audio' ? stream.getAudioTracks() : stream.getVideoTracks();
      const enabled = !tracks[0].enabled;
      for (const t of tracks) t.enabled = enabled;
      button.textContent = enabled ? off : on;
      button.setAttribute('aria-pressed', String(!enabled));
      people.get(SELF).media[key] = enabled;
      conn.setMedia({[key]: enabled});
      drawTile(SELF);
    };
  };
  toggle($('mic'), 'audio', t('mic_on'), t('mic_off'), 'mic');
  toggle($('cam'), 'video', t('cam_on'), t('cam_off'), 'cam');

  $('leave').onclick = () => {
    mesh.close();
    conn.close();
    for (const t of stream.getTracks()) t.stop();
    $('tiles').replaceChildren();
    $('stage-video').srcObject = null;
    people.clear();
    say(t('left_call'));
    document.body.classList.add('ended');
    if (me.kind === 'user') setTimeout(() => { location.href = '/'; }, 1500);
  };
  window.p2pconf = {conn, get mesh() { return mesh; }};  // for tests and debugging
}

main();
