/**
 * The /peer API's JSON as both sides of it see it, with dfget 1.0.x's field names: what a peer
 * registers with, and one piece of a 601 answer. Each side adds what only it knows.
 */

/** The fields of a POST /peer/registry body every registrant sends, as the supernode keeps them. */
export interface RegistrationFields {
  rawUrl: string;
  taskUrl: string;
  cid: string;
  ip: string;
  port: number;
  path: string;
  hostName: string;
  version: string;
  superNodeIp: string;
  insecure: boolean;
  rootCAs: string[];
  dfdaemon: boolean;
  /** Ours: the peer serves a piece while it still receives it (cut-through); the supernode may chain on it. */
  relay: boolean;
}

/** One piece of a 601 answer: where to fetch it and what it must hash to. */
export interface WirePiece {
  range: string;
  pieceNum: number;
  pieceSize: number;
  pieceMd5: string;
  /** Ours: lets our own peers verify pieces with sha256; a stock supernode sends none. */
  pieceSha256?: string;
  cid: string;
  peerIp: string;
  peerPort: number;
  path: string;
}
