'use strict';
// socket.io-client 4.x, transports ['websocket'], on a 2-node cluster (clients alternate between the nodes)
require('./suite').defineCompatSuite(4, 'websocket', { cluster: 2 });
