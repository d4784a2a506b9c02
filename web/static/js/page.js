// Tiny DOM helpers shared by the page modules (app.js, room.js).

/**
 * The element with this id. Typed loosely (any): the page's ids name inputs, dialogs and
 * videos alike, and the modules that hold the call's logic never touch the DOM.
 * @param {string} id @returns {any}
 */
export const $ = (id) => document.getElementById(id);

/** Show a message in the page's banner, or hide it for an empty text. @param {string} text */
export function say(text) {
  $('banner').textContent = text;
  $('banner').hidden = !text;
}
