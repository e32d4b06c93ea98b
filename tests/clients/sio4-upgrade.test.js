'use strict';
// socket.io-client 4.x, transports ['polling', 'websocket'] (polling → websocket upgrade)
require('./suite').defineCompatSuite(4, 'upgrade');
