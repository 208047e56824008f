-- Question: what should be added to the policy? A proposed allow-list change per directive, like
--           TYPO3's CSP "resolutions" or report-uri's policy wizard: the third-party origins that
--           were blocked often enough, on enough pages, and are not noise.
-- Parameters:
--   {project_id:UInt64}       the project
--   {since:DateTime}          start of the range (window start), inclusive
--   {until:DateTime}          end of the range, exclusive
--   {min_occurrences:UInt64}  an origin needs at least this many occurrences ...
--   {min_pages:UInt64}        ... on at least this many distinct pages (origin + path)
-- Result: one row per directive family with the proposed source expressions to ADD (sorted) and
--   the ready-to-paste `directive origin ...` text. Only http(s)/ws(s) origins of another
--   registrable domain than the page (third_party = 1) are proposed: inline, eval, data: and
--   first-party blocks need a code or policy decision, not an allow-list entry. A proposal is a
--   review aid: an attacker-controlled origin that was blocked is blocked for a reason.
SELECT
    directive_family,
    arraySort(groupArray(blocked_origin)) AS additions,
    concat(directive_family, ' ', arrayStringConcat(additions, ' ')) AS proposal,
    sum(origin_total) AS total
FROM
(
    SELECT
        directive_family,
        blocked_origin,
        sum(occurrences) AS origin_total,
        uniqExact(document_origin, document_path) AS pages
    FROM reports FINAL
    WHERE project_id = {project_id:UInt64}
        AND window_start >= {since:DateTime}
        AND window_start < {until:DateTime}
        AND kind = 'csp-violation'
        AND noise = ''
        AND third_party = 1
        AND directive_family != ''
        AND blocked_scheme IN ('http', 'https', 'ws', 'wss')
    GROUP BY directive_family, blocked_origin
    HAVING origin_total >= {min_occurrences:UInt64} AND pages >= {min_pages:UInt64}
)
GROUP BY directive_family
ORDER BY directive_family
