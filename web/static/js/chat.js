// The call's chat, without the DOM: messages travel peer to peer over the mesh's data
// channels (docs/protocol.md, "Between the peers"), never through the server. A peer
// that joins later gets the history from every peer it meets, and duplicates are
// dropped by message id.

export const MAX_TEXT_CHARS = 2000;
export const MAX_HISTORY = 500;  // messages kept, and handed to a newcomer
const MAX_ID_CHARS = 64;
const MAX_NAME_CHARS = 64;

/**
 * @typedef {{id: string, name: string, at: number, text: string, from: string, via?: string,
 *            mine: boolean}} ChatMessage
 *   `from`: the author's peer id; `via`: for a message whose author has left, the name of the
 *   peer who passed it on (the name is that peer's word, not the server's)
 */

/**
 * A checked message, or null when `m` is not one (wrong types, too long, empty).
 * @param {any} m @returns {Omit<ChatMessage, 'mine'>|null}
 */
export function checkMessage(m) {
  if (!m || typeof m !== 'object') return null;
  const {id, name, at, text, from, via} = m;
  if (typeof id !== 'string' || !id || id.length > MAX_ID_CHARS) return null;
  if (typeof name !== 'string' || !name || name.length > MAX_NAME_CHARS) return null;
  if (typeof at !== 'number' || !Number.isFinite(at)) return null;
  if (typeof text !== 'string' || !text.trim() || text.length > MAX_TEXT_CHARS) return null;
  if (typeof from !== 'string' || from.length > MAX_ID_CHARS) return null;
  return via === undefined ? {id, name, at, text, from} : {id, name, at, text, from, via: String(via)};
}

/**
 * What a newcomer keeps of the history a peer hands over (docs/protocol.md, "Between the
 * peers"): nobody may speak for someone present, so an entry of another current participant
 * is dropped (that participant hands over its own); an entry of the peer itself (its id or
 * its name) is shown under the name the server gave it; an entry whose author has left keeps
 * its name, marked as passed on by that peer.
 * @param {any} m an entry @param {{id: string, name: string}} giver the peer who sent it
 * @param {(id: string) => boolean} present whether a peer id is a participant now
 * @returns {object|null}
 */
export function fromHistory(m, giver, present) {
  if (!m || typeof m !== 'object' || typeof m.from !== 'string') return null;
  if (m.from === giver.id || m.name === giver.name) return {...m, from: giver.id, name: giver.name, via: undefined};
  if (present(m.from)) return null;
  return {...m, via: giver.name};
}

/**
 * A Chat fires `message` (a CustomEvent, detail: the ChatMessage) for each new message,
 * and `unread` (detail: the count) when the count of unread messages changes.
 */
export class Chat extends EventTarget {
  constructor() {
    super();
    /** @type {Map<string, ChatMessage>} by id */
    this.messages = new Map();
    this.unread = 0;
    this.open = false;  // while the panel shows, nothing is unread
  }

  /** @param {string} type @param {unknown} detail */
  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, {detail}));
  }

  /**
   * Keep a message unless it is known already or not one; the kept message, or null.
   * @param {any} raw @param {boolean} mine
   */
  add(raw, mine = false) {
    const checked = checkMessage(raw);
    if (!checked || this.messages.has(checked.id)) return null;
    const message = {...checked, mine};
    this.messages.set(message.id, message);
    if (this.messages.size > MAX_HISTORY) this.messages.delete(this.history()[0].id);
    this.emit('message', message);
    if (!mine && !this.open) this.setUnread(this.unread + 1);
    return message;
  }

  /** Every message, oldest first. @returns {ChatMessage[]} */
  history() {
    return [...this.messages.values()].sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1));
  }

  /** The panel opened (nothing is unread any more) or closed. @param {boolean} open */
  show(open) {
    this.open = open;
    if (open) this.setUnread(0);
  }

  /** @param {number} count */
  setUnread(count) {
    this.unread = count;
    this.emit('unread', count);
  }
}
