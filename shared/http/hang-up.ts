import type { ServerResponse } from 'node:http';

/** One reason for every hang-up: an abort without one builds a DOMException with a stack each time. */
const PEER_GONE = new Error('the peer hung up');

/**
 * A signal that aborts when the client hangs up before `res` is finished. 'close' also follows
 * every normal answer, and aborting then would cost a DOMException per request (4% of the
 * supernode's CPU at N=16 in the swarm benchmark's profile).
 */
export function hangUpSignal(res: ServerResponse): AbortSignal {
  const ac = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) ac.abort(PEER_GONE);
  });
  return ac.signal;
}
