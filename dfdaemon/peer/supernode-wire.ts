/** The JSON the supernode's /peer API speaks with a peer, and the errors a peer acts on. */
import type { RegistrationFields, WirePiece } from '../../shared/protocol/peer-wire.js';

export type { WirePiece };

/** A registration as sent: headers as dfget's `K:V` list, the optional fields left out when unset. */
export interface RegisterBody extends RegistrationFields {
  headers: string[];
  md5?: string;
  identifier?: string;
  callSystem?: string;
}

export interface Registered {
  node: string;
  taskId: string;
  fileLength: number;
  pieceSize: number;
  /**
   * The supernode takes a busy source's 503 reported as result 502. Only ours says so, and it
   * also long-polls /peer/task, takes a 701 without a range as a poll and records a 702 report;
   * without it the peer speaks the stock protocol (p2p-download.ts).
   */
  busyReports?: boolean;
  /** Stock `cdnPattern: source`: nothing is cached there, pieces would be ranges of the origin. */
  cdnSource?: string;
}

export interface TaskQuery {
  taskId: string;
  srcCid: string;
  status: number;
  range?: string;
  result?: number;
  dstCid?: string;
  /** Long-poll budget in ms; our supernode holds a "wait" open that long. */
  wait?: number;
}

export interface TaskAnswer {
  code: number;
  msg?: string;
  /** Our supernode's stable code for a refusal a peer acts on. */
  error?: string;
  data?: WirePiece[] | { md5: string; fileLength: number } | null;
}

/** A registration the supernode refused for a source reason (607 unreachable, 608 auth). */
export class RegisterRefused extends Error {
  constructor(readonly dfCode: number, message: string) {
    super(message);
  }
}

/**
 * The supernode answered but no longer knows this task, or this peer on it (it restarted, or the
 * task was dropped): the node is up, so registering again with it carries on.
 */
export class TaskUnknown extends Error {
  constructor(readonly node: string, message: string) {
    super(message);
  }
}

export interface RegistryAnswer {
  code?: number;
  msg?: string;
  /** A stock supernode's handler error: HTTP 500 with the reason here instead of in msg. */
  message?: string;
  data?: { taskId: string; fileLength: number; pieceSize: number; busyReports?: boolean; cdnSource?: string };
}
