// The guest link page: "Einstellungen" checks camera and microphone before "Beitreten".

import {settings} from './devices.js';

settings({video: true});
