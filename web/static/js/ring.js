// An audible ring made in the page (no audio file): two tones, repeating.

/** Start ringing; returns a function that stops it. */
export function startRinging() {
  const Ctx = window.AudioContext || /** @type {any} */ (window).webkitAudioContext;  // older Safari
  if (!Ctx) return () => {};
  const ctx = new Ctx();
  const gain = ctx.createGain();
  gain.gain.value = 0;
  gain.connect(ctx.destination);
  const osc = ctx.createOscillator();
  osc.frequency.value = 440;
  osc.connect(gain);
  osc.start();
  let on = false;
  const timer = setInterval(() => {
    on = !on;
    gain.gain.setTargetAtTime(on ? 0.2 : 0, ctx.currentTime, 0.02);
    osc.frequency.setValueAtTime(on ? 440 : 480, ctx.currentTime);
  }, 600);
  return () => {
    clearInterval(timer);
    osc.stop();
    ctx.close();
  };
}
