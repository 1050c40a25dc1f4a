/**
 * The supernode's top-level `preheat:` section (ours; Dragonfly 1.x has none): how Harbor
 * authenticates to the provider endpoints, which platforms to expand, job limits, and the
 * webhook rules. Filled in by the preheat module.
 */
export interface PreheatConfig {
  readonly enabled: boolean;
}

export const PREHEAT_DEFAULTS: PreheatConfig = Object.freeze({ enabled: true });

export function parsePreheatSection(raw: unknown, key: string): PreheatConfig {
  void key;
  if (raw === null || raw === undefined) return PREHEAT_DEFAULTS;
  return PREHEAT_DEFAULTS;
}
