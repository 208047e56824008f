-- Question: what are the Network Error Logging error rates per phase (dns, connection,
--           application), for one host or all?
-- Parameters:
--   {project_id:UInt64}  the project
--   {since:DateTime}     start of the range, inclusive (hour resolution)
--   {until:DateTime}     end of the range, exclusive
--   {host:String}        document host to restrict to, '' for every host
-- Result: one row per phase with exact error occurrences (any type but `ok`), all occurrences,
--   the error rate and the sorted error types. The rate is only meaningful when the NEL policy
--   samples successes (`success_fraction` > 0); with `success_fraction` 0, `total` counts
--   errors only and the rate is 1. Sampling fractions are not reweighted here.
SELECT
    nel_phase,
    sumIf(occurrences, nel_type != 'ok') AS errors,
    sum(occurrences) AS total,
    round(errors / total, 4) AS error_rate,
    arraySort(groupUniqArrayIf(nel_type, nel_type != 'ok')) AS error_types
FROM rollup_nel_hourly FINAL
WHERE project_id = {project_id:UInt64}
    AND hour >= {since:DateTime}
    AND hour < {until:DateTime}
    AND ({host:String} = '' OR document_host = {host:String})
GROUP BY nel_phase
ORDER BY nel_phase
