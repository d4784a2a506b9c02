// Small helpers for the JSON API of docs/api.md. No DOM access.

let csrf = null;

/** The signed-in party (GET /api/me); remembers the CSRF token for later calls. */
export async function me() {
  const reply = await fetch('/api/me');
  if (!reply.ok) throw Object.assign(new Error('not signed in'), {status: reply.status});
  const body = await reply.json();
  csrf = body.csrf;
  return body;
}

/** The CSRF token of the signed-in party (after me()), for requests made without call(). */
export function csrfToken() {
  return csrf;
}

/**
 * Call the API; rejects with an Error carrying `code` and `status` on failure.
 * @param {string} method @param {string} path @param {object} [body]
 */
export async function call(method, path, body) {
  const reply = await fetch(path, {
    method,
    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf || ''},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await reply.json().catch(() => ({}));
  if (!reply.ok) throw Object.assign(new Error(data.message || reply.statusText), {code: data.code, status: reply.status});
  return data;
}
