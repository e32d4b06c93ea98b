// Type definitions for always-online-client.

/** The subset of a socket.io-client (2.x/4.x) or weapp.socket.io socket that is used. */
export interface SocketLike {
  connected: boolean;
  on(event: string, fn: (...args: any[]) => void): any;
  off?(event: string, fn?: (...args: any[]) => void): any;
  removeListener?(event: string, fn: (...args: any[]) => void): any;
  emit(event: string, ...args: any[]): any;
  connect(): any;
  disconnect(): any;
}

export type Uid = string | number;
export type RoomId = string | number;
export type Storage = 'insert' | 'update' | 'ignore';
export type RoomState = 'connecting' | 'authenticating' | 'joining' | 'syncing' | 'live' | 'closed';

export interface RoomOptions {
  uid: Uid;
  token: string;
  roomId: RoomId;
  /** Join as an invisible observer (cannot send). */
  dummy?: boolean;
  /** Ask for gzip-compressed sync pages (decoded with zlib in Node, DecompressionStream in browsers). */
  gzip?: boolean;
  /** Custom gunzip (e.g. pako in a mini program), or force 'zlib' / 'stream'. */
  gunzip?: 'zlib' | 'stream' | ((bytes: Uint8Array) => string | Uint8Array | Promise<string | Uint8Array>);
  /** How long send() waits for an ack before retrying (default 5000). */
  ackTimeoutMs?: number;
  /** Retries after an ack timeout (default 3). */
  retries?: number;
  /** How long a hole in the live seq stream may last before a sync fills it (default 300). */
  gapWaitMs?: number;
  /** Pause before reconnecting after a server-side disconnect (default 1000). */
  reconnectDelayMs?: number;
  /** How many message ids / seqs are remembered for duplicate detection (default 10000). */
  rememberIds?: number;
  /**
   * Send uid and token with the socket.io connect (`socket.auth`) instead of
   * an authenticate event; default: on for socket.io-client 3+/4 sockets.
   */
  authAtConnect?: boolean;
}

/** A message as the server relays it. */
export interface RoomMessage {
  data: any;
  /** storage: 0 insert, 1 update, 2 ignore */
  s?: 0 | 1 | 2;
  /** msgId (updates) */
  '1'?: string | number;
  /** sender uid, stamped by the server */
  '2'?: Uid;
  /** per-room position of an insert */
  seq?: number;
  /** client message id added by send() */
  _cid?: string;
  [key: string]: any;
}

export interface MessageMeta {
  /** seq of an insert; undefined for updates and ignores */
  seq?: number;
  /** true for a live relay, false for a message from a sync page */
  live: boolean;
  uid?: Uid;
  storage: Storage;
  msgId?: string | number;
  cid?: string;
}

export interface PresenceEvent {
  type: 'join' | 'leave' | 'disconnect' | 'sync';
  uid: Uid;
}

export interface SendOptions {
  storage?: Storage | 0 | 1 | 2;
  /** required for updates */
  msgId?: string | number;
  /** client message id; generated when omitted */
  cid?: string;
}

export interface SendResult {
  /** seq of a stored insert */
  seq?: number;
}

export interface RoomStats {
  delivered: number;
  duplicates: number;
  syncPages: number;
  resets: number;
  resyncs: number;
}

export declare class AckError extends Error {
  /** the server's non-zero status (-1: ack timeout) */
  status?: number;
}

export declare class Room {
  readonly uid: Uid;
  readonly roomId: RoomId;
  readonly state: RoomState | null;
  /** highest seq processed without holes (-1: none) */
  readonly lastSeq: number;
  /** history epoch of the last sync reply */
  readonly epoch: string | null;
  readonly stats: RoomStats;

  on(event: 'message', fn: (msg: RoomMessage, meta: MessageMeta) => void): this;
  on(event: 'presence', fn: (p: PresenceEvent) => void): this;
  on(event: 'system', fn: (content: any) => void): this;
  on(event: 'kickout', fn: (payload: any) => void): this;
  on(event: 'state', fn: (state: RoomState) => void): this;
  on(event: 'reset', fn: (info: { epoch: string }) => void): this;
  on(event: 'error', fn: (err: Error) => void): this;
  once(event: string, fn: (...args: any[]) => void): this;
  off(event?: string, fn?: (...args: any[]) => void): this;

  send(data: any, opts?: SendOptions): Promise<SendResult>;
  leave(): void;
  close(): void;
}

export declare const STATES: RoomState[];
export declare function createRoom(socket: SocketLike, options: RoomOptions): Room;
