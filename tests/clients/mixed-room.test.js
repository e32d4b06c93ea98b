'use strict';
// Both client generations over every transport in one room, on one server.
require('./mixed-room').defineMixedRoomSuite();
