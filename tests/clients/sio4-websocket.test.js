'use strict';
// socket.io-client 4.x, transports ['websocket']
require('./suite').defineCompatSuite(4, 'websocket');
