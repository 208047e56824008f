-- Question: which pages (origin + path, query strings stripped) produce the most CSP
--           violations, and for which directives?
-- Parameters:
--   {project_id:UInt64}  the project
--   {since:DateTime}     start of the range (window start), inclusive
--   {until:DateTime}     end of the range, exclusive
--   {limit:UInt32}       how many pages
-- Result: one row per page with exact occurrences, the number of distinct blocked origins and
--   the sorted list of directive families violated there. Noise is excluded.
SELECT
    document_origin,
    document_path,
    sum(occurrences) AS total,
    uniqExact(blocked_origin) AS blocked_origins,
    arraySort(groupUniqArray(directive_family)) AS directives
FROM reports FINAL
WHERE project_id = {project_id:UInt64}
    AND window_start >= {since:DateTime}
    AND window_start < {until:DateTime}
    AND kind = 'csp-violation'
    AND noise = ''
GROUP BY document_origin, document_path
ORDER BY total DESC, document_origin, document_path
LIMIT {limit:UInt32}
