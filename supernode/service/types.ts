import type { RegistrationFields, WirePiece } from '../../shared/protocol/peer-wire.js';

/** A peer's registration for one task, validated (POST /peer/registry). */
export interface Registration extends RegistrationFields {
  md5: string;
  identifier: string;
  headers: Record<string, string>;
  callSystem: string;
  /** The address the registration came from (the API fills it in): polls for the cid must too. */
  remote?: string;
}

export interface RegisterReply {
  taskId: string;
  fileLength: number;
  pieceSize: number;
  cdnSource: 'supernode';
  /** Ours: this supernode takes result 502 with a piece as "the source refused as busy". */
  busyReports: true;
}

/** One element of a 601 reply, as our supernode sends it. */
export interface PieceInfo extends WirePiece {
  pieceSha256: string;
  downLink: number;
}

export type TaskReply =
  | { code: 600; data: { md5: string; fileLength: number } }
  | { code: 601; data: PieceInfo[] }
  /** The peer is at peerDownLimit: Dragonfly sends 601 with no data key. */
  | { code: 601; msg: string }
  | { code: 602; msg: string }
  /** `error`: our stable code, where a peer should act on the reason (ours act on PEER_NOT_REGISTERED). */
  | { code: 500 | 607 | 608; msg: string; error?: 'PEER_NOT_REGISTERED' };

/** A piece result reported with /peer/task or /peer/piece/suc. */
export interface ReportIn {
  range: string;
  /** 500 failed, 501 ok, 502 invalid, 503 semi-success. */
  result: number;
  dstCid: string;
}

/** A /peer/piece/error report (stock dfget's, after a piece failed to download or verify). */
export interface PieceErrorIn {
  cid: string;
  range: string;
  dstCid: string;
  /** FILE_NOT_EXIST or FILE_MD5_NOT_MATCH from stock dfget; anything else is taken as given. */
  errorType: string;
}
