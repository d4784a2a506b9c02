"""The UI's words: German (the manual's labels, the default) and English.

Pages pick the language from the browser's Accept-Language: English when the
browser prefers it, German otherwise. Templates call t(key); the page scripts
receive the same table as JSON.
"""

from __future__ import annotations

DE = {
    "app": "Videokonferenz",
    "menu": "Anruforganisation",
    "sign_in": "Anmelden",
    "sign_out": "Abmelden",
    "login": "Benutzername",
    "password": "Passwort",
    "bad_credentials": "Benutzername oder Passwort ist falsch.",
    "throttled": "Zu viele Fehlversuche. Bitte in {minutes} Minuten erneut versuchen.",
    "choose": "Teilnehmer auswählen",
    "search": "Suchen",
    "favorites": "Favoriten",
    "recent": "Zuletzt angerufen",
    "results": "Suchergebnisse",
    "load_more": "Weitere laden",
    "favorite": "Favorit",
    "no_favorites": "Noch keine Favoriten – markieren Sie Personen mit ☆.",
    "no_recent": "Noch keine Anrufe.",
    "no_results": "Niemand gefunden.",
    "permission": "Für die Videokonferenz fragt Ihr Browser nach Kamera und Mikrofon. Bitte erlauben Sie den "
                  "Zugriff und setzen Sie am besten ein Häkchen bei",
    "remember": "Entscheidung merken",
    "permission_end": ", damit Sie nicht jedes Mal gefragt werden.",
    "understood": "Verstanden",
    "call_kind": "Anrufart",
    "audio_video": "Audio und Video",
    "audio_only": "Nur Audio",
    "start_call": "Anruf starten",
    "invite_external": "externe Teilnehmer einladen",
    "room_name": "Raumname",
    "ok": "OK",
    "cancel": "Abbrechen",
    "accept": "Annehmen",
    "decline": "Ablehnen",
    "own_picture": "Eigenes Bild",
    "leave": "Beenden",
    "mic_off": "Mikrofon ausschalten",
    "mic_on": "Mikrofon einschalten",
    "cam_off": "Video ausschalten",
    "cam_on": "Video einschalten",
    "mic_muted": "Mikrofon aus",
    "cam_muted": "Kamera aus",
    "stage": "Großansicht",
    "participants": "Teilnehmer",
    "invitees": "Eingeladene",
    "send_link": "Senden Sie diesen Link an die externen Teilnehmer (E-Mail, SMS, Messenger):",
    "invite_link": "Einladungslink",
    "copy_link": "Link kopieren",
    "copied": "Kopiert",
    "close": "Schließen",
    "no_camera": "Keine Kamera gefunden oder der Zugriff wurde nicht erlaubt.",
    "join_audio_only": "Nur mit Audio teilnehmen",
    "guest_intro": "Sie wurden zu einer Videokonferenz eingeladen. Unter welchem Namen möchten Sie teilnehmen?",
    "display_name": "Anzeigename",
    "join": "Beitreten",
    "bad_name": "Bitte einen Anzeigenamen mit 1 bis 40 Zeichen eingeben.",
    "signed_in_as": "Angemeldet als",
    # page scripts
    "online": "online", "in-call": "im Gespräch", "offline": "offline",
    "ringing": "klingelt …", "accepted": "angenommen", "declined": "abgelehnt", "busy": "besetzt",
    "missed": "nicht erreicht",
    "calls_you": "{name} ruft an ({mode})",
    "mode_audio_only": "nur Audio", "mode_audio_video": "Audio und Video",
    "no_camera_audio_only": "Keine Kamera gefunden oder kein Zugriff erlaubt – Sie können „Nur Audio“ telefonieren.",
    "call_failed": "Der Anruf konnte nicht gestartet werden: {message}",
    "room_failed": "Der Raum konnte nicht angelegt werden: {message}",
    "search_failed": "Die Suche ist fehlgeschlagen: {message}",
    "favorite_failed": "Der Favorit konnte nicht gespeichert werden: {message}",
    "server_lost": "Verbindung zum Server unterbrochen – neuer Versuch …",
    "peer_trouble": "Verbindung gestört – neuer Versuch …",
    "room_full": "Der Raum ist voll: Es können höchstens {max} Personen teilnehmen.",
    "join_failed": "Beitritt nicht möglich: {message}",
    "no_microphone": "Ohne Mikrofon ist keine Teilnahme möglich. Bitte erlauben Sie den Zugriff und laden Sie die "
                     "Seite neu.",
    "left_call": "Sie haben die Konferenz verlassen.",
    "quality": "Verbindungsqualität",
    "quality_help": "Zeile: wer sendet, Spalte: wer empfängt. Werte der letzten Sekunden.",
    "link_good": "Verbindung gut",
    "link_bad": "Verbindung schlecht",
    "relay": "über Relay",
    "download_quality": "Verbindungsdaten herunterladen",
    "back_home": "Zur Startseite",
    # final refusals (docs/protocol.md, "Closing"): the client stops and says why
    "refused-revoked": "Der Einladungslink wurde zurückgezogen.",
    "refused-signed-out": "Sie wurden abgemeldet.",
    "refused-forbidden": "Sie dürfen diesen Raum nicht betreten.",
    "refused-protocol": "Der Server hat die Verbindung beendet: Protokollfehler (die Seite ist vielleicht "
                        "veraltet). Bitte laden Sie die Seite neu.",
    "refused-stalled": "Der Server hat die Verbindung beendet: Diese Seite hat ihre Nachrichten nicht "
                       "rechtzeitig gelesen. Bitte laden Sie die Seite neu.",
    "refused-flood": "Der Server hat die Verbindung beendet: zu viele Nachrichten in kurzer Zeit. Bitte laden "
                     "Sie die Seite neu.",
    "refused-replaced": "Diese Verbindung wurde von einer neueren ersetzt.",
    "refused-other": "Der Server hat die Verbindung beendet ({code}).",
    "sign_in_again": "Erneut anmelden",
    # message pages
    "invite-malformed": ["Ungültiger Link", "Dieser Einladungslink ist nicht gültig. Bitte prüfen Sie, ob er "
                         "vollständig kopiert wurde."],
    "invite-unknown": ["Unbekannter Link", "Zu diesem Einladungslink gibt es keinen Raum."],
    "invite-expired": ["Link abgelaufen", "Dieser Einladungslink ist abgelaufen. Bitten Sie um einen neuen Link."],
    "invite-revoked": ["Link zurückgezogen", "Dieser Einladungslink wurde zurückgezogen. Bitten Sie um einen neuen Link."],
    "room-forbidden": ["Kein Zutritt", "Dieser Raum ist nicht für Sie freigegeben."],
    "sso-off": ["Anmeldung nicht eingerichtet", "Die Anmeldung über die Plattform ist auf diesem Server nicht eingerichtet."],
    "sso-failed": ["Anmeldung fehlgeschlagen", "{message}"],
    "user-disabled": ["Zugang gesperrt", "Dieses Konto ist deaktiviert."],
}

EN = {
    "app": "Video conference",
    "menu": "Call organisation",
    "sign_in": "Sign in",
    "sign_out": "Sign out",
    "login": "User name",
    "password": "Password",
    "bad_credentials": "Wrong user name or password.",
    "throttled": "Too many failed attempts. Please try again in {minutes} minutes.",
    "choose": "Choose participants",
    "search": "Search",
    "favorites": "Favorites",
    "recent": "Recent calls",
    "results": "Search results",
    "load_more": "Load more",
    "favorite": "Favorite",
    "no_favorites": "No favorites yet – mark people with ☆.",
    "no_recent": "No calls yet.",
    "no_results": "Nobody found.",
    "permission": "For the video conference your browser asks for camera and microphone. Please allow it, "
                  "and best tick",
    "remember": "Remember this decision",
    "permission_end": " so that you are not asked every time.",
    "understood": "Got it",
    "call_kind": "Call type",
    "audio_video": "Audio and video",
    "audio_only": "Audio only",
    "start_call": "Start call",
    "invite_external": "Invite external participants",
    "room_name": "Room name",
    "ok": "OK",
    "cancel": "Cancel",
    "accept": "Accept",
    "decline": "Decline",
    "own_picture": "Your picture",
    "leave": "Leave",
    "mic_off": "Mute microphone",
    "mic_on": "Unmute microphone",
    "cam_off": "Turn video off",
    "cam_on": "Turn video on",
    "mic_muted": "Microphone off",
    "cam_muted": "Camera off",
    "stage": "Large view",
    "participants": "Participants",
    "invitees": "Invited",
    "send_link": "Send this link to the external participants (e-mail, SMS, messenger):",
    "invite_link": "Invitation link",
    "copy_link": "Copy link",
    "copied": "Copied",
    "close": "Close",
    "no_camera": "No camera found, or access was not allowed.",
    "join_audio_only": "Join with audio only",
    "guest_intro": "You have been invited to a video conference. Under which name would you like to take part?",
    "display_name": "Display name",
    "join": "Join",
    "bad_name": "Please enter a display name of 1 to 40 characters.",
    "signed_in_as": "Signed in as",
    "online": "online", "in-call": "in a call", "offline": "offline",
    "ringing": "ringing …", "accepted": "accepted", "declined": "declined", "busy": "busy",
    "missed": "missed",
    "calls_you": "{name} is calling ({mode})",
    "mode_audio_only": "audio only", "mode_audio_video": "audio and video",
    "no_camera_audio_only": "No camera found or no access allowed – you can make audio-only calls.",
    "call_failed": "The call could not be started: {message}",
    "room_failed": "The room could not be created: {message}",
    "search_failed": "The search failed: {message}",
    "favorite_failed": "The favorite could not be saved: {message}",
    "server_lost": "Connection to the server lost – trying again …",
    "peer_trouble": "Connection problem – trying again …",
    "room_full": "The room is full: at most {max} people can take part.",
    "join_failed": "Cannot join: {message}",
    "no_microphone": "You cannot take part without a microphone. Please allow access and reload the page.",
    "left_call": "You have left the conference.",
    "quality": "Link quality",
    "quality_help": "Row: who sends, column: who receives. Values of the last seconds.",
    "link_good": "Good connection",
    "link_bad": "Poor connection",
    "relay": "via relay",
    "download_quality": "Download link-quality summary",
    "back_home": "Back to the start page",
    "refused-revoked": "The invitation link was revoked.",
    "refused-signed-out": "You have been signed out.",
    "refused-forbidden": "You may not enter this room.",
    "refused-protocol": "The server closed the connection: protocol error (this page may be out of date). "
                        "Please reload the page.",
    "refused-stalled": "The server closed the connection: this page did not read its messages in time. "
                       "Please reload the page.",
    "refused-flood": "The server closed the connection: too many messages in a short time. Please reload "
                     "the page.",
    "refused-replaced": "This connection was replaced by a newer one.",
    "refused-other": "The server closed the connection ({code}).",
    "sign_in_again": "Sign in again",
    "invite-malformed": ["Invalid link", "This invitation link is not valid. Please check that it was copied "
                         "completely."],
    "invite-unknown": ["Unknown link", "There is no room for this invitation link."],
    "invite-expired": ["Link expired", "This invitation link has expired. Please ask for a new one."],
    "invite-revoked": ["Link revoked", "This invitation link was revoked. Please ask for a new one."],
    "room-forbidden": ["No access", "This room is not open to you."],
    "sso-off": ["Sign-in not set up", "Signing in through the platform is not set up on this server."],
    "sso-failed": ["Sign-in failed", "{message}"],
    "user-disabled": ["Access blocked", "This account is disabled."],
}

TEXTS = {"de": DE, "en": EN}
assert DE.keys() == EN.keys()


def pick_language(accept_language: str | None) -> str:
    """"en" when the browser's most preferred language is English, else "de"."""
    best, best_q = "de", -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and q > best_q:
            best, best_q = tag.lower(), q
    return "en" if best.startswith("en") else "de"
