// The conference view: a large picture in the centre, one tile per participant at
// the right edge (yourself included), mute toggles, "Beenden" (top left), and the
// link-quality view. It draws what the call (call.js) announces and forwards clicks
// to it; names are inserted as text.

import * as api from './api.js';
import {CLOSE_SIGNED_OUT, ServerConnection, serverUrl} from './protocol.js';
import {Call, SELF} from './call.js';
import {openDevices, settings, useSpeaker} from './devices.js';
import {refusalText, t} from './i18n.js';
import {$, say} from './page.js';

const {room: roomId, mode: roomMode} = document.body.dataset;
/** @type {Call} */
let call;

/** Draw (or update) the tile of one participant. @param {string} id */
function drawTile(id) {
  const person = call.participants.get(id);
  if (!person) return;
  let tile = $(`tile-${id}`);
  if (!tile) {
    tile = document.createElement('button');
    tile.type = 'button';
    tile.id = `tile-${id}`;
    tile.className = id === SELF ? 'tile self' : person.screenOf ? 'tile screen' : 'tile';
    const video = document.createElement('video');
    video.autoplay = true;
    video.playsInline = true;
    video.muted = id === SELF;
    useSpeaker(video);
    const name = document.createElement('span');
    name.className = 'name';
    const flags = document.createElement('span');
    flags.className = 'flags';
    tile.append(video, name, flags);
    if (id !== SELF && !person.screenOf) {
      const quality = document.createElement('span');
      quality.className = 'quality';
      quality.dataset.quality = 'unknown';
      tile.append(quality);
    }
    tile.onclick = () => call.setCentre(id);
    $('tiles').append(tile);
  }
  const video = tile.querySelector('video');
  if (video.srcObject !== person.stream) video.srcObject = person.stream;
  tile.querySelector('.name').textContent = shownName(person);
  const flags = [];
  if (person.media.mic === false) flags.push(t('mic_muted'));
  if (person.media.cam === false) flags.push(t('cam_muted'));
  if (person.trouble) flags.push(t('peer_trouble'));
  if (person.speaking) flags.push(t('speaking'));
  tile.classList.toggle('speaking', Boolean(person.speaking));
  const hand = call.handOrder(id);
  if (hand) flags.push(t('hand_raised', {order: hand}));
  const box = tile.querySelector('.flags');
  box.replaceChildren(...flags.map((f) => Object.assign(document.createElement('span'), {textContent: f})));
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

/** Show the call's centre participant on the stage, and mark their tile. */
function drawStage() {
  const centre = call.centre;
  const person = call.participants.get(centre);
  for (const tile of $('tiles').children) {
    if (tile.id === `tile-${centre}`) tile.setAttribute('aria-current', 'true');
    else tile.removeAttribute('aria-current');
  }
  if (!person) return;
  if ($('stage-video').srcObject !== person.stream) $('stage-video').srcObject = person.stream;
  $('stage-name').textContent = shownName(person);
}

/** A participant's name as its tile says it. @param {import('./call.js').Participant} person */
function shownName(person) {
  return person.screenOf ? t('screen_of', {name: person.name}) : person.name;
}

/** Camera and microphone, as chosen in "Einstellungen". @param {boolean} video */
async function camera(video) {
  try {
    return await openDevices(video);
  } catch (e) {
    if (!video) throw e;
    // No camera or no permission: offer to take part with sound only.
    $('audio-only-offer').hidden = false;
    await new Promise((resolve) => { $('join-audio-only').onclick = resolve; });
    $('audio-only-offer').hidden = true;
    return openDevices(false);
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

/**
 * The guests who wait at the lobby, each with "Einlassen" and "Abweisen" (for signed-in members).
 * @param {{id: string, name: string}[]} waiting
 */
function drawKnocks(waiting) {
  const items = waiting.map((guest) => {
    const item = document.createElement('li');
    const text = Object.assign(document.createElement('span'), {textContent: t('knock', {name: guest.name})});
    const button = (label, admit) => Object.assign(document.createElement('button'), {
      type: 'button', textContent: t(label), className: admit ? '' : 'secondary',
      onclick: () => call.answerGuest(guest.id, admit)});
    item.append(text, button('admit', true), button('refuse', false));
    return item;
  });
  $('knocks').replaceChildren(...items);
  $('knocks').hidden = !items.length;
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

const URL_IN_TEXT = /https?:\/\/[^\s<>"']*[^\s<>"'.,;:!?)]/g;  // only http(s) becomes a link

/** A chat text as nodes: text as text, http(s) addresses as links. @param {string} text */
function linked(text) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(URL_IN_TEXT)) {
    parts.push(document.createTextNode(text.slice(last, match.index)));
    parts.push(Object.assign(document.createElement('a'), {href: match[0], textContent: match[0], target: '_blank',
                                                           rel: 'noopener noreferrer'}));
    last = match.index + match[0].length;
  }
  parts.push(document.createTextNode(text.slice(last)));
  return parts;
}

/** Add one chat message to the panel, in time order. @param {import('./chat.js').ChatMessage} m */
function drawChatMessage(m) {
  const item = document.createElement('li');
  item.className = m.mine ? 'mine' : '';
  item.dataset.at = String(m.at);
  const time = new Date(m.at).toLocaleTimeString(document.documentElement.lang || undefined,
                                                 {hour: '2-digit', minute: '2-digit'});
  const via = m.via ? ` · ${t('chat_via', {name: m.via})}` : '';
  const from = Object.assign(document.createElement('span'), {className: 'from', textContent: `${m.name} · ${time}${via}`});
  const body = document.createElement('p');
  body.append(...linked(m.text));
  item.append(from, body);
  const list = $('chat-messages');
  list.insertBefore(item, [...list.children].find((li) => Number(li.dataset.at) > m.at) || null);
  list.scrollTop = list.scrollHeight;
}

/** The unread count on the "Chat" button. @param {number} count */
function drawUnread(count) {
  $('chat-unread').textContent = String(count);
  $('chat-unread').hidden = !count;
  if (count) $('chat-toggle').setAttribute('aria-label', t('chat_unread', {count}));
  else $('chat-toggle').removeAttribute('aria-label');
}

/** The call is over: the call view gone, why in the banner, and what one can do next. */
function showEnded({reason, code, message, summary}, me) {
  for (const id of ['quality-dialog', 'link-dialog']) if ($(id).open) $(id).close();
  $('tiles').replaceChildren();
  drawKnocks([]);
  $('stage-video').srcObject = null;
  $('stage-name').textContent = '';
  const texts = {
    'left': () => t('left_call'),
    'refused': () => refusalText(code, message),
    'room-full': () => t('room_full', {max: call.conn.welcome?.maxRoomSize}),
    'join-failed': () => t('join_failed', {message}),
  };
  say(texts[reason]());
  document.body.classList.add('ended');
  if (summary) {
    const blob = new Blob([JSON.stringify(summary, null, 1)], {type: 'application/json'});
    $('download-quality').href = URL.createObjectURL(blob);
    $('download-quality').download = `p2pconf-quality-${new Date().toISOString().slice(0, 16).replace(':', '')}.json`;
  }
  $('download-quality').hidden = !summary;
  // Refused for good (docs/protocol.md, "Closing"): where signing in again helps, offer it.
  const signInAgain = reason === 'refused' && (code === CLOSE_SIGNED_OUT || (code === 'forbidden' && me.kind === 'user'));
  $('sign-in').hidden = !signInAgain;
  $('home').hidden = me.kind !== 'user' || signInAgain;
  showAfterCall();
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
  call = new Call({roomId, mode: roomMode, name: me.name, stream, conn: new ServerConnection(serverUrl())});
  window.p2pconf = {call, conn: call.conn, quality: call.quality, get mesh() { return call.mesh; }};  // for tests
  $('cam').hidden = !call.media.cam;
  /** @param {string} type @param {(detail: any) => void} draw what to do with the event's detail */
  const on = (type, draw) => call.addEventListener(type, (e) => draw(/** @type {CustomEvent} */ (e).detail));
  on('participant', ({id}) => drawTile(id));
  on('participantleft', ({id}) => $(`tile-${id}`)?.remove());
  on('centre', drawStage);
  on('quality', ({id, verdict}) => drawQuality(id, verdict));
  on('matrix', drawMatrix);
  on('callstatus', showStatus);
  on('waiting', () => say(t('lobby_wait')));
  on('knocks', ({waiting}) => drawKnocks(waiting));
  on('sharing', ({on: sharing}) => {
    $('screen').textContent = sharing ? t('screen_stop') : t('screen_share');
    $('screen').setAttribute('aria-pressed', String(sharing));
  });
  on('connectionlost', ({lost}) => say(lost ? t('server_lost') : ''));
  on('ended', (ending) => showEnded(ending, me));
  call.chat.addEventListener('message', (e) => drawChatMessage(/** @type {CustomEvent} */ (e).detail));
  call.chat.addEventListener('unread', (e) => drawUnread(/** @type {CustomEvent} */ (e).detail));
  // A closed tab has gone: the others hear it now, not after the grace period.
  addEventListener('pagehide', () => call.conn.close());
  try {
    await call.join();
  } catch (e) {
    return;  // the call has ended, and said why
  }
  say('');  // no longer waiting at the lobby
  showLink();

  const showMore = (open) => {
    $('more-menu').classList.toggle('open', open);
    $('more').setAttribute('aria-expanded', String(open));
  };
  $('more').onclick = () => showMore(!$('more-menu').classList.contains('open'));
  $('more-menu').addEventListener('click', () => showMore(false));  // a choice closes the menu
  $('quality').onclick = () => {
    call.watchLinks(true);
    $('quality-dialog').showModal();
  };
  $('quality-dialog').onclose = () => call.watchLinks(false);
  const toggle = (button, key, on, off) => {
    button.onclick = () => {
      const enabled = call.toggle(key);
      button.textContent = enabled ? off : on;
      button.setAttribute('aria-pressed', String(!enabled));
    };
  };
  $('hand').onclick = () => {
    const up = !call.hands.has(SELF);
    call.raiseHand(up);
    $('hand').textContent = up ? t('hand_lower') : t('hand_raise');
    $('hand').setAttribute('aria-pressed', String(up));
  };
  toggle($('mic'), 'mic', t('mic_on'), t('mic_off'));
  toggle($('cam'), 'cam', t('cam_on'), t('cam_off'));
  $('leave').onclick = () => call.end({reason: 'left'});
  settings({video: call.stream.getVideoTracks().length > 0, current: () => call.stream,
            onchange: (changed) => call.useDevices(changed)});
  // phones cannot share a screen, and an audio-only call carries no video
  $('screen').hidden = !navigator.mediaDevices.getDisplayMedia || roomMode === 'audio-only';
  $('screen').onclick = async () => {
    if (call.screenTrack) {
      call.shareScreen(null);
      return;
    }
    try {
      // a screen changes little: 15 frames a second leave the bits to the resolution
      const screen = await navigator.mediaDevices.getDisplayMedia({video: {frameRate: {max: 15}}, audio: false});
      await call.shareScreen(screen.getVideoTracks()[0]);
    } catch (e) {
      if (e.name !== 'NotAllowedError') say(t('screen_failed', {message: e.message}));  // not when the user cancelled
    }
  };
  $('chat-toggle').onclick = () => {
    const open = $('chat-panel').hidden;
    $('chat-panel').hidden = !open;
    $('chat-toggle').setAttribute('aria-expanded', String(open));
    call.chat.show(open);
    if (open) $('chat-text').focus();
  };
  $('chat-form').onsubmit = (/** @type {Event} */ e) => {
    e.preventDefault();
    if (call.sendChat($('chat-text').value)) $('chat-text').value = '';
  };
}

main();
