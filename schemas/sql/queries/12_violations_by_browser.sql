-- Question: which browsers (family and major version), operating systems and device classes
--           report the violations? A violation from one browser only is often a browser quirk
--           or an extension rather than a policy gap.
-- Parameters:
--   {project_id:UInt64}  the project
--   {since:DateTime}     start of the range (window start), inclusive
--   {until:DateTime}     end of the range, exclusive
--   {limit:UInt32}       how many rows
-- Result: one row per (browser family, major, OS, device class) with exact occurrences and the
--   number of distinct violations (fingerprints). Noise is excluded.
SELECT
    ua_family,
    ua_major,
    os_family,
    device_class,
    sum(occurrences) AS total,
    uniqExact(fingerprint) AS violations
FROM reports FINAL
WHERE project_id = {project_id:UInt64}
    AND window_start >= {since:DateTime}
    AND window_start < {until:DateTime}
    AND kind = 'csp-violation'
    AND noise = ''
GROUP BY ua_family, ua_major, os_family, device_class
ORDER BY total DESC, ua_family, ua_major, os_family, device_class
LIMIT {limit:UInt32}
