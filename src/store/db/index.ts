// The Sluice database layer: import from here (see README.md in this folder).

export * from './columns.ts';
export * from './desired.ts';
export * from './desired-index.ts';
export * from './encoding.ts';
export * from './health.ts';
export * from './ops.ts';
export * from './ovn-status.ts';
export * from './plan-index.ts';
export * from './plans.ts';
export * from './read.ts';
export * from './slot-reports.ts';
export * from './status.ts';
export * from './tables.ts';
export * from './view.ts';
