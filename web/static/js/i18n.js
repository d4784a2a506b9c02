// The page's words, handed over by the server (p2pconf/i18n.py) in the language the browser prefers.

import {FINAL_CLOSE_CODES} from './protocol.js';

const TEXTS = JSON.parse(document.getElementById('texts').textContent);

/** The text for `key`, with {name}-style fields filled from `vars`. */
export function t(key, vars = {}) {
  return (TEXTS[key] || key).replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ''));
}

/**
 * Why the server refused for good, in words (the `refused-...` texts): for a close code of
 * FINAL_CLOSE_CODES or a final error code such as `forbidden` (see protocol.js, onrefused).
 * Insert it as text, never as markup.
 * @param {number|string} code @param {string} [message] the server's own words, for codes without a text
 * @returns {string}
 */
export function refusalText(code, message = '') {
  const key = `refused-${typeof code === 'number' ? FINAL_CLOSE_CODES[code] : code}`;
  if (TEXTS[key]) return t(key);
  return message ? `${t('refused-other', {code})} ${message}` : t('refused-other', {code});
}
