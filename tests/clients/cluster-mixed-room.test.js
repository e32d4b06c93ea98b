'use strict';
// Both client generations over every transport in one room, on a 2-node
// cluster (clients alternate between the nodes).
require('./mixed-room').defineMixedRoomSuite({ cluster: 2 });
