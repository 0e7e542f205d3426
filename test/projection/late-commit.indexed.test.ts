/** The late-commit suite again, with the fast-path index on sync_changes (projection-db.ts). */
import './with-fast-path-index.js';
import './late-commit.test.js';
