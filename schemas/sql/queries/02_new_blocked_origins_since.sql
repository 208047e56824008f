-- Question: which blocked origins were never seen before a date (new third parties, new
--           injected resources, a deploy that added a dependency)?
-- Parameters:
--   {project_id:UInt64}  the project
--   {since:DateTime}     origins whose first sighting is at or after this instant are "new"
-- Result: one row per (directive family, blocked origin) first seen at or after `since`, with the
--   first and last sighting and the exact occurrences since. "Never seen before" is bounded by
--   retention: data older than the retention window is gone. Noise is excluded.
SELECT
    directive_family,
    blocked_origin,
    min(first_seen) AS first_sighting,
    max(last_seen) AS last_sighting,
    sum(occurrences) AS total
FROM rollup_hourly FINAL
WHERE project_id = {project_id:UInt64}
    AND kind = 'csp-violation'
    AND noise = ''
    AND blocked_origin != ''
GROUP BY directive_family, blocked_origin
HAVING first_sighting >= {since:DateTime}
ORDER BY first_sighting, directive_family, blocked_origin
