// The conference view: a large picture in the centre, one tile per participant at
// the right edge (yourself included), mute toggles, "Beenden" (top left), and the
// link-quality view. Only wires protocol.js, mesh.js and quality.js to the page;
// names are inserted as text.

import * as api from './api.js';
import {CLOSE_SIGNED_OUT, ServerConnection, serverUrl} from './protocol.js';
import {Mesh} from './mesh.js';
import {CallQuality, readCounters, splitBudget} from './quality.js';
import {refusalText, t} from './i18n.js';
import {$, say} from './page.js';

const {room: roomId, mode: roomMode} = document.body.dataset;
const SELF = 'self';
const SAMPLE_MS = 1000;  // one quality sample per peer and second
const UPLOAD_EVERY = 2;  // samples between two stats uploads (docs/protocol.md)

let centre = SELF;
let centreChosen = false;  // until someone clicks a tile, the first remote participant is centred
let onCentre = () => {};  // tells the server whom we show (set once connected)
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
    if (id !== SELF) {
      const quality = document.createElement('span');
      quality.className = 'quality';
      quality.dataset.quality = 'unknown';
      tile.append(quality);
    }
    tile.onclick = () => { centre = id; centreChosen = true; drawStage(); };
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

/** Show a peer's link verdict on its tile: a coloured dot with the reason as its label. */
function drawQuality(id, verdict) {
  const dot = $(`tile-${id}`)?.querySelector('.quality');
  if (!dot || !verdict) return;
  dot.dataset.quality = verdict.bad ? 'bad' : 'good';
  const label = verdict.bad ? `${t('link_bad')}: ${verdict.reasons.join(', ')}` : t('link_good');
  dot.title = label;
  dot.setAttribute('aria-label', label);
  dot.setAttribute('role', 'img');
}

function drawStage() {
  if (!people.has(centre)) { centre = SELF; centreChosen = false; }
  if (centre === SELF && !centreChosen) {
    centre = [...people.keys()].find((id) => id !== SELF) ?? SELF;
  }
  onCentre(centre === SELF ? null : centre);
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

/** The link-quality view: the room's N x N matrix, row = sender, column = receiver. */
function drawMatrix(msg) {
  const names = new Map(msg.peers.map((p) => [p.id, p.name]));
  const cell = (text, tag = 'td') => Object.assign(document.createElement(tag), {textContent: text});
  const head = document.createElement('tr');
  head.append(cell('', 'th'), ...msg.peers.map((p) => cell(p.name, 'th')));
  const rows = msg.peers.map((from) => {
    const row = document.createElement('tr');
    row.append(cell(from.name, 'th'));
    for (const to of msg.peers) {
      const link = msg.links.find((l) => l.from === from.id && l.to === to.id);
      if (!link) { row.append(cell('–')); continue; }
      const parts = [];
      if (link.kbps !== null) parts.push(`${Math.round(link.kbps)} kbps`);
      else if (link.kbpsSent !== null) parts.push(`(${Math.round(link.kbpsSent)} kbps)`);
      if (link.lossPct !== null) parts.push(`${link.lossPct} %`);
      if (link.rttMs !== null) parts.push(`${Math.round(link.rttMs)} ms`);
      if (link.path === 'relay') parts.push(t('relay'));
      const td = cell(parts.join(' · ') || '…');
      td.dataset.from = names.get(link.from);
      td.dataset.to = names.get(link.to);
      if (link.lossPct !== null && link.lossPct >= 30) td.className = 'bad';
      row.append(td);
    }
    return row;
  });
  $('link-matrix').replaceChildren(head, ...rows);
}

/** The links under an ended call (summary, start page, sign in): the box shows when one of them does. */
function showAfterCall() {
  $('after-call').hidden = [...$('after-call').children].every((link) => link.hidden);
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
  /** @type {Mesh|null} */
  let mesh = null;
  /** @type {CallQuality|null} */
  let quality = null;
  let lastMatrix = null;
  let sampler;
  let matrixPoll;
  let over = false;

  // End the call for good, whoever ends it (Beenden, a refusal, a failed join): every peer
  // connection closed, no socket, camera and microphone released, the call view gone, and
  // `text` in the banner. Returns false when it was over already.
  const finish = (text) => {
    if (over) return false;
    over = true;
    clearInterval(sampler);
    clearInterval(matrixPoll);
    if (mesh) mesh.close();
    conn.close();
    for (const track of stream.getTracks()) track.stop();
    for (const id of ['quality-dialog', 'link-dialog']) if ($(id).open) $(id).close();
    $('tiles').replaceChildren();
    $('stage-video').srcObject = null;
    $('stage-name').textContent = '';
    people.clear();
    say(text);
    document.body.classList.add('ended');
    if (quality) {
      const summary = quality.summary(roomId, me.name, lastMatrix);
      const blob = new Blob([JSON.stringify(summary, null, 1)], {type: 'application/json'});
      $('download-quality').href = URL.createObjectURL(blob);
      $('download-quality').download = `p2pconf-quality-${new Date().toISOString().slice(0, 16).replace(':', '')}.json`;
    }
    $('download-quality').hidden = !quality;
    $('home').hidden = me.kind !== 'user';
    showAfterCall();
    return true;
  };
  // The server refused for good (docs/protocol.md, "Closing"): stop and say why; where
  // signing in again helps, offer it.
  conn.onrefused = (code, message) => {
    finish(refusalText(code, message));
    if (code === CLOSE_SIGNED_OUT || (code === 'forbidden' && me.kind === 'user')) {
      $('sign-in').hidden = false;
      $('home').hidden = true;
      showAfterCall();
    }
  };

  let joined;
  try {
    await conn.connect();
    joined = await conn.join(roomId, me.name, media);
  } catch (e) {
    if (!e.final) {  // a final refusal has been told by onrefused
      finish(e.code === 'room-full' ? t('room_full', {max: conn.welcome.maxRoomSize})
                                    : t('join_failed', {message: e.message}));
    }
    return;
  }
  people.set(SELF, {name: me.name, stream, media, note: ''});
  drawTile(SELF);
  showLink();

  quality = new CallQuality();
  const focusOf = new Map(joined.peers.map((p) => [p.id, p.focus]));  // whom each peer shows in its centre
  let sentFocus;
  onCentre = (peerId) => {
    if (peerId === sentFocus) return;
    sentFocus = peerId;
    conn.send({type: 'focus', peer: peerId});
  };
  const budgetKbps = conn.welcome.uploadKbps || 2000;

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
    mesh.onremove = (peer) => { if (!over) dropTile(peer.id); };
    mesh.offerTo(peers);
  };
  startMesh(joined.peers);

  conn.onmessage = (msg) => {
    if (msg.type === 'peer-joined') { mesh.expect(msg.peer); focusOf.set(msg.peer.id, msg.peer.focus); }
    else if (msg.type === 'peer-left') mesh.remove(msg.id);
    else if (msg.type === 'peer-media') {
      const peer = mesh.peers.get(msg.id);
      if (peer) peer.media = msg.media;
      const person = people.get(msg.id);
      if (person) { person.media = msg.media; drawTile(msg.id); }
    } else if (msg.type === 'peer-focus') focusOf.set(msg.id, msg.focus);
    else if (msg.type === 'link-matrix') { lastMatrix = msg; drawMatrix(msg); }
    else if (msg.type === 'call-status' && msg.call === roomId) showStatus(msg);
    else if (['offer', 'answer', 'candidate', 'renegotiate'].includes(msg.type)) mesh.signal(msg);
  };
  conn.onconnectionlost = (lost) => { if (!over) say(lost ? t('server_lost') : ''); };
  // A closed tab has gone: the others hear it now, not after the grace period.
  addEventListener('pagehide', () => conn.close());
  conn.onreconnected = (again) => {
    mesh.close();
    focusOf.clear();
    for (const p of again.peers) focusOf.set(p.id, p.focus);
    sentFocus = undefined;  // a new id: tell the room again
    startMesh(again.peers);
  };

  // Every second: sample each link, judge it for its tile, and split the video budget
  // between the peers; every UPLOAD_EVERY seconds tell the server (link-quality view).
  let ticks = 0;
  sampler = setInterval(async () => {
    ticks += 1;
    const peers = [...mesh.peers.values()];
    for (const peer of peers) {
      try {
        drawQuality(peer.id, quality.add(peer.id, peer.name, await readCounters(peer.pc)));
      } catch (e) {
        // closed while we asked
      }
    }
    const limits = splitBudget(budgetKbps, peers.map((p) => ({id: p.id, centred: focusOf.get(p.id) === conn.id})));
    for (const [id, limit] of limits) mesh.limitVideo(id, limit);
    if (ticks % UPLOAD_EVERY === 0) conn.send({type: 'stats', peers: quality.upload(peers.map((p) => p.id))});
  }, SAMPLE_MS);

  $('quality').onclick = () => {
    conn.send({type: 'link-matrix'});
    clearInterval(matrixPoll);
    matrixPoll = setInterval(() => conn.send({type: 'link-matrix'}), 2000);
    $('quality-dialog').showModal();
  };
  $('quality-dialog').onclose = () => clearInterval(matrixPoll);

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

  $('leave').onclick = () => finish(t('left_call'));
  window.p2pconf = {conn, quality, get mesh() { return mesh; }};  // for tests and debugging
}

main();
