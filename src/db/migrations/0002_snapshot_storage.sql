-- A snapshot row is rewritten whenever its record changes: about 3 KB of
-- fields and versions, just over the 2 KB at which Postgres compresses a row
-- by default. Keeping rows of up to a page inline and uncompressed spares a
-- pglz compression per write and a decompression per load (a refresh pass
-- writing 1,000 records spends about a third less in its UPDATE). Larger
-- records are still compressed and moved out of line as usual.
ALTER TABLE mana_ai.mission_snapshots SET (toast_tuple_target = 8160);
