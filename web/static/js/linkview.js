// "Verbindung testen" on the start page and on the guest link page (templates/linktest.html):
// the button, a progress bar while the line is measured, and what the line carries, as text.

import {largestCall, laggy, measureLine} from './linktest.js';
import {t} from './i18n.js';
import {$} from './page.js';

/**
 * Wire the button. @param {() => {csrf?: string|null, invite?: string|null}} credentials
 *   what the test's requests carry (see linktest.js measureLine), asked for at each click
 */
export function linkTest(credentials) {
  $('linktest').onclick = async () => {
    const progress = $('linktest-progress');
    $('linktest').disabled = true;
    progress.value = 0;
    progress.hidden = false;
    $('linktest-result').textContent = t('linktest_running');
    try {
      const reply = await fetch('/static/linktable.json');
      if (!reply.ok) throw new Error(reply.statusText);
      const table = await reply.json();
      const line = await measureLine({...credentials(), onprogress: (done) => { progress.value = done; }});
      const count = largestCall(table, line.uplinkMbit);
      const lang = document.documentElement.lang || undefined;
      const parts = [
        count >= 2 ? t('linktest_carries', {count}) : t('linktest_too_slow'),
        t('linktest_measured', {rtt: Math.round(line.rttMs),
                                uplink: line.uplinkMbit.toLocaleString(lang, {maximumFractionDigits: 1})}),
      ];
      if (laggy(line)) parts.push(t('linktest_laggy'));
      $('linktest-result').textContent = parts.join(' ');
    } catch (e) {
      $('linktest-result').textContent = t('linktest_failed', {message: e.message});
    } finally {
      $('linktest').disabled = false;
      progress.hidden = true;
    }
  };
}
