// The Sluice database layer: import from here (see README.md in this folder).

export * from './columns.ts';
export * from './ops.ts';
export * from './read.ts';
export * from './tables.ts';
