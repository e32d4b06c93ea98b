'use strict';
// socket.io-client 2.x, transports ['polling'], on a 2-node cluster (clients alternate between the nodes)
require('./suite').defineCompatSuite(2, 'polling', { cluster: 2 });
