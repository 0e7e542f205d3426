/** Imported first by a `*.indexed.test.ts` file: its suite runs with the fast-path index. */
import { useFastPathIndex } from './projection-db.js';

useFastPathIndex();
