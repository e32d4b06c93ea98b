'use strict';
// A WeChat-mini-program-style client (2.x, websocket only) end to end, on one server.
require('./weapp').defineWeappSuite();
