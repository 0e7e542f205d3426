// The demo's service worker, served at /demo/sw.js so its scope can be /demo/.
// It is registered as a module worker ({ type: 'module' }) and only imports the
// built bundle, whose shared chunks resolve next to it under /web-client/dist/.
import '/web-client/dist/demo-sw.js';
