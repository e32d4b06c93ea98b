'use strict';
// socket.io-client 2.x, transports ['websocket']
require('./suite').defineCompatSuite(2, 'websocket');
