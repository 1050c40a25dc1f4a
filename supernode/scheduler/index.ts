export * from './state.js';
export * from './progress.js';
export * from './schedule.js';
