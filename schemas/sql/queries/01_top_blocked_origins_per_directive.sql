-- Question: which blocked origins are the most frequent, per directive, over a time range
--           (the "last 24 hours" view: since = now - 24 h, until = now)?
-- Parameters:
--   {project_id:UInt64}    the project
--   {since:DateTime}       start of the range, inclusive (rounded down to the hour by the rollup)
--   {until:DateTime}       end of the range, exclusive
--   {per_directive:UInt32} how many origins to list per directive family
-- Result: one row per (directive family, blocked origin), the top `per_directive` of each family
--   by exact occurrences (redeliveries and flood duplicates already collapsed). `groups` is the
--   number of deduplicated (client, violation, window) rows behind the count. Noise (extensions,
--   injected scripts) is excluded.
SELECT
    directive_family,
    blocked_origin,
    sum(occurrences) AS total,
    sum(rows) AS groups
FROM rollup_hourly FINAL
WHERE project_id = {project_id:UInt64}
    AND hour >= {since:DateTime}
    AND hour < {until:DateTime}
    AND kind = 'csp-violation'
    AND noise = ''
    AND blocked_origin != ''
GROUP BY directive_family, blocked_origin
ORDER BY directive_family, total DESC, blocked_origin
LIMIT {per_directive:UInt32} BY directive_family
