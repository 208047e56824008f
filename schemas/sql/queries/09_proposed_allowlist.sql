-- Question: what should be added to the policy? A proposed allow-list change per directive, like
--           TYPO3's CSP "resolutions" or report-uri's policy wizard: the third-party origins that
--           were blocked often enough, on enough pages, by enough client networks, and are not
--           noise.
-- Parameters:
--   {project_id:UInt64}       the project
--   {since:DateTime}          start of the range (window start), inclusive
--   {until:DateTime}          end of the range, exclusive
--   {min_occurrences:UInt64}  an origin needs at least this many occurrences ...
--   {min_pages:UInt64}        ... on at least this many distinct pages (origin + path) ...
--   {min_networks:UInt64}     ... from at least this many distinct client networks
-- Result: one row per directive family with the proposed source expressions to ADD (sorted) and
--   the ready-to-paste `directive origin ...` text. Only http(s)/ws(s) origins of another
--   registrable domain than the page (third_party = 1) are proposed: inline, eval, data: and
--   first-party blocks need a code or policy decision, not an allow-list entry. A proposal is a
--   review aid: an attacker-controlled origin that was blocked is blocked for a reason.
-- Client networks: the sentry_key is public, so one sender can forge any number of reports
--   (occurrences) for any pages; `min_networks` asks that the reports come from several places.
--   A network is computed from `client_ip` as the project stored it:
--     full or truncated IPv4 (`a.b.c.d`)  -> its /24
--     full or truncated IPv6 (has `:`)    -> its /48 (first 6 bytes)
--     hashed (hex digest, no `.` or `:`)  -> the hash itself: a hash hides the network, so each
--                                           address counts as one (weaker: a sender rotating
--                                           addresses in one /24 counts many times)
--     empty (the project drops client IPs) -> no network: never counts, so such a project gets
--                                           proposals only with min_networks = 0
--   Runs on ClickHouse 18.16 (IPv4StringToNum, IPv6StringToNum, multiIf, uniqExactIf).
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
        uniqExact(document_origin, document_path) AS pages,
        uniqExactIf(network, network != '') AS networks
    FROM
    (
        SELECT
            directive_family,
            blocked_origin,
            occurrences,
            document_origin,
            document_path,
            multiIf(
                client_ip = '', '',
                match(client_ip, '^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$'),
                    concat('v4:', toString(bitAnd(IPv4StringToNum(client_ip), 4294967040))),
                position(client_ip, ':') > 0,
                    concat('v6:', hex(substring(IPv6StringToNum(client_ip), 1, 6))),
                concat('hash:', client_ip)
            ) AS network
        FROM reports FINAL
        WHERE project_id = {project_id:UInt64}
            AND window_start >= {since:DateTime}
            AND window_start < {until:DateTime}
            AND kind = 'csp-violation'
            AND noise = ''
            AND third_party = 1
            AND directive_family != ''
            AND blocked_scheme IN ('http', 'https', 'ws', 'wss')
    )
    GROUP BY directive_family, blocked_origin
    HAVING origin_total >= {min_occurrences:UInt64}
        AND pages >= {min_pages:UInt64}
        AND networks >= {min_networks:UInt64}
)
GROUP BY directive_family
ORDER BY directive_family
