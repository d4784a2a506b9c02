// One participant's call, without the DOM: the server connection, the mesh, who takes
// part, whom we show in our centre (and so tell the server), the 1-s quality sampler
// with the split of our upload budget, the stats upload and who speaks, the link matrix, mute,
// screen sharing, the chat and raised hands over the peers' data channels, and the end of the
// call. room.js draws what a Call announces and forwards clicks to it.

import {Chat, MAX_HISTORY, MAX_TEXT_CHARS, fromHistory} from './chat.js';
import {Mesh} from './mesh.js';
import {CallQuality, SPEAKING_RMS, audioLevel, readCounters, splitBudget} from './quality.js';

export const SELF = 'self';  // the participant id of this page's own tile
const SCREEN = '/screen';  // a peer's shared screen is the participant `<peer id>/screen`
const SAMPLE_MS = 1000;  // one quality sample per peer and second
const UPLOAD_EVERY = 2;  // samples between two stats uploads (docs/protocol.md)
const MATRIX_EVERY_MS = 2000;  // how often an open link-quality view asks again
const DEFAULT_BUDGET_KBPS = 2000;  // when the server's welcome names no uploadKbps

/**
 * @typedef {{id: string, name: string, stream: MediaStream, media: Record<string, unknown>,
 *            trouble: boolean, speaking?: boolean, screenOf?: string}} Participant
 *   `screenOf`: for a shared screen, the id of the peer who shares it
 * @typedef {{reason: 'left'|'refused'|'room-full'|'join-failed', code?: number|string,
 *            message?: string}} Ending
 */

/**
 * A Call fires (each a CustomEvent):
 * - `participant` (detail: {id}): a participant to draw: new, muted, with connection trouble;
 * - `participantleft` (detail: {id});
 * - `centre` (detail: {id}): whom the centre shows now (SELF or a peer id);
 * - `quality` (detail: {id, verdict}): the last seconds of one link, judged;
 * - `matrix` (detail: the link-matrix message);
 * - `callstatus` (detail: a call-status message of this call: an invitee's answer);
 * - `sharing` (detail: {on}): we started or stopped sharing our screen;
 * - `waiting` (detail: the lobby message): we are a guest who waits to be let in;
 * - `knocks` (detail: {waiting: [{id, name}]}): the guests who wait to be let in now (for
 *   signed-in members; an empty list when nobody waits any more);
 * - `connectionlost` (detail: {lost}): the server is unreachable (true) or back (false);
 * - `ended` (detail: an Ending and `summary`, the quality summary or null): all is closed.
 */
export class Call extends EventTarget {
  /**
   * @param {{roomId: string, mode: string, name: string, stream: MediaStream,
   *          conn: import('./protocol.js').ServerConnection}} options
   *   `stream`: camera and microphone (audio only in an audio-only call, or without a camera)
   */
  constructor({roomId, mode, name, stream, conn}) {
    super();
    this.roomId = roomId;
    this.mode = mode;
    this.name = name;
    this.stream = stream;
    this.conn = conn;
    const hasVideo = stream.getVideoTracks().length > 0;
    /** what we send, as the others see it */
    this.media = {mode: hasVideo ? 'audio+video' : 'audio-only', mic: true, cam: hasVideo};
    /** @type {Map<string, Participant>} */
    this.participants = new Map();
    /** @type {Mesh|null} */
    this.mesh = null;
    this.quality = new CallQuality();
    this.chat = new Chat();
    /** @type {Map<string, number>} who has a hand up (SELF included), and since when by our clock */
    this.hands = new Map();
    /** @type {MediaStreamTrack|null} the screen we share */
    this.screenTrack = null;
    /** @type {Map<string, object>} each peer's last counters (readCounters), for its audio level */
    this.lastCounters = new Map();
    /** @type {object|null} the last link matrix */
    this.matrix = null;
    /** @type {Map<string, string|null>} whom each peer shows in its centre */
    this.focusOf = new Map();
    this.centre = SELF;
    this.centreChosen = false;  // until the user picks someone, the first remote participant is centred
    /** @type {string|null|undefined} the focus the server knows (undefined: tell it again) */
    this.sentFocus = null;
    this.joined = false;
    this.over = false;
    this.ticks = 0;
    /** @type {ReturnType<typeof setInterval>|undefined} */
    this.sampler = undefined;
    /** @type {ReturnType<typeof setInterval>|undefined} */
    this.matrixPoll = undefined;
    conn.onrefused = (code, message) => { this.end({reason: 'refused', code, message}); };
    conn.onmessage = (msg) => this.serverSaid(msg);
    conn.onwaiting = (lobby) => this.emit('waiting', lobby);
    conn.onconnectionlost = (lost) => { if (!this.over) this.emit('connectionlost', {lost}); };
    conn.onreconnected = (again) => this.rejoined(again.peers);
  }

  /** @param {string} type @param {unknown} detail */
  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, {detail}));
  }

  /**
   * Connect, join the room and start the mesh and the sampler. On failure the call ends
   * (`ended`: room-full, join-failed, or refused for good) and the error is rethrown.
   */
  async join() {
    let joined;
    try {
      await this.conn.connect();
      joined = await this.conn.join(this.roomId, this.name, this.media);
    } catch (e) {
      this.end({reason: e.code === 'room-full' ? 'room-full' : 'join-failed', message: e.message});
      throw e;
    }
    this.joined = true;
    this.participants.set(SELF, {id: SELF, name: this.name, stream: this.stream, media: this.media, trouble: false});
    this.emit('participant', {id: SELF});
    this.startMesh(joined.peers);
    this.sampler = setInterval(() => this.sample(), SAMPLE_MS);
    this.updateCentre();
    return joined;
  }

  /** The user picked whom the centre shows. @param {string} id */
  setCentre(id) {
    this.centre = id;
    this.centreChosen = true;
    this.updateCentre();
  }

  /**
   * Switch the microphone ("mic") or the camera ("cam") on or off; whether it is on now.
   * @param {'mic'|'cam'} key
   */
  toggle(key) {
    const tracks = key === 'mic' ? this.stream.getAudioTracks() : this.stream.getVideoTracks();
    const enabled = !tracks[0].enabled;
    for (const track of tracks) track.enabled = enabled;
    this.media[key] = enabled;
    this.conn.setMedia({[key]: enabled});
    this.emit('participant', {id: SELF});
    return enabled;
  }

  /**
   * Switch devices during the call: each track of `stream` replaces ours of its kind on every
   * connection (replaceTrack, no renegotiation) and keeps its mute state; the old one stops.
   * @param {MediaStream} stream
   */
  async useDevices(stream) {
    for (const track of stream.getTracks()) {
      const old = this.stream.getTracks().find((t) => t.kind === track.kind);
      if (!old) {
        track.stop();  // e.g. a camera in a call we joined without one
        continue;
      }
      track.enabled = old.enabled;
      if (this.mesh) await this.mesh.replaceTrack(old, track);
      this.stream.removeTrack(old);
      this.stream.addTrack(track);
      old.stop();
    }
    this.emit('participant', {id: SELF});
  }

  /**
   * Share a screen (a getDisplayMedia track) with everyone, or stop sharing with null. The
   * browser's own "stop sharing" ends it too. @param {MediaStreamTrack|null} track
   */
  async shareScreen(track) {
    if (track === this.screenTrack || !this.mesh) return;
    const before = this.screenTrack;
    this.screenTrack = track;
    if (track) {
      track.contentHint = 'detail';  // text stays sharp: resolution before frame rate
      track.addEventListener('ended', () => { if (this.screenTrack === track) this.shareScreen(null); });
    }
    before?.stop();
    this.media.screen = Boolean(track);
    this.conn.setMedia({screen: Boolean(track)});
    this.emit('sharing', {on: Boolean(track)});
    await this.mesh.shareScreen(track);  // replaceTrack waits for each connection's pending operations
  }

  /**
   * Show a peer's shared screen as a participant of its own while the peer says it shares
   * (docs/protocol.md "Media lines"); a screen that appears takes the centre.
   * @param {import('./mesh.js').Peer} peer
   */
  syncScreen(peer) {
    const id = peer.id + SCREEN;
    const shown = this.participants.has(id);
    const shared = peer.media.screen === true && peer.screenStream.getVideoTracks().length > 0 && !this.over;
    if (shared && !shown) {
      this.participants.set(id, {id, name: peer.name, stream: peer.screenStream, media: {}, trouble: false,
                                 screenOf: peer.id});
      this.emit('participant', {id});
      this.setCentre(id);
    } else if (!shared && shown) {
      this.participants.delete(id);
      this.emit('participantleft', {id});
      this.updateCentre();
    }
  }

  /**
   * Let a guest who waits at the lobby in, or turn it away (docs/protocol.md, "Lobby").
   * @param {string} id the guest's peer id @param {boolean} admit
   */
  answerGuest(id, admit) {
    this.conn.send({type: admit ? 'admit' : 'refuse', peer: id});
  }

  /**
   * Send a chat message to everyone in the call (peer to peer); the message, or null for
   * an empty or too long text. @param {string} text
   */
  sendChat(text) {
    text = text.trim();
    if (!text || text.length > MAX_TEXT_CHARS || !this.mesh) return null;
    const id = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, '0')).join('');
    const message = this.chat.add({id, name: this.name, at: Date.now(), text, from: this.conn.id || ''}, true);
    if (message) this.mesh.broadcast({type: 'chat', id, name: this.name, at: message.at, text});
    return message;
  }

  /** Raise or lower our hand; everyone sees it (peer to peer). @param {boolean} up */
  raiseHand(up) {
    this.setHand(SELF, up);
    if (this.mesh) this.mesh.broadcast({type: 'hand', up});
  }

  /** Where `id`'s hand is in the order hands went up (1 = first), or 0 when it is down. @param {string} id */
  handOrder(id) {
    const since = this.hands.get(id);
    if (since === undefined) return 0;
    return [...this.hands.values()].filter((at) => at <= since).length;
  }

  /** Whether someone speaks now (their tile shows it). @param {string} id @param {boolean} speaking */
  setSpeaking(id, speaking) {
    const person = this.participants.get(id);
    if (!person || Boolean(person.speaking) === speaking) return;
    person.speaking = speaking;
    this.emit('participant', {id});
  }

  /** @param {string} id @param {boolean} up */
  setHand(id, up) {
    if (up === this.hands.has(id)) return;
    const raised = [...this.hands.keys()];
    if (up) this.hands.set(id, Date.now());
    else this.hands.delete(id);
    for (const other of new Set([id, ...raised])) {  // the order of the others may change too
      if (this.participants.has(other)) this.emit('participant', {id: other});
    }
  }

  /** Follow the room's link matrix (every MATRIX_EVERY_MS) while `on`. @param {boolean} on */
  watchLinks(on) {
    clearInterval(this.matrixPoll);
    if (!on) return;
    this.conn.send({type: 'link-matrix'});
    this.matrixPoll = setInterval(() => this.conn.send({type: 'link-matrix'}), MATRIX_EVERY_MS);
  }

  /**
   * End the call for good, whatever ends it: every peer connection closed, no socket, camera
   * and microphone released, then `ended`. False when it was over already. @param {Ending} ending
   */
  end(ending) {
    if (this.over) return false;
    this.over = true;
    clearInterval(this.sampler);
    clearInterval(this.matrixPoll);
    if (this.mesh) this.mesh.close();
    this.conn.close();
    for (const track of this.stream.getTracks()) track.stop();
    this.screenTrack?.stop();
    this.participants.clear();
    const summary = this.joined ? this.quality.summary(this.roomId, this.name, this.matrix) : null;
    this.emit('ended', {...ending, summary});
    return true;
  }

  /** @param {any} msg a server message (docs/protocol.md) */
  serverSaid(msg) {
    const mesh = this.mesh;
    if (!mesh) return;
    if (msg.type === 'peer-joined') {
      mesh.expect(msg.peer);
      this.focusOf.set(msg.peer.id, msg.peer.focus);
    } else if (msg.type === 'peer-left') {
      mesh.remove(msg.id);
    } else if (msg.type === 'peer-media') {
      const peer = mesh.peers.get(msg.id);
      if (peer) {
        peer.media = msg.media;
        this.syncScreen(peer);
      }
      const person = this.participants.get(msg.id);
      if (person) {
        person.media = msg.media;
        this.emit('participant', {id: msg.id});
      }
    } else if (msg.type === 'peer-focus') {
      this.focusOf.set(msg.id, msg.focus);
    } else if (msg.type === 'link-matrix') {
      this.matrix = msg;
      this.emit('matrix', msg);
    } else if (msg.type === 'knocks') {
      this.emit('knocks', {waiting: msg.waiting});
    } else if (msg.type === 'call-status' && msg.call === this.roomId) {
      this.emit('callstatus', msg);
    } else if (['offer', 'answer', 'candidate', 'renegotiate'].includes(msg.type)) {
      mesh.signal(msg);
    }
  }

  /** @param {object[]} peers the members already in the room: we offer to them */
  startMesh(peers) {
    for (const p of peers) this.focusOf.set(p.id, p.focus);
    const mesh = new Mesh(this.conn, this.conn.welcome.iceServers, this.stream, this.mode !== 'audio-only');
    this.mesh = mesh;
    mesh.screenTrack = this.screenTrack;
    mesh.addEventListener('track', (/** @type {any} */ e) => {
      const {peer, screen} = e.detail;
      if (screen) {
        this.syncScreen(peer);
        return;
      }
      if (!this.participants.has(peer.id)) {
        this.participants.set(peer.id, {id: peer.id, name: peer.name, stream: peer.stream, media: peer.media,
                                        trouble: false});
      }
      this.emit('participant', {id: peer.id});
      this.updateCentre();
    });
    mesh.addEventListener('connectionstatechange', (/** @type {any} */ e) => {
      const person = this.participants.get(e.detail.peer.id);
      if (!person) return;
      person.trouble = e.detail.state === 'failed' || e.detail.state === 'disconnected';
      this.emit('participant', {id: person.id});
    });
    mesh.addEventListener('peerremoved', (/** @type {any} */ e) => {
      if (this.over) return;
      this.setHand(e.detail.id, false);
      this.lastCounters.delete(e.detail.id);
      for (const id of [e.detail.id, e.detail.id + SCREEN]) {
        if (this.participants.delete(id)) this.emit('participantleft', {id});
      }
      this.updateCentre();
    });
    mesh.addEventListener('channelopen', (/** @type {any} */ e) => {
      const history = this.chat.history().map(({id, name, at, text, from}) => ({id, name, at, text, from}));
      if (history.length) mesh.sendTo(e.detail, {type: 'chat-history', messages: history});
      if (this.hands.has(SELF)) mesh.sendTo(e.detail, {type: 'hand', up: true});
    });
    mesh.addEventListener('channelmessage', (/** @type {any} */ e) => this.peerSaid(e.detail.peer, e.detail.msg));
    mesh.offerTo(peers);
  }

  /**
   * A message over a peer's data channel. A chat message carries the name the server gave
   * that peer (nobody speaks for another); of the history a peer hands over we keep what
   * chat.js fromHistory allows.
   * @param {import('./mesh.js').Peer} peer @param {any} msg
   */
  peerSaid(peer, msg) {
    if (msg.type === 'chat') {
      this.chat.add({...msg, name: peer.name, from: peer.id, via: undefined});
    } else if (msg.type === 'chat-history' && Array.isArray(msg.messages)) {
      const present = (/** @type {string} */ id) => id === this.conn.id || Boolean(this.mesh?.peers.has(id));
      for (const m of msg.messages.slice(-MAX_HISTORY)) this.chat.add(fromHistory(m, peer, present));
    } else if (msg.type === 'hand' && typeof msg.up === 'boolean') {
      this.setHand(peer.id, msg.up);
    }
  }

  /** The server had lost us: we are a newcomer under a new id, so every connection is new. */
  rejoined(peers) {
    if (this.mesh) this.mesh.close();
    this.focusOf.clear();
    this.sentFocus = undefined;  // a new id: tell the room again
    this.startMesh(peers);
  }

  /** Keep the centre on someone present, and tell the server whom we show. */
  updateCentre() {
    if (!this.participants.has(this.centre)) {
      this.centre = SELF;
      this.centreChosen = false;
    }
    if (this.centre === SELF && !this.centreChosen) {
      this.centre = [...this.participants.keys()].find((id) => id !== SELF) ?? SELF;
    }
    const centre = this.participants.get(this.centre);
    const focus = this.centre === SELF ? null : centre?.screenOf ?? this.centre;
    if (focus !== this.sentFocus && this.joined && !this.over) {
      this.sentFocus = focus;
      this.conn.send({type: 'focus', peer: focus});
    }
    this.emit('centre', {id: this.centre});
  }

  /**
   * Every second: sample each link and judge it, split the video budget between the peers
   * (more to those who show us in their centre; while we share, the screen gets that share
   * and the camera goes as a thumbnail); every UPLOAD_EVERY seconds tell the server.
   */
  async sample() {
    const mesh = this.mesh;
    if (!mesh) return;
    this.ticks += 1;
    const peers = [...mesh.peers.values()];
    for (const [n, peer] of peers.entries()) {
      let verdict, counters;
      try {
        counters = await readCounters(peer.pc);
        verdict = this.quality.add(peer.id, peer.name, counters);
      } catch (e) {
        continue;  // closed while we asked
      }
      this.emit('quality', {id: peer.id, verdict});
      const before = this.lastCounters.get(peer.id);
      this.lastCounters.set(peer.id, counters);
      if (!before) continue;
      this.setSpeaking(peer.id, audioLevel(before, counters, 'In') >= SPEAKING_RMS);
      if (n === 0) this.setSpeaking(SELF, this.media.mic && audioLevel(before, counters, 'Out') >= SPEAKING_RMS);
    }
    const budgetKbps = this.conn.welcome.uploadKbps || DEFAULT_BUDGET_KBPS;
    const sharing = Boolean(this.screenTrack);
    const cameras = splitBudget(budgetKbps, peers.map((p) => ({id: p.id,
                                                             centred: !sharing && this.focusOf.get(p.id) === this.conn.id})));
    for (const [id, limit] of cameras) mesh.limitVideo(id, limit);
    if (sharing) {
      const thumbsKbps = [...cameras.values()].reduce((sum, limit) => sum + limit.maxBitrate / 1000, 0);
      const screens = splitBudget(budgetKbps - thumbsKbps, peers.map((p) => ({id: p.id, centred: true})));
      for (const [id, limit] of screens) mesh.limitVideo(id, limit, true);
    }
    if (this.ticks % UPLOAD_EVERY === 0) this.conn.send({type: 'stats', peers: this.quality.upload(peers.map((p) => p.id))});
  }
}
