// The planner's lock name (the planner reads the store through src/store/db/view.ts).

export const PLANNER_LOCK = 'sluice_planner';
