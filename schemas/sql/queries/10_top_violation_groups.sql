-- Question: what are the biggest violation groups, grouped the way Sentry groups CSP issues
--           (directive, blocked origin, source file)?
-- Parameters:
--   {project_id:UInt64}  the project
--   {since:DateTime}     start of the range (window start), inclusive
--   {until:DateTime}     end of the range, exclusive
--   {limit:UInt32}       how many groups
-- Result: one row per (directive family, blocked origin, source file) with exact occurrences,
--   distinct pages and distinct clients, biggest first. Noise is excluded.
SELECT
    directive_family,
    blocked_origin,
    source_file,
    sum(occurrences) AS total,
    uniqExact(document_origin, document_path) AS pages,
    uniqExact(client_ip) AS clients
FROM reports FINAL
WHERE project_id = {project_id:UInt64}
    AND window_start >= {since:DateTime}
    AND window_start < {until:DateTime}
    AND kind = 'csp-violation'
    AND noise = ''
GROUP BY directive_family, blocked_origin, source_file
ORDER BY total DESC, directive_family, blocked_origin, source_file
LIMIT {limit:UInt32}
