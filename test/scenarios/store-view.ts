// A StoreView made by hand (a fake store): a desired state, the unhealthy backends and the latest generation, no
// node reports. For unit tests of effectiveConfig and plannerStep.

import type { Generation } from '../../src/rollout/types.ts';
import type { DesiredDoc, Health, StoreView } from '../../src/store/db/index.ts';

export function storeView(
  doc: DesiredDoc,
  health: ReadonlyMap<string, Health>,
  latest: Generation | null,
): StoreView {
  return {
    desiredCfg: 1,
    desired: doc,
    latest,
    latestConfig: undefined,
    gatewayGeneration: 0,
    nodeStatus: new Map(),
    reportRound: 0,
    backendHealth: health,
    slotReports: new Map(),
  };
}
