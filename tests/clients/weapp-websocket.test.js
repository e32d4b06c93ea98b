'use strict';
// The WeChat mini program clients (weapp.socket.io 2.1 and 3.x) end to end, on one server.
const { defineWeappSuite } = require('./weapp');
defineWeappSuite({ flavor: 'weapp2' });
defineWeappSuite({ flavor: 'weapp3' });
