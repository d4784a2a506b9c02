// Tiny DOM helpers shared by the page modules (app.js, room.js).

/** The element with this id. @param {string} id @returns {HTMLElement} */
export const $ = (id) => document.getElementById(id);

/** Show a message in the page's banner, or hide it for an empty text. @param {string} text */
export function say(text) {
  $('banner').textContent = text;
  $('banner').hidden = !text;
}
