// The page's words, handed over by the server (p2pconf/i18n.py) in the language the browser prefers.

const TEXTS = JSON.parse(document.getElementById('texts').textContent);

/** The text for `key`, with {name}-style fields filled from `vars`. */
export function t(key, vars = {}) {
  return (TEXTS[key] || key).replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ''));
}
