// The child-process launcher lives with the in-process one in test/support.
export * from '../../support/child-coordinator.js';
