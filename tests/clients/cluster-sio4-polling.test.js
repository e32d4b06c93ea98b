'use strict';
// socket.io-client 4.x, transports ['polling'], on a 2-node cluster (clients alternate between the nodes)
require('./suite').defineCompatSuite(4, 'polling', { cluster: 2 });
