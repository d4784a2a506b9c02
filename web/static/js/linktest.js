// "Verbindung testen", without the DOM: the round trip and the uplink to the server
// (p2pconf/linktest.py, docs/api.md), and how large a video call such a line carries by the
// measured table that ships with the page (web/static/linktable.json, from docs/capacity.md).

const PROBES = 5;  // round trips timed; the median counts
const FIRST_UPLOAD = 64 * 1024;
const MAX_UPLOAD = 4 * 1024 * 1024;  // as p2pconf/linktest.py accepts
const ENOUGH_MS = 800;  // an upload that took this long measures the line well enough
const UPLOAD_BUDGET_MS = 5000;  // no further upload after this long
const HIGH_RTT_MS = 400;  // from here on a call's talk feels laggy

/**
 * @typedef {{rttMs: number, uplinkMbit: number}} LineMeasure
 * @typedef {{uplink_mbit: number, largest_mesh: number}} TableRow
 * @typedef {{source: string, rows: TableRow[]}} CapacityTable
 */

/** @param {number[]} values */
function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** @param {Response} reply */
async function failure(reply) {
  const data = await reply.json().catch(() => ({}));
  return Object.assign(new Error(data.message || reply.statusText), {code: data.code, status: reply.status});
}

/**
 * Measure the line to the server for a few seconds: the median of PROBES round trips, then
 * uploads that grow fourfold until one takes ENOUGH_MS (or the largest is sent); the uplink
 * is the last upload's size over its time less a round trip.
 * @param {{csrf?: string|null, invite?: string|null, onprogress?: (done: number) => void}} options
 *   `invite`: on a guest link's page, its token; `onprogress`: 0..1 as the test goes on
 * @returns {Promise<LineMeasure>}
 */
export async function measureLine({csrf = null, invite = null, onprogress = () => {}}) {
  /** @type {Record<string, string>} */
  const headers = {'X-CSRF-Token': csrf || ''};
  if (invite) headers['X-Invite-Token'] = invite;
  const rtts = [];
  for (let i = 0; i < PROBES; i++) {
    const start = performance.now();
    const reply = await fetch('/api/linktest', {cache: 'no-store', headers});
    if (!reply.ok) throw await failure(reply);
    await reply.json();
    rtts.push(performance.now() - start);
    onprogress(0.1 * (i + 1) / PROBES);
  }
  const rttMs = median(rtts);
  const began = performance.now();
  let size = FIRST_UPLOAD;
  let uplinkMbit = 0;
  for (;;) {
    const start = performance.now();
    const reply = await fetch('/api/linktest', {method: 'POST', body: new Uint8Array(size),
                                                headers: {...headers, 'Content-Type': 'application/octet-stream'}});
    if (!reply.ok) throw await failure(reply);
    await reply.json();
    const ms = performance.now() - start;
    uplinkMbit = (size * 8) / 1000 / Math.max(ms - rttMs, 1);  // bits per ms = kbit/s; / 1000: Mbit/s
    const spent = performance.now() - began;
    onprogress(Math.min(1, 0.1 + 0.9 * Math.max(spent / UPLOAD_BUDGET_MS, size / MAX_UPLOAD)));
    if (ms >= ENOUGH_MS || size >= MAX_UPLOAD || spent >= UPLOAD_BUDGET_MS) break;
    size = Math.min(size * 4, MAX_UPLOAD);
  }
  onprogress(1);
  return {rttMs, uplinkMbit};
}

/**
 * How many participants a video call on this line may have: the largest mesh of the table's
 * fastest uplink that the line reaches; 0 when it reaches none (too slow for video).
 * @param {CapacityTable} table @param {number} uplinkMbit
 */
export function largestCall(table, uplinkMbit) {
  let largest = 0;
  for (const row of table.rows) if (row.uplink_mbit <= uplinkMbit) largest = Math.max(largest, row.largest_mesh);
  return largest;
}

/** Whether the round trip is long enough to make talking feel laggy. @param {LineMeasure} line */
export function laggy(line) {
  return line.rttMs >= HIGH_RTT_MS;
}
