// Inputs for driving the pure scheduler directly.
import type { ScheduleContext, SchedulerLimits } from '../../supernode/scheduler/index.js';

/** Stock Dragonfly limits: 4 down, 5 up, 5 to eliminate, 5 client failures; no cut-through. */
export const STOCK_LIMITS: SchedulerLimits = Object.freeze({
  peerDownLimit: 4,
  peerUpLimit: 5,
  eliminationLimit: 5,
  failureCountLimit: 5,
  cdnTaskLoadLimit: 4,
  pieceTimeoutMs: 30_000,
  relayDepth: 0,
});

/** A schedule() context at `now`, with a fixed random draw so decisions repeat. */
export const schedCtx = (now = 0, limits: SchedulerLimits = STOCK_LIMITS): ScheduleContext => ({ limits, now, rand: () => 0.5 });
