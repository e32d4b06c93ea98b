'use strict';
// The WeChat-mini-program-style client end to end on a 2-node cluster: the
// peer on one node, the mini program on the other, its reconnection on the
// first.
require('./weapp').defineWeappSuite({ cluster: 2 });
