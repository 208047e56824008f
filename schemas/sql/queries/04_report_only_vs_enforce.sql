-- Question: per directive, how many violations were enforced (the resource was really blocked)
--           versus only reported (Content-Security-Policy-Report-Only)? A directive with
--           report-only violations and no enforced ones is what a policy rollout still has to fix
--           before switching to enforce.
-- Parameters:
--   {project_id:UInt64}  the project
--   {since:DateTime}     start of the range, inclusive (hour resolution)
--   {until:DateTime}     end of the range, exclusive
-- Result: one row per directive family: exact enforced and report-only occurrences, reports
--   without a disposition (old browsers), and the report-only share of all of them.
SELECT
    directive_family,
    sumIf(occurrences, disposition = 'enforce') AS enforced,
    sumIf(occurrences, disposition = 'report') AS report_only,
    sumIf(occurrences, disposition = '') AS unknown,
    round(report_only / (enforced + report_only + unknown), 4) AS report_only_share
FROM rollup_hourly FINAL
WHERE project_id = {project_id:UInt64}
    AND hour >= {since:DateTime}
    AND hour < {until:DateTime}
    AND kind = 'csp-violation'
    AND noise = ''
GROUP BY directive_family
ORDER BY directive_family
