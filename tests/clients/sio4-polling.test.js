'use strict';
// socket.io-client 4.x, transports ['polling']
require('./suite').defineCompatSuite(4, 'polling');
