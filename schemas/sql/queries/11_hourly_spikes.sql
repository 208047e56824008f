-- Question: which directive / blocked origin pairs spike in a given hour compared with the 24
--           hours before it (a "spike" alert: a broken deploy, a new injected script)?
-- Parameters:
--   {project_id:UInt64}       the project
--   {hour:DateTime}           the hour to examine (its start, e.g. toStartOfHour(now()) - 3600)
--   {min_occurrences:UInt64}  ignore pairs with fewer occurrences in that hour
--   {factor:UInt32}           a spike has more than `factor` times the hourly average of the
--                             previous 24 hours
-- Result: one row per spiking pair: occurrences in the hour, the previous 24 hours' hourly
--   average (exact counts, averaged over 24 even when some hours had none) and the ratio
--   (`inf` for a pair never seen before).
SELECT
    directive_family,
    blocked_origin,
    sumIf(occurrences, hour = {hour:DateTime}) AS current,
    sumIf(occurrences, hour < {hour:DateTime}) / 24 AS baseline,
    current / baseline AS ratio
FROM rollup_hourly FINAL
WHERE project_id = {project_id:UInt64}
    AND hour >= {hour:DateTime} - 86400
    AND hour <= {hour:DateTime}
    AND kind = 'csp-violation'
    AND noise = ''
GROUP BY directive_family, blocked_origin
HAVING current >= {min_occurrences:UInt64} AND current > {factor:UInt32} * baseline
ORDER BY current DESC, directive_family, blocked_origin
