// Public API of the lab (see README.md and docs/design/lab.md).

export {
  DEFAULT_PREFIX,
  DEFAULT_RUN_ROOT,
  type LabBackendPlan,
  type LabClientPlan,
  type LabConfig,
  type LabConfigInput,
  type LabVip,
  labConfigDocument,
  labPlan,
  labSluiceConfig,
  resolveLabConfig,
} from './config.ts';
export { nsRun, nsScript, type RunOptions, type RunResult, run, startInNetns } from './exec.ts';
export {
  LAB_TLV_MAP,
  type LabBackendFacts,
  LabNode,
  type LabNodeFacts,
  type LabNodePorts,
} from './node.ts';
export {
  attachLab,
  type BackendProbe,
  Lab,
  type LabDownReport,
  type LabFacts,
  type LabStatus,
  labDown,
  labStatus,
  labUp,
} from './topology.ts';
export {
  aggregate,
  formatCounters,
  startTraffic,
  Traffic,
  type TrafficCounters,
  TrafficRunner,
} from './traffic.ts';
