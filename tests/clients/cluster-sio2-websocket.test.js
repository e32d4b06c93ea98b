'use strict';
// socket.io-client 2.x, transports ['websocket'], on a 2-node cluster (clients alternate between the nodes)
require('./suite').defineCompatSuite(2, 'websocket', { cluster: 2 });
