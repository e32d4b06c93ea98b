'use strict';
// The WeChat mini program clients (weapp.socket.io 2.1 and 3.x) end to end on a 2-node cluster: the
// peer on one node, the mini program on the other, its reconnection on the
// first.
const { defineWeappSuite } = require('./weapp');
defineWeappSuite({ cluster: 2, flavor: 'weapp2' });
defineWeappSuite({ cluster: 2, flavor: 'weapp3' });
