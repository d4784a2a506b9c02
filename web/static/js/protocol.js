// The signaling protocol of docs/protocol.md, for the browser. No DOM access:
// the UI sets the on... callbacks. The Python twin is p2pconf/bots/client.py.

export const PROTOCOL_VERSION = 1;

// WebSocket close codes of docs/protocol.md, "Closing", that end a connection for good.
export const CLOSE_PROTOCOL = 4000;    // handshake broken: first message not hello, or unsupported version
export const CLOSE_SIGNED_OUT = 4001;  // the session ended: signed out elsewhere, user disabled, or expired
export const CLOSE_REVOKED = 4003;     // the guest link this connection came through was revoked
export const CLOSE_NOT_ADMITTED = 4004;  // a member turned this guest away at the room's lobby
export const CLOSE_STALLED = 4009;     // the client stopped reading its messages
export const CLOSE_FLOOD = 4029;       // too many messages
export const CLOSE_REPLACED = 4409;    // this session was resumed on another connection
export const CLOSE_RESTART = 1012;     // the server restarts: resume at once
export const CLOSE_GONE = 1000;        // from the client: it has gone (no resume)
export const CLOSE_RECONNECTING = 4100;  // from the client: it closes to reconnect and resume

/**
 * The close codes after which the client must not reconnect, each with a stable name the UI
 * looks its words up by (i18n.js, refusalText). 1012 (server restart) and abnormal closes
 * (1006: network loss) are not here: those are retried.
 * @type {Readonly<Record<number, string>>}
 */
export const FINAL_CLOSE_CODES = Object.freeze({
  [CLOSE_PROTOCOL]: 'protocol',
  [CLOSE_SIGNED_OUT]: 'signed-out',
  [CLOSE_REVOKED]: 'revoked',
  [CLOSE_NOT_ADMITTED]: 'not-admitted',
  [CLOSE_STALLED]: 'stalled',
  [CLOSE_FLOOD]: 'flood',
  [CLOSE_REPLACED]: 'replaced',
});

/**
 * Error codes in answer to `join` (`ref: "join"`) that are just as final: asking again will
 * not help. The same code in answer to another message (`subscribe`) is not final.
 * @type {ReadonlyArray<string>}
 */
export const FINAL_JOIN_ERRORS = Object.freeze(['forbidden']);

/** True when a close with this code ends the connection for good. @param {number} code */
export function isFinalClose(code) {
  return Object.hasOwn(FINAL_CLOSE_CODES, code);
}

/**
 * Why the server refused for good: a close code of FINAL_CLOSE_CODES (a number) or an
 * error code of FINAL_JOIN_ERRORS (a string), and the server's words (its close reason or
 * error message; may be empty; for people, never markup).
 * @typedef {{code: number|string, message: string}} Refusal
 */

/**
 * One connection to the p2pconf server, kept alive (ping, reconnect) until close() or
 * until the server refuses it for good (then `refused` is set and onrefused is called once).
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
    /** @type {string|null} the token of the last welcome: a reconnect resumes this session with it */
    this.resumeToken = null;
    /** @type {string[]|null} the logins whose presence this connection follows (sent again after a reconnect) */
    this.subscription = null;
    /** true after close() or a final refusal: no more sockets are opened */
    this.closing = false;
    /** @type {Refusal|null} set once, when the server refused for good */
    this.refused = null;
    this.ready = false;  // the current socket has shaken hands
    this.reconnecting = false;
    this.backoff = 500;
    this.lastMessage = 0;
    this.timer = null;
    /** @type {Set<(error: Error) => void>} rejects the pending connect/expect when the socket closes */
    this.waiters = new Set();
    /** @type {(msg: object) => void} every server message except pong (presence included) */
    this.onmessage = () => {};
    /** @type {(joined: object) => void} after a reconnect re-joined the room under a new id */
    this.onreconnected = () => {};
    /**
     * After a reconnect resumed the session: same id, same room, the peer connections stay
     * as they are; what the server held meanwhile follows through onmessage.
     * @type {() => void}
     */
    this.onresumed = () => {};
    /**
     * A guest waits at the room's lobby until a member lets it in (join() goes on then) or
     * turns it away (a final refusal, 4004). @type {(lobby: object) => void}
     */
    this.onwaiting = () => {};
    /** @type {(lost: boolean) => void} true while the server is unreachable (and a reconnect is tried) */
    this.onconnectionlost = () => {};
    /**
     * Every close of the socket that close() did not ask for. `final`: no reconnect follows
     * (onrefused comes next); otherwise the connection is retried.
     * @type {(code: number, reason: string, final: boolean) => void}
     */
    this.onclose = () => {};
    /**
     * The server refused for good (see Refusal): the socket is closed and none is opened
     * again. The UI must end the call (peer connections, camera, microphone) and say why.
     * Called at most once.
     * @type {(code: number|string, message: string) => void}
     */
    this.onrefused = () => {};
  }

  /**
   * Open the socket and shake hands. Rejects when the server cannot be reached, or with
   * an Error whose `final` is true when it refused for good (onrefused has been called).
   * @returns {Promise<object>} the welcome message
   */
  async connect() {
    if (this.closing) throw this.stoppedError();
    const socket = new WebSocket(this.url);
    this.socket = socket;
    this.ready = false;
    socket.onclose = (e) => this.socketClosed(socket, e.code, e.reason);
    await this.until((resolve, reject) => {
      socket.onopen = resolve;
      socket.onerror = () => reject(new Error('cannot reach the server'));
    });
    const hello = {type: 'hello', version: PROTOCOL_VERSION};
    if (this.resumeToken) hello.resume = this.resumeToken;
    const welcome = this.expect('welcome');
    socket.send(JSON.stringify(hello));
    try {
      this.welcome = await welcome;
    } catch (e) {
      // An error instead of welcome: the server closes next (4000), and the close code
      // decides whether this is final. Wait for it, a little.
      if (e.closeCode === undefined) await this.until((resolve) => setTimeout(resolve, 2000));
      throw e;
    }
    this.id = this.welcome.id;
    this.resumeToken = this.welcome.resume || null;
    socket.onmessage = (e) => this.deliver(JSON.parse(e.data));
    this.ready = true;
    this.lastMessage = Date.now();
    this.watch();
    if (this.subscription && this.subscription.length && !this.welcome.resumed) {
      this.send({type: 'subscribe', logins: this.subscription});
    }
    return this.welcome;
  }

  /**
   * Join a room. A `forbidden` answer is final: the connection stops (onrefused) and the
   * returned promise rejects with an Error whose `final` is true.
   * @param {string} room @param {string} name @param {object} media
   * @returns {Promise<object>} the joined message (peers to offer to)
   */
  async join(room, name, media) {
    this.joinRequest = {type: 'join', room, name, media};
    let answer = this.expect(['joined', 'lobby'], 'join');
    this.send(this.joinRequest);
    try {
      let joined = await answer;
      if (joined.type === 'lobby') {  // docs/protocol.md, "Lobby": wait to be let in, then join
        this.onwaiting(joined);
        await this.expect('admitted');
        answer = this.expect('joined', 'join');
        this.send(this.joinRequest);
        joined = await answer;
      }
      return joined;
    } catch (e) {
      if (FINAL_JOIN_ERRORS.includes(e.code)) {
        this.refuse(e.code, e.message);
        e.final = true;
      }
      throw e;
    }
  }

  /** @param {object} msg */
  send(msg) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(msg));
  }

  /**
   * Follow the presence of these logins (replacing the last list; [] follows nobody). The
   * server answers with `presence` messages, which reach onmessage; the list is sent again
   * after every reconnect. Signed-in users only: others get an error (`forbidden`, not final).
   * @param {string[]} logins
   */
  subscribe(logins) {
    this.subscription = [...logins];
    if (this.ready) this.send({type: 'subscribe', logins: this.subscription});
  }

  /** Announce a change of microphone, camera or mode. @param {object} media */
  setMedia(media) {
    if (this.joinRequest) Object.assign(this.joinRequest.media, media);
    this.send({type: 'media', media});
  }

  /** Leave the room and close for good (1000: the server ends the session at once). */
  close() {
    this.closing = true;
    clearTimeout(this.timer);
    if (this.joinRequest) this.send({type: 'leave'});
    if (this.socket) this.socket.close(CLOSE_GONE);
  }

  /**
   * Wait for the next message of one type, or of one of several (an error message rejects,
   * and so does the socket closing first). With `ref`, an error that answers another message
   * type (say a `subscribe` sent meanwhile) does not reject: it goes on to onmessage.
   * @param {string|string[]} type @param {string} [ref] the type of the request awaited
   * @returns {Promise<any>}
   */
  expect(type, ref) {
    const socket = this.socket;
    const types = Array.isArray(type) ? type : [type];
    return this.until((resolve, reject) => {
      const previous = socket.onmessage;
      socket.onmessage = (e) => {
        const msg = JSON.parse(e.data);
        const foreign = msg.type === 'error' && ref !== undefined && msg.ref !== undefined && msg.ref !== ref;
        if (types.includes(msg.type) || (msg.type === 'error' && !foreign)) {
          socket.onmessage = previous;
          if (msg.type === 'error') reject(Object.assign(new Error(msg.message), {code: msg.code}));
          else resolve(msg);
        } else if (previous) previous.call(socket, e);
      };
    });
  }

  // A promise that also rejects when the current socket closes before it settles.
  until(executor) {
    let reject;
    return new Promise((resolve, rej) => {
      reject = rej;
      this.waiters.add(rej);
      executor(resolve, rej);
    }).finally(() => this.waiters.delete(reject));
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
        if (this.socket) this.socket.close(CLOSE_RECONNECTING);
        return;
      }
      if (silent >= pingMs) this.send({type: 'ping'});
      this.watch();
    }, pingMs / 2);
  }

  // The socket closed: stop for good on a final code, else reconnect (once the handshake
  // was done; during connect() the caller or the reconnect loop sees the rejection).
  socketClosed(socket, code, reason) {
    if (socket !== this.socket) return;  // an old socket, already replaced
    clearTimeout(this.timer);
    const final = isFinalClose(code);
    const error = Object.assign(new Error(reason || `the server closed the connection (${code})`),
                                {closeCode: code, final});
    for (const reject of [...this.waiters]) reject(error);
    if (this.closing) return;  // close() asked for it, or refused already
    this.onclose(code, reason, final);
    if (final) this.refuse(code, reason);
    else if (this.ready) this.lost(code === CLOSE_RESTART);
  }

  /** Stop for good: no socket is opened again; tells the UI once. @param {number|string} code @param {string} message */
  refuse(code, message) {
    if (this.refused) return;
    this.refused = {code, message: message || ''};
    this.closing = true;
    clearTimeout(this.timer);
    if (this.socket && this.socket.readyState <= WebSocket.OPEN) this.socket.close();
    this.onrefused(code, this.refused.message);
  }

  stoppedError() {
    return Object.assign(new Error(this.refused ? this.refused.message : 'closed'),
                         {final: Boolean(this.refused), code: this.refused?.code});
  }

  /**
   * Reconnect with jittered exponential backoff (the first try at once after a server
   * restart, 1012) until it works, close() is called or the server refuses for good. The
   * session is resumed when the server still holds it; otherwise the room is joined again.
   * @param {boolean} [now]
   */
  async lost(now = false) {
    clearTimeout(this.timer);
    if (this.closing || this.reconnecting) return;
    this.reconnecting = true;
    this.onconnectionlost(true);
    let wait = now ? 100 * Math.random() : this.backoff * (0.8 + 0.4 * Math.random());
    try {
      while (!this.closing) {
        await new Promise((r) => setTimeout(r, wait));
        wait = this.backoff * (0.8 + 0.4 * Math.random());
        this.backoff = Math.min(this.backoff * 2, 10000);
        if (this.closing) return;
        try {
          await this.connect();
          if (this.welcome.resumed) {
            this.backoff = 500;
            this.onconnectionlost(false);
            this.onresumed();
            return;
          }
          const joined = this.joinRequest ? await this.join(this.joinRequest.room, this.joinRequest.name,
                                                            this.joinRequest.media) : null;
          this.backoff = 500;
          this.onconnectionlost(false);
          if (joined) this.onreconnected(joined);
          return;
        } catch (e) {
          // A final refusal has set `closing`. Anything else: drop this socket (its close
          // means nothing now) and try again after the next backoff.
          if (this.closing) return;
          clearTimeout(this.timer);
          const dropped = this.socket;
          this.socket = null;
          this.ready = false;
          if (dropped) dropped.close();
        }
      }
    } finally {
      this.reconnecting = false;
    }
  }
}

/** The WebSocket URL of the page's own server. */
export function serverUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}
