// The module's start page: favourites, recent calls and search, mode switch, "Anruf starten", guest rooms, incoming calls.
// Wires api.js and protocol.js to the page; names are always inserted as text.

import * as api from './api.js';
import {CLOSE_SIGNED_OUT, ServerConnection, serverUrl} from './protocol.js';
import {startRinging} from './ring.js';
import {openDevices, settings} from './devices.js';
import {linkTest} from './linkview.js';
import {refusalText, t} from './i18n.js';
import {$, say} from './page.js';

const selected = new Set();  // logins ticked for the call; kept across searches
let stopped = false;  // the server refused this page for good
let selfStream = null;
/** @type {ServerConnection|null} the page's connection: calls ring through it, presence comes through it */
let conn = null;

// The directory (docs/api.md, "Directory"): never all of it. Before a search the people of
// GET /api/contacts; while a query is entered the server's search results, a page at a time.
const SEARCH_DELAY_MS = 250;
const MAX_FOLLOWED = 200;  // docs/protocol.md, "Presence"
const PRESENCE = ['online', 'in-call', 'offline'];
let contacts = {favorites: [], recent: []};
/** @type {{query: string, users: object[], next: string|null}|null} while a query is entered */
let results = null;
let searchSeq = 0;  // bumped by every edit of the box: answers to older queries are dropped
let searchTimer;
let searchFailed = false;  // the banner tells of a failed search
let loadingMore = false;
const starring = new Set();  // logins whose favourite change is on its way
let followed = '';  // the logins last subscribed to, joined

async function loadContacts() {
  const answer = await api.call('GET', '/api/contacts');
  contacts = {favorites: answer.favorites, recent: answer.recent};
  render();
}

function searchEdited() {
  clearTimeout(searchTimer);
  const query = $('search').value.trim();
  const seq = ++searchSeq;
  if (!query) {
    results = null;
    render();
    return;
  }
  searchTimer = setTimeout(() => search(query, null, seq), SEARCH_DELAY_MS);
}

/** One page of the server's search; appended to the results when `cursor` is given. */
async function search(query, cursor, seq) {
  const params = new URLSearchParams({q: query});
  if (cursor) params.set('cursor', cursor);
  let answer;
  try {
    answer = await api.call('GET', `/api/users?${params}`);
  } catch (e) {
    if (seq === searchSeq && !stopped) {
      searchFailed = true;
      say(t('search_failed', {message: e.message}));
    }
    return;
  }
  if (seq !== searchSeq || stopped) return;  // the box changed meanwhile
  if (searchFailed) say('');
  searchFailed = false;
  const earlier = cursor && results ? results.users : [];
  results = {query, users: [...earlier, ...answer.users], next: answer.next};
  render();
}

async function loadMore() {
  if (!results || !results.next || loadingMore) return;
  loadingMore = true;
  try {
    await search(results.query, results.next, searchSeq);
  } finally {
    loadingMore = false;
  }
}

/** Draw the groups from the model, keep the focus where it was, follow the presence of who is shown. */
function render() {
  const active = /** @type {HTMLElement|null} */ (document.activeElement);
  const focused = active && active.dataset ? active.dataset.key : undefined;
  const groups = results
    ? [{id: 'results', title: t('results'), users: results.users, empty: t('no_results'), more: Boolean(results.next)}]
    : [{id: 'favorites', title: t('favorites'), users: contacts.favorites, empty: t('no_favorites')},
       {id: 'recent', title: t('recent'), users: contacts.recent, empty: t('no_recent')}];
  const list = $('users');
  list.replaceChildren(...groups.map(drawGroup));
  if (focused) {
    for (const el of list.querySelectorAll('[data-key]')) if (el.dataset.key === focused) { el.focus(); break; }
  }
  $('start').disabled = selected.size === 0;
  follow(groups.flatMap((g) => g.users.filter((u) => !u.me).map((u) => u.login)));
}

function drawGroup({id, title, users, empty, more}) {
  const section = document.createElement('section');
  section.className = 'group';
  section.dataset.group = id;
  section.setAttribute('aria-labelledby', `group-${id}`);
  const heading = document.createElement('h3');
  heading.id = `group-${id}`;
  heading.textContent = title;
  section.append(heading);
  const shown = users.filter((u) => !u.me);
  if (shown.length) {
    const ul = document.createElement('ul');
    ul.className = 'users';
    ul.append(...shown.map((u) => drawEntry(u, id)));
    section.append(ul);
  } else {
    const note = document.createElement('p');
    note.className = 'empty';
    note.textContent = empty;
    section.append(note);
  }
  if (more) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'secondary more';
    button.dataset.key = `more:${id}`;
    button.textContent = t('load_more');
    button.onclick = loadMore;
    section.append(button);
  }
  return section;
}

function drawEntry(user, group) {
  const item = document.createElement('li');
  item.dataset.login = user.login;
  const label = document.createElement('label');
  const box = document.createElement('input');
  box.type = 'checkbox';
  box.dataset.login = user.login;
  box.dataset.key = `box:${group}:${user.login}`;
  box.checked = selected.has(user.login);
  box.onchange = () => {
    if (box.checked) selected.add(user.login); else selected.delete(user.login);
    for (const other of $('users').querySelectorAll('input[type=checkbox]')) {
      if (other.dataset.login === user.login) other.checked = box.checked;  // the same person in another group
    }
    $('start').disabled = selected.size === 0;
  };
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = user.name;
  label.append(box, name);
  const presence = document.createElement('span');
  presence.dataset.login = user.login.toLowerCase();
  showState(presence, user.presence);
  const star = document.createElement('button');
  star.type = 'button';
  star.className = 'star';
  star.dataset.key = `star:${group}:${user.login}`;
  star.setAttribute('aria-pressed', String(Boolean(user.favorite)));
  star.setAttribute('aria-label', `${t('favorite')}: ${user.name}`);
  star.title = t('favorite');
  star.textContent = user.favorite ? '★' : '☆';
  star.onclick = () => toggleFavorite(user);
  item.append(label, presence, star);
  return item;
}

function showState(label, state) {
  const value = PRESENCE.includes(state) ? state : 'offline';
  label.className = `presence ${value}`;
  label.textContent = t(value);
}

/** Every listed person object of the model with this login (one person may be in two groups). */
function entriesOf(login) {
  const all = [...contacts.favorites, ...contacts.recent, ...(results ? results.users : [])];
  return all.filter((u) => u.login.toLowerCase() === login.toLowerCase());
}

async function toggleFavorite(user) {
  if (starring.has(user.login)) return;
  const favorite = !user.favorite;
  starring.add(user.login);
  try {
    await api.call(favorite ? 'PUT' : 'DELETE', `/api/favorites/${encodeURIComponent(user.login)}`);
  } catch (e) {
    say(t('favorite_failed', {message: e.message}));
    return;
  } finally {
    starring.delete(user.login);
  }
  for (const u of [user, ...entriesOf(user.login)]) u.favorite = favorite;
  contacts.favorites = contacts.favorites.filter((u) => u.login !== user.login);
  if (favorite) {
    contacts.favorites.push({...user, favorite: true});
    const lang = document.documentElement.lang || 'de';
    contacts.favorites.sort((a, b) => a.name.localeCompare(b.name, lang, {sensitivity: 'base'})
                                      || a.login.localeCompare(b.login));
  }
  render();
}

/** Follow the presence of these logins (deduplicated, the first MAX_FOLLOWED) over the page's connection. */
function follow(logins) {
  const wanted = [...new Set(logins.map((l) => l.toLowerCase()))].slice(0, MAX_FOLLOWED);
  const key = wanted.join(' ');
  if (!conn || key === followed) return;
  followed = key;
  conn.subscribe(wanted);
}

/** A `presence` message: new values for some logins. @param {Record<string, string>} users */
function presenceChanged(users) {
  for (const [login, state] of Object.entries(users || {})) {
    for (const u of entriesOf(login)) u.presence = state;
  }
  for (const label of $('users').querySelectorAll('.presence')) {
    if (Object.hasOwn(users || {}, label.dataset.login)) showState(label, users[label.dataset.login]);
  }
}

/** The own picture, from the camera chosen in "Einstellungen" (again after the dialog closed). */
async function showSelf() {
  try {
    const stream = await openDevices(true, undefined, false);
    if (stopped) {  // refused while the camera was starting
      for (const track of stream.getTracks()) track.stop();
      return;
    }
    selfStream?.getTracks().forEach((track) => track.stop());
    selfStream = stream;
    $('self').srcObject = stream;
  } catch (e) {
    /** @type {HTMLInputElement} */ (document.querySelector('input[name=mode][value="audio-only"]')).checked = true;
    say(t('no_camera_audio_only'));
  }
}

function listenForCalls() {
  const conn = new ServerConnection(serverUrl());
  addEventListener('pagehide', () => conn.close());  // gone: offline now, not after the grace period
  let stopRinging = null;
  conn.onmessage = (msg) => {
    if (msg.type === 'presence') {
      presenceChanged(msg.users);
    } else if (msg.type === 'ring') {
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
  clearTimeout(searchTimer);
  searchSeq++;  // answers still on their way are dropped
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
  $('search').oninput = searchEdited;
  $('start').onclick = async () => {
    const mode = /** @type {HTMLInputElement} */ (document.querySelector('input[name=mode]:checked')).value;
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
      const lobby = /** @type {HTMLInputElement} */ ($('room-lobby')).checked;
      const made = await api.call('POST', '/api/rooms', {name, lobby});
      sessionStorage.setItem(`p2pconf.link.${made.room.id}`, made.invite.link);
      location.href = `/r/${made.room.id}`;
    } catch (e) {
      say(t('room_failed', {message: e.message}));
    }
  };
  // The connection first: every render subscribes to the presence of who it shows through it
  // (sent once the socket has shaken hands, and again after each reconnect).
  conn = listenForCalls();
  window.p2pconf = {conn};  // for tests and debugging
  showSelf();
  settings({video: true, onclose: showSelf});
  linkTest(() => ({csrf: api.csrfToken()}));
  await loadContacts().catch(() => render());
  if ($('search').value.trim()) searchEdited();  // a query the browser restored
}

main();
