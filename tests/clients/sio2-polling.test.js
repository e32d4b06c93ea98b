'use strict';
// socket.io-client 2.x, transports ['polling']
require('./suite').defineCompatSuite(2, 'polling');
