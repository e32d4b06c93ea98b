'use strict';
// Bursts of 2,000 and 20,000 un-acknowledged inserts from socket.io-client
// 2.x and 4.x over websocket and polling, on one server (cases in burst.js).
require('./burst').defineBurstSuite({
  cases: [
    [4, 'websocket', 2000],
    [4, 'polling', 2000],
    [2, 'websocket', 2000],
    [2, 'polling', 2000],
    [4, 'websocket', 20000],
    [4, 'polling', 20000],
    [2, 'websocket', 20000],
    // All in one ~2.2 MB POST (see burst.js).
    [2, 'polling', 20000],
  ],
});
