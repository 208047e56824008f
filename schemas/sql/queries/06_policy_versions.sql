-- Question: which policy versions (xxh3 hash of the original policy) did browsers enforce or
--           report, and when did the policy change?
-- Parameters:
--   {project_id:UInt64}  the project
--   {since:DateTime}     start of the range, inclusive (hour resolution)
--   {until:DateTime}     end of the range, exclusive
-- Result: one row per policy version ordered by first sighting; a version's first sighting is
--   when it was deployed (as browsers saw it) and the previous version's last sighting is when
--   the last cached page with it stopped reporting. Only reports that carry the policy (CSP)
--   count.
SELECT
    policy_hash,
    min(first_seen) AS first_sighting,
    max(last_seen) AS last_sighting,
    sum(occurrences) AS total,
    any(original_policy) AS policy
FROM rollup_policy_hourly FINAL
WHERE project_id = {project_id:UInt64}
    AND hour >= {since:DateTime}
    AND hour < {until:DateTime}
GROUP BY policy_hash
ORDER BY first_sighting, policy_hash
