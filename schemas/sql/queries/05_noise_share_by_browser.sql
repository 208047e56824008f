-- Question: how much of what browsers send is noise (browser extensions, injected scripts,
--           non-web documents), per browser family? A high share says the default noise filters
--           earn their keep, or that one browser's extension ecosystem dominates the traffic.
-- Parameters:
--   {project_id:UInt64}  the project
--   {since:DateTime}     start of the range (window start), inclusive
--   {until:DateTime}     end of the range, exclusive
-- Result: one row per browser family (woothee's name, '' when unknown) with exact total and
--   noise occurrences, the noise share, and the sorted noise reasons seen.
SELECT
    ua_family,
    sum(occurrences) AS total,
    sumIf(occurrences, noise != '') AS noise_total,
    round(noise_total / total, 4) AS noise_share,
    arraySort(groupUniqArrayIf(noise, noise != '')) AS noise_reasons
FROM reports FINAL
WHERE project_id = {project_id:UInt64}
    AND window_start >= {since:DateTime}
    AND window_start < {until:DateTime}
    AND kind = 'csp-violation'
GROUP BY ua_family
ORDER BY total DESC, ua_family
