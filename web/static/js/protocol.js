// The signaling protocol of docs/protocol.md, for the browser. No DOM access:
// the UI sets the on... callbacks. The Python twin is p2pconf/bots/client.py.

export const PROTOCOL_VERSION = 1;

/**
 * One connection to the p2pconf server, kept alive (ping, reconnect) until close().
 */
export class ServerConnection {
  /** @param {string} url ws(s)://host/ws */
  constructor(url) {
    this.url = url;
    /** @type {WebSocket|null} */
    this.socket = null;
    /** @type {string|null} */
    this.id = null;
    this.welcome = null;
    this.joinRequest = null;
    this.closing = false;
    this.backoff = 500;
    this.lastMessage = 0;
    this.timer = null;
    /** @type {(msg: object) => void} every server message except pong */
    this.onmessage = () => {};
    /** @type {(joined: object) => void} after a reconnect re-joined the room under a new id */
    this.onreconnected = () => {};
    /** @type {(lost: boolean) => void} true while the server is unreachable */
    this.onconnectionlost = () => {};
  }

  /** Open the socket and shake hands. @returns {Promise<object>} the welcome message */
  async connect() {
    const socket = new WebSocket(this.url);
    this.socket = socket;
    await new Promise((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = () => reject(new Error('cannot reach the server'));
    });
    socket.send(JSON.stringify({type: 'hello', version: PROTOCOL_VERSION}));
    this.welcome = await this.expect('welcome');
    this.id = this.welcome.id;
    socket.onmessage = (e) => this.deliver(JSON.parse(e.data));
    socket.onclose = () => this.lost();
    this.lastMessage = Date.now();
    this.watch();
    return this.welcome;
  }

  /**
   * Join a room. @returns {Promise<object>} the joined message (peers to offer to)
   * @param {string} room @param {string} name @param {object} media
   */
  async join(room, name, media) {
    this.joinRequest = {type: 'join', room, name, media};
    const answer = this.expect('joined');
    this.send(this.joinRequest);
    return answer;
  }

  /** @param {object} msg */
  send(msg) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(msg));
  }

  /** Announce a change of microphone, camera or mode. @param {object} media */
  setMedia(media) {
    if (this.joinRequest) Object.assign(this.joinRequest.media, media);
    this.send({type: 'media', media});
  }

  /** Leave the room and close for good. */
  close() {
    this.closing = true;
    clearTimeout(this.timer);
    this.send({type: 'leave'});
    if (this.socket) this.socket.close();
  }

  /** Wait for the next message of one type (an error message rejects). */
  expect(type) {
    return new Promise((resolve, reject) => {
      const previous = this.socket.onmessage;
      this.socket.onmessage = (e) => {
        const msg = JSON.parse(e.data);
        if (msg.type === type || msg.type === 'error') {
          this.socket.onmessage = previous;
          if (msg.type === 'error') reject(Object.assign(new Error(msg.message), {code: msg.code}));
          else resolve(msg);
        } else if (previous) previous(e);
      };
    });
  }

  deliver(msg) {
    this.lastMessage = Date.now();
    if (msg.type !== 'pong') this.onmessage(msg);
  }

  // Ping after clientPingS of silence; no answer for another clientPingS: the server is gone.
  watch() {
    const pingMs = ((this.welcome && this.welcome.heartbeat && this.welcome.heartbeat.clientPingS) || 10) * 1000;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      const silent = Date.now() - this.lastMessage;
      if (silent >= 2 * pingMs) {
        this.socket.close();
        return;
      }
      if (silent >= pingMs) this.send({type: 'ping'});
      this.watch();
    }, pingMs / 2);
  }

  async lost() {
    clearTimeout(this.timer);
    if (this.closing) return;
    this.onconnectionlost(true);
    while (!this.closing) {
      await new Promise((r) => setTimeout(r, this.backoff * (0.8 + 0.4 * Math.random())));
      this.backoff = Math.min(this.backoff * 2, 10000);
      try {
        await this.connect();
        const joined = this.joinRequest ? await this.join(this.joinRequest.room, this.joinRequest.name,
                                                          this.joinRequest.media) : null;
        this.backoff = 500;
        this.onconnectionlost(false);
        if (joined) this.onreconnected(joined);
        return;
      } catch (e) {
        // try again after the next backoff
      }
    }
  }
}

/** The WebSocket URL of the page's own server. */
export function serverUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}
