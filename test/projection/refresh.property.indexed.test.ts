/** The refresh property test again, with the fast-path index on sync_changes (projection-db.ts). */
import './with-fast-path-index.js';
import './refresh.property.test.js';
