// The guest link page: "Einstellungen" checks camera and microphone and "Verbindung testen"
// the line before "Beitreten".

import {settings} from './devices.js';
import {linkTest} from './linkview.js';

settings({video: true});
// the link's token (/j/<token>) and the form's CSRF token: a guest has no session yet
linkTest(() => ({invite: location.pathname.split('/').pop(),
                 csrf: /** @type {HTMLInputElement} */ (document.querySelector('input[name=csrf]')).value}));
