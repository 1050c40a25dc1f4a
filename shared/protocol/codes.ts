/**
 * Dragonfly 1.x result codes (pkg/constants/dfget_super_code.go). Stock dfget switches on
 * these numbers, so they are part of the wire contract and must never change meaning.
 */
export const Code = {
  Success: 200,
  SystemError: 500,
  ParamError: 501,
  TargetNotFound: 502,
  PeerFinish: 600,
  PeerContinue: 601,
  PeerWait: 602,
  PeerLimited: 603,
  TaskConflict: 606,
  URLNotReachable: 607,
  /** The origin wants credentials: dfget stops trying supernodes and goes to the source. */
  NeedAuth: 608,
  /** dfget waits 2.5 s and asks the same supernode again, up to 3 times. */
  WaitAuth: 609,
  PieceSuccess: 611,
  PeerDown: 612,
} as const;

/** The `result` a dfget reports with /peer/task about the piece it just tried. */
export const PieceResult = { Fail: 500, Success: 501, Invalid: 502, SemiSuccess: 503 } as const;

/** The `status` a dfget reports with /peer/task. */
export const PeerStatus = { Start: 700, Running: 701, Finished: 702 } as const;

/** Envelope of the legacy /peer/* endpoints: HTTP 200 with the code in the body. */
export interface Envelope<T = unknown> {
  code: number;
  msg?: string;
  data?: T;
}
