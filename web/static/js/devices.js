// "Einstellungen": camera, microphone and speaker, a live preview, the microphone's level
// and noise suppression. The choice is remembered in this browser (localStorage) and used
// by every later getUserMedia of the module. The dialog is templates/devices.html.

import {$} from './page.js';

const KEY = 'p2pconf.devices';
// A mesh sends one stream per peer: ask for a modest picture (the camera may give more).
const VIDEO = {width: {ideal: 640}, height: {ideal: 360}, frameRate: {ideal: 15, max: 24}};

/**
 * @typedef {{camera?: string, microphone?: string, speaker?: string, noiseSuppression?: boolean}} Choice
 */

/** The devices chosen earlier in this browser. @returns {Choice} */
export function remembered() {
  try {
    const choice = JSON.parse(localStorage.getItem(KEY) || '{}');
    return choice && typeof choice === 'object' ? choice : {};
  } catch (e) {
    return {};
  }
}

/**
 * getUserMedia constraints for these devices.
 * @param {boolean} video @param {Choice} choice @param {boolean} audio
 */
function constraints(video, choice, audio) {
  const cleanup = choice.noiseSuppression !== false;  // on unless switched off
  const device = (id) => (id ? {exact: id} : undefined);  // Chromium takes a mere preference as a hint only
  return {
    audio: audio && {deviceId: device(choice.microphone), noiseSuppression: cleanup, echoCancellation: cleanup},
    video: video && {...VIDEO, deviceId: device(choice.camera)},
  };
}

/**
 * Camera (with `video`) and microphone (with `audio`) as chosen in this browser; the
 * browser's defaults when a chosen device has gone.
 * @param {boolean} video @param {Choice} [choice] @param {boolean} [audio]
 */
export async function openDevices(video, choice = remembered(), audio = true) {
  try {
    return await navigator.mediaDevices.getUserMedia(constraints(video, choice, audio));
  } catch (e) {
    if (e.name !== 'OverconstrainedError' && e.name !== 'NotFoundError') throw e;
    return navigator.mediaDevices.getUserMedia(constraints(video, {noiseSuppression: choice.noiseSuppression}, audio));
  }
}

/** Play remote sound on the chosen speaker, where the browser can choose. @param {HTMLMediaElement} media */
export function useSpeaker(media) {
  const speaker = remembered().speaker;
  const element = /** @type {any} */ (media);
  if (speaker && element.setSinkId && element.sinkId !== speaker) {
    element.setSinkId(speaker).catch((/** @type {Error} */ e) => console.warn('speaker not available:', e));
  }
}

/**
 * Wire the "Einstellungen" button to its dialog.
 * @param {{video: boolean, current?: () => MediaStream|null,
 *          onchange?: (stream: MediaStream) => Promise<void>|void, onclose?: () => void}} options
 *   `current`: the stream in use (the call's), shown in the preview; without it the dialog
 *   opens a stream of its own and stops it when closed. `onchange`: a new stream for the
 *   changed devices (the caller owns it from then on). `onclose`: the dialog has closed.
 */
export function settings({video, current, onchange, onclose}) {
  const dialog = $('devices-dialog');
  /** @type {MediaStream|null} */
  let own = null;
  /** @type {AudioContext|null} */
  let audio = null;
  let metering = 0;

  const shown = () => current?.() || own;

  async function fill() {
    const devices = await navigator.mediaDevices.enumerateDevices();
    const choice = remembered();
    const stream = shown();
    const inUse = (kind) => stream?.getTracks().find((t) => t.kind === kind)?.getSettings().deviceId;
    for (const [id, kind, key, active] of [['camera-select', 'videoinput', 'camera', inUse('video')],
                                           ['microphone-select', 'audioinput', 'microphone', inUse('audio')],
                                           ['speaker-select', 'audiooutput', 'speaker', undefined]]) {
      const options = devices.filter((d) => d.kind === kind).map((d, n) => Object.assign(
        document.createElement('option'), {value: d.deviceId, textContent: d.label || `${kind} ${n + 1}`}));
      $(id).replaceChildren(...options);
      const wanted = active || choice[key];
      if (options.some((o) => o.value === wanted)) $(id).value = wanted;
    }
    $('camera-row').hidden = !video;
    $('speaker-row').hidden = !('setSinkId' in HTMLMediaElement.prototype) || !$('speaker-select').options.length;
    $('noise-suppression').checked = choice.noiseSuppression !== false;
  }

  function preview() {
    const stream = shown();
    $('device-preview').srcObject = stream;
    audio?.close();
    cancelAnimationFrame(metering);
    const track = stream?.getAudioTracks()[0];
    if (!track) return;
    audio = new AudioContext();
    const analyser = audio.createAnalyser();
    audio.createMediaStreamSource(new MediaStream([track])).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    const draw = () => {
      analyser.getFloatTimeDomainData(samples);
      const rms = Math.sqrt(samples.reduce((sum, x) => sum + x * x, 0) / samples.length);
      $('mic-level').value = Math.min(1, rms * 4);
      metering = requestAnimationFrame(draw);
    };
    draw();
  }

  async function changed() {
    /** @type {Choice} */
    const choice = {camera: $('camera-select').value || undefined, microphone: $('microphone-select').value || undefined,
                    speaker: $('speaker-select').value || undefined, noiseSuppression: $('noise-suppression').checked};
    localStorage.setItem(KEY, JSON.stringify(choice));
    const stream = await openDevices(video, choice);
    if (onchange) {
      await onchange(stream);
    } else {
      own?.getTracks().forEach((t) => t.stop());
      own = stream;
    }
    for (const media of document.querySelectorAll('video, audio')) useSpeaker(/** @type {HTMLMediaElement} */ (media));
    preview();
  }

  $('settings').onclick = async () => {
    if (!current) own = await openDevices(video);
    await fill();  // labels only once the page may use the devices
    preview();
    dialog.showModal();
  };
  for (const id of ['camera-select', 'microphone-select', 'speaker-select', 'noise-suppression']) {
    $(id).onchange = () => changed().catch((e) => console.warn('could not switch devices:', e));
  }
  dialog.onclose = () => {
    audio?.close();
    audio = null;
    cancelAnimationFrame(metering);
    $('device-preview').srcObject = null;
    own?.getTracks().forEach((t) => t.stop());
    own = null;
    onclose?.();
  };
}
