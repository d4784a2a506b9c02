// One RTCPeerConnection per remote participant, negotiated as docs/protocol.md says:
// the newcomer offers; only a pair's offerer offers again (ICE restart); candidates
// trickle, and those that arrive before the remote description wait in a queue.
// Every connection has a camera line and a screen line (docs/protocol.md "Media lines").
// No DOM access: like the RTCPeerConnections it holds, the mesh is an EventTarget.

/**
 * @typedef {{id: string, pc: RTCPeerConnection, offerer: boolean, pending: (RTCIceCandidateInit|null)[],
 *            stream: MediaStream, screenStream: MediaStream, screen: RTCRtpTransceiver|null,
 *            name: string, media: Record<string, unknown>, channel: RTCDataChannel}} Peer
 *   `stream`: the peer's camera and microphone; `screenStream`: its screen line's track;
 *   `screen`: the screen line's transceiver (the answerer knows it once the first offer is in)
 */

// The pair's data channel ("p2p", docs/protocol.md "Between the peers"): negotiated on both
// sides with the same id before the first offer, so it needs no renegotiation and no signal.
const CHANNEL = {label: 'p2p', id: 0};
const MAX_CHANNEL_MESSAGE = 256 * 1024;  // what a peer may send us in one data-channel message

/**
 * A Mesh fires (each a CustomEvent):
 * - `track` (detail: {peer, screen}): a peer's stream (or, with `screen`, its screenStream) got a track;
 * - `connectionstatechange` (detail: {peer, state}): a peer connection's state changed;
 * - `peerremoved` (detail: the Peer): a peer has left, its connection is closed;
 * - `channelopen` (detail: the Peer): the data channel to a peer is open;
 * - `channelmessage` (detail: {peer, msg}): a peer sent a JSON object over the data channel.
 */
export class Mesh extends EventTarget {
  /**
   * @param {import('./protocol.js').ServerConnection} conn
   * @param {RTCIceServer[]} iceServers from the server's welcome (possibly empty)
   * @param {MediaStream} localStream what we send (audio only in an audio-only call)
   * @param {boolean} receiveVideo ask for the others' video even when we send none (no camera)
   */
  constructor(conn, iceServers, localStream, receiveVideo = true) {
    super();
    this.conn = conn;
    this.receiveVideo = receiveVideo;
    this.iceServers = iceServers;
    this.localStream = localStream;
    /** @type {Map<string, Peer>} */
    this.peers = new Map();
    /** @type {MediaStreamTrack|null} the screen we share, if we do */
    this.screenTrack = null;
  }

  /** @param {string} type @param {unknown} detail */
  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, {detail}));
  }

  /** As the newcomer: offer to everyone already in the room. @param {object[]} members */
  offerTo(members) {
    for (const m of members) this.negotiate(this.add(m.id, m.name, m.media, true), false);
  }

  /** A member announced by peer-joined; it will offer to us. */
  expect(member) {
    this.add(member.id, member.name, member.media, false);
  }

  /** Handle offer, answer, candidate and renegotiate messages. @param {object} msg */
  async signal(msg) {
    const peer = this.peers.get(msg.from);
    if (!peer) return;
    try {
      if (msg.type === 'offer') {
        await peer.pc.setRemoteDescription({type: 'offer', sdp: msg.sdp});
        await this.flush(peer);
        await this.adoptScreenLine(peer);
        await peer.pc.setLocalDescription();
        this.conn.send({type: 'answer', to: peer.id, sdp: peer.pc.localDescription.sdp});
      } else if (msg.type === 'answer') {
        await peer.pc.setRemoteDescription({type: 'answer', sdp: msg.sdp});
        await this.flush(peer);
      } else if (msg.type === 'candidate') {
        peer.pending.push(msg.candidate);
        if (peer.pc.remoteDescription) await this.flush(peer);
      } else if (msg.type === 'renegotiate' && peer.offerer) {
        await this.negotiate(peer, true);
      }
    } catch (e) {
      console.warn('signaling with', peer.name, 'failed:', e);
    }
  }

  /** Send a JSON object to every peer whose data channel is open. @param {object} msg */
  broadcast(msg) {
    for (const peer of this.peers.values()) this.sendTo(peer, msg);
  }

  /** Send a JSON object over one peer's data channel, if it is open. @param {Peer} peer @param {object} msg */
  sendTo(peer, msg) {
    if (peer.channel.readyState === 'open') peer.channel.send(JSON.stringify(msg));
  }

  /**
   * Share a screen with every peer on its screen line (no renegotiation), or stop with null.
   * @param {MediaStreamTrack|null} track
   */
  async shareScreen(track) {
    this.screenTrack = track;
    await Promise.all([...this.peers.values()].map(async (peer) => {
      try {
        if (peer.screen && peer.screen.sender.track !== track) await peer.screen.sender.replaceTrack(track);
      } catch (e) {
        console.warn('could not share the screen with', peer.name, e);
      }
    }));
  }

  /**
   * Send `track` instead of `old` on every connection (another camera or microphone).
   * @param {MediaStreamTrack} old @param {MediaStreamTrack} track
   */
  async replaceTrack(old, track) {
    const senders = [...this.peers.values()].flatMap((peer) => peer.pc.getSenders().filter((s) => s.track === old));
    await Promise.all(senders.map((sender) => sender.replaceTrack(track)));
  }

  /** Forget a peer that left. @param {string} id */
  remove(id) {
    const peer = this.peers.get(id);
    if (!peer) return;
    this.peers.delete(id);
    peer.pc.close();
    this.emit('peerremoved', peer);
  }

  /** Close every connection (leaving, or reconnecting under a new id). */
  close() {
    for (const id of [...this.peers.keys()]) this.remove(id);
  }

  /**
   * Cap the camera (or, with `screen`, the screen) we send to one peer
   * (RTCRtpSender.setParameters); no-op until negotiated.
   * @param {string} id @param {{maxBitrate: number, scaleResolutionDownBy: number}} limits
   * @param {boolean} screen
   */
  async limitVideo(id, limits, screen = false) {
    const peer = this.peers.get(id);
    const camera = this.localStream.getVideoTracks()[0];
    const sender = screen ? peer?.screen?.sender : peer?.pc.getSenders().find((s) => camera && s.track === camera);
    if (!sender?.track) return;
    const params = sender.getParameters();
    const encoding = params.encodings?.[0];
    if (!encoding || (encoding.maxBitrate === limits.maxBitrate
                      && encoding.scaleResolutionDownBy === limits.scaleResolutionDownBy)) return;
    Object.assign(encoding, limits);
    try {
      await sender.setParameters(params);
    } catch (e) {
      console.warn('could not limit the video to', id, e);
    }
  }

  add(id, name, media, offerer) {
    const pc = new RTCPeerConnection({iceServers: this.iceServers});
    const channel = pc.createDataChannel(CHANNEL.label, {negotiated: true, id: CHANNEL.id});
    /** @type {Peer} */
    const peer = {id, pc, offerer, pending: [], stream: new MediaStream(), screenStream: new MediaStream(),
                  screen: null, name, media: media || {}, channel};
    this.peers.set(id, peer);
    channel.onopen = () => this.emit('channelopen', peer);
    channel.onmessage = (e) => {
      if (typeof e.data !== 'string' || e.data.length > MAX_CHANNEL_MESSAGE) return;
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch (err) {
        return;  // not ours to read
      }
      if (msg && typeof msg === 'object' && typeof msg.type === 'string') this.emit('channelmessage', {peer, msg});
    };
    for (const track of this.localStream.getTracks()) pc.addTrack(track, this.localStream);
    if (offerer && this.receiveVideo) {  // an audio-only call has no video line at all
      if (!this.localStream.getVideoTracks().length) {  // no camera here, but we still watch the others'
        pc.addTransceiver('video', {direction: 'recvonly'});
      }
      peer.screen = pc.addTransceiver(this.screenTrack ?? 'video', {direction: 'sendrecv'});
    }
    pc.onicecandidate = (e) => {
      this.conn.send({type: 'candidate', to: id, candidate: e.candidate ? e.candidate.toJSON() : null});
    };
    pc.ontrack = (e) => {
      const screen = e.transceiver === this.screenLine(peer);
      (screen ? peer.screenStream : peer.stream).addTrack(e.track);
      this.emit('track', {peer, screen});
    };
    pc.onconnectionstatechange = () => {
      this.emit('connectionstatechange', {peer, state: pc.connectionState});
      if (pc.connectionState === 'failed') {
        // Only the offerer restarts; the other side asks it to.
        if (peer.offerer) this.negotiate(peer, true);
        else this.conn.send({type: 'renegotiate', to: id});
      }
    };
    return peer;
  }

  async negotiate(peer, restart) {
    if (restart) peer.pc.restartIce();
    await peer.pc.setLocalDescription(await peer.pc.createOffer({iceRestart: restart}));
    const msg = {type: 'offer', to: peer.id, sdp: peer.pc.localDescription.sdp};
    if (restart) msg.restart = true;
    this.conn.send(msg);
  }

  /**
   * The peer's screen line: the second video m-line of the negotiated SDP (docs/protocol.md
   * "Media lines"); null before the first offer, or when the offer had none (an audio-only bot).
   * @param {Peer} peer
   */
  screenLine(peer) {
    if (peer.screen || !peer.pc.remoteDescription) return peer.screen;
    const videoMids = [...peer.pc.remoteDescription.sdp.matchAll(/^m=video[^]*?^a=mid:(\S+)/gm)].map((m) => m[1]);
    peer.screen = videoMids.length > 1 ? peer.pc.getTransceivers().find((t) => t.mid === videoMids[1]) ?? null : null;
    return peer.screen;
  }

  /**
   * As the answerer, after the first offer: open the screen line for sending too, and put
   * on it what we share. @param {Peer} peer
   */
  async adoptScreenLine(peer) {
    const line = this.screenLine(peer);
    if (!line || peer.offerer) return;
    if (line.direction === 'recvonly') line.direction = 'sendrecv';
    if (line.sender.track !== this.screenTrack) await line.sender.replaceTrack(this.screenTrack);
  }

  async flush(peer) {
    const pending = peer.pending;
    peer.pending = [];
    for (const c of pending) await peer.pc.addIceCandidate(c === null ? undefined : c);
  }
}
