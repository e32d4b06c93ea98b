// ES module entry: the implementation is the CommonJS index.js (one copy, no
// dual-package state); bundlers and Node both import it from here.
import cjs from './index.js';

export const createRoom = cjs.createRoom;
export const Room = cjs.Room;
export const AckError = cjs.AckError;
export const STATES = cjs.STATES;
export default cjs;
