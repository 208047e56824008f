-- Question: which hosts had certificate failures reported (Expect-CT, HPKP, Expect-Staple), how
--           often, and when?
-- Parameters:
--   {project_id:UInt64}  the project
--   {since:DateTime}     start of the range (window start), inclusive
--   {until:DateTime}     end of the range, exclusive
-- Result: one row per (host, port, kind) with exact occurrences, the number of distinct client
--   IPs (as ingest stored them, possibly truncated or hashed) and the first and last sighting.
SELECT
    cert_hostname,
    cert_port,
    kind,
    sum(occurrences) AS total,
    uniqExact(client_ip) AS clients,
    min(first_seen) AS first_sighting,
    max(last_seen) AS last_sighting
FROM reports FINAL
WHERE project_id = {project_id:UInt64}
    AND window_start >= {since:DateTime}
    AND window_start < {until:DateTime}
    AND kind IN ('expect-ct', 'hpkp', 'expect-staple')
GROUP BY cert_hostname, cert_port, kind
ORDER BY total DESC, cert_hostname, cert_port, kind
