// Link quality from RTCPeerConnection.getStats(): one sample per peer and second,
// the tile indicator's rule, the `stats` upload of docs/protocol.md, the call's
// summary for download, and how the upload budget is split between receivers.
// No DOM access.

export const WINDOW_S = 5;  // the indicator judges the last five seconds
export const BAD_LOSS_PCT = 30;
export const MIN_PACKETS_PER_S = 10;
export const MAX_RTT_MS = 1500;
export const THUMB_KBPS = 150;  // video to a peer that shows us as a small tile
export const FULL_KBPS = 1500;  // video to a peer that shows us in its centre, at most
export const THUMB_SCALE = 4;  // thumbnails are sent at a quarter of the camera's width and height

/** Counters of one connection at one moment, from its stats report. */
export async function readCounters(pc) {
  const report = await pc.getStats();
  const c = {at: performance.now(), bytesIn: 0, bytesOut: 0, packetsIn: 0, lostIn: 0, rttMs: null, path: null,
             // the audio's energy and duration (W3C webrtc-stats), heard from the peer and sent by us
             audioEnergyIn: 0, audioSecondsIn: 0, audioEnergyOut: 0, audioSecondsOut: 0};
  /** @type {any} the selected candidate pair's stats */
  let pair = null;
  report.forEach((s) => {
    if (s.type === 'inbound-rtp') {
      c.bytesIn += (s.bytesReceived || 0) + (s.headerBytesReceived || 0);
      c.packetsIn += s.packetsReceived || 0;
      c.lostIn += Math.max(0, s.packetsLost || 0);
      if (s.kind === 'audio') {
        c.audioEnergyIn += s.totalAudioEnergy || 0;
        c.audioSecondsIn += s.totalSamplesDuration || 0;
      }
    } else if (s.type === 'media-source' && s.kind === 'audio') {
      c.audioEnergyOut += s.totalAudioEnergy || 0;
      c.audioSecondsOut += s.totalSamplesDuration || 0;
    } else if (s.type === 'outbound-rtp') {
      c.bytesOut += (s.bytesSent || 0) + (s.headerBytesSent || 0);
    } else if (s.type === 'transport' && s.selectedCandidatePairId) {
      pair = report.get(s.selectedCandidatePairId);
    }
  });
  if (!pair) report.forEach((s) => { if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
  if (pair) {
    if (pair.currentRoundTripTime !== undefined) c.rttMs = pair.currentRoundTripTime * 1000;
    const local = report.get(pair.localCandidateId);
    const remote = report.get(pair.remoteCandidateId);
    c.path = local?.candidateType === 'relay' || remote?.candidateType === 'relay' ? 'relay' : 'direct';
  }
  return c;
}

export const SPEAKING_RMS = 0.02;  // an audio level (RMS, 0..1) above which someone speaks

/**
 * The audio's mean level (RMS, 0..1) between two readings, heard ("In") or sent ("Out").
 * @param {any} before @param {any} after @param {'In'|'Out'} way
 */
export function audioLevel(before, after, way) {
  const seconds = after[`audioSeconds${way}`] - before[`audioSeconds${way}`];
  return seconds > 0 ? Math.sqrt(Math.max(0, after[`audioEnergy${way}`] - before[`audioEnergy${way}`]) / seconds) : 0;
}

/** The rates between two readings of the same connection. */
export function rates(before, after) {
  const s = Math.max(0.001, (after.at - before.at) / 1000);
  const kbps = (bytes) => Math.max(0, bytes * 8 / s / 1000);
  return {
    seconds: s,
    kbpsIn: kbps(after.bytesIn - before.bytesIn),
    kbpsOut: kbps(after.bytesOut - before.bytesOut),
    packets: Math.max(0, after.packetsIn - before.packetsIn),
    lost: Math.max(0, after.lostIn - before.lostIn),
    rttMs: after.rttMs,
    path: after.path,
  };
}

/** Lost packets as a percentage of those expected (received + lost). */
export function lossPct(packets, lost) {
  return packets + lost ? 100 * lost / (packets + lost) : 0;
}

/**
 * Whether a link is bad over the recent samples: >= 30 % loss, < 10 packets/s, or RTT > 1.5 s.
 * Returns null until the samples cover a few seconds.
 * @param {{seconds: number, packets: number, lost: number, rttMs: number|null}[]} samples newest last
 */
export function judge(samples) {
  let seconds = 0, packets = 0, lost = 0;
  for (let i = samples.length - 1; i >= 0 && seconds < WINDOW_S; i--) {
    seconds += samples[i].seconds;
    packets += samples[i].packets;
    lost += samples[i].lost;
  }
  if (seconds < 3) return null;
  const loss = lossPct(packets, lost);
  const rtt = samples.at(-1).rttMs;
  const reasons = [];
  if (loss >= BAD_LOSS_PCT) reasons.push(`loss ${loss.toFixed(0)} %`);
  if (packets / seconds < MIN_PACKETS_PER_S) reasons.push(`${(packets / seconds).toFixed(1)} packets/s`);
  if (rtt !== null && rtt > MAX_RTT_MS) reasons.push(`rtt ${Math.round(rtt)} ms`);
  return {bad: reasons.length > 0, reasons, lossPct: loss};
}

/**
 * Video bitrate and scaling per peer: full quality to the peers that show us in their
 * centre, a thumbnail to the rest, all of it within `budgetKbps`.
 * @param {number} budgetKbps what our uplink may carry for video
 * @param {{id: string, centred: boolean}[]} peers
 * @returns {Map<string, {maxBitrate: number, scaleResolutionDownBy: number}>}
 */
export function splitBudget(budgetKbps, peers) {
  const out = new Map();
  if (!peers.length) return out;
  const thumb = Math.min(THUMB_KBPS, budgetKbps / peers.length);
  const centred = peers.filter((p) => p.centred).length;
  const rest = budgetKbps - thumb * (peers.length - centred);
  const full = centred ? Math.max(thumb, Math.min(FULL_KBPS, rest / centred)) : 0;
  for (const p of peers) {
    out.set(p.id, p.centred ? {maxBitrate: Math.round(full * 1000), scaleResolutionDownBy: 1}
                            : {maxBitrate: Math.round(thumb * 1000), scaleResolutionDownBy: THUMB_SCALE});
  }
  return out;
}

/** Samples of every peer during one call: the indicator, the upload and the summary. */
export class CallQuality {
  constructor() {
    this.startedAt = new Date().toISOString();
    /** @type {Map<string, {name: string, last: object|null, samples: object[], verdict: object|null,
     *                         badSeconds: number}>} */
    this.links = new Map();
  }

  /** Add a reading of one peer's connection; returns the link's verdict (see judge()). */
  add(id, name, counters) {
    let link = this.links.get(id);
    if (!link) this.links.set(id, link = {name, last: null, samples: [], verdict: null, badSeconds: 0});
    link.name = name;
    const before = link.last;
    link.last = counters;
    if (!before) return null;
    const sample = {t: Date.now() / 1000, ...rates(before, counters)};
    link.samples.push(sample);
    link.verdict = judge(link.samples);
    if (link.verdict?.bad) link.badSeconds += sample.seconds;
    return link.verdict;
  }

  /** The `peers` object of a `stats` message: the latest sample of every link. */
  upload(ids) {
    const peers = {};
    for (const id of ids) {
      const s = this.links.get(id)?.samples.at(-1);
      if (!s) continue;
      const r1 = (x) => Math.round(x * 10) / 10;
      peers[id] = {kbpsIn: r1(s.kbpsIn), kbpsOut: r1(s.kbpsOut), lossPct: r1(lossPct(s.packets, s.lost)),
                   path: s.path || 'direct', ...(s.rttMs !== null ? {rttMs: r1(s.rttMs)} : {})};
    }
    return peers;
  }

  /** The call's link-quality summary, for download after the call (plain JSON). */
  summary(room, me, matrix) {
    const stat = (values) => values.length
      ? {mean: Math.round(values.reduce((a, b) => a + b, 0) / values.length * 10) / 10, max: Math.max(...values)}
      : null;
    const peers = [...this.links.entries()].map(([id, link]) => {
      const s = link.samples;
      const pick = (key) => s.map((x) => x[key]).filter((v) => v !== null && v !== undefined);
      return {
        id, name: link.name, seconds: Math.round(s.reduce((a, x) => a + x.seconds, 0)),
        path: s.at(-1)?.path ?? null,
        kbpsIn: stat(pick('kbpsIn')), kbpsOut: stat(pick('kbpsOut')), rttMs: stat(pick('rttMs')),
        lossPct: stat(s.map((x) => lossPct(x.packets, x.lost))),
        badSeconds: Math.round(link.badSeconds),
        series: s.map((x) => ({t: Math.round(x.t), kbpsIn: Math.round(x.kbpsIn), kbpsOut: Math.round(x.kbpsOut),
                               packets: x.packets, lost: x.lost, rttMs: x.rttMs === null ? null : Math.round(x.rttMs)})),
      };
    });
    return {room, me, startedAt: this.startedAt, endedAt: new Date().toISOString(), peers, lastMatrix: matrix || null};
  }
}
