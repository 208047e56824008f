-- Question: how much does deduplication save, per report kind? (Floods of the same violation
--           from the same client collapse into one row per window.)
-- Parameters:
--   {project_id:UInt64}  the project
--   {since:DateTime}     start of the range, inclusive (hour resolution)
--   {until:DateTime}     end of the range, exclusive
-- Result: one row per kind with the exact number of reports received (occurrences), the rows
--   stored, and the compression ratio occurrences / rows. Noise included: it is traffic too.
SELECT
    kind,
    sum(occurrences) AS received,
    sum(rows) AS stored,
    round(received / stored, 2) AS ratio
FROM rollup_hourly FINAL
WHERE project_id = {project_id:UInt64}
    AND hour >= {since:DateTime}
    AND hour < {until:DateTime}
GROUP BY kind
ORDER BY received DESC, kind
