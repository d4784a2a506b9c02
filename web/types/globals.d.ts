// What the page modules add to the browser's globals (tsc --checkJs, see tsconfig.json).

interface Window {
  /** The page's call and connection, for tests and debugging (room.js, app.js). */
  p2pconf: any;
}
