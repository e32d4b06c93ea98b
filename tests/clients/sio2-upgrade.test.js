'use strict';
// socket.io-client 2.x, transports ['polling', 'websocket'] (polling → websocket upgrade)
require('./suite').defineCompatSuite(2, 'upgrade');
