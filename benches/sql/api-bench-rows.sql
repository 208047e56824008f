-- palisade-api-bench: {ROWS} `reports` rows generated inside ClickHouse, as the processor would
-- have written them (one row per dedup key and 60 s window, `version = occurrences`), for project
-- {PROJECT} plus ~2 % spread over projects 2-10. Placeholders are replaced by the bench.
--
-- Per row (hash of the row number): the project; a fingerprint index f in [0, {FINGERPRINTS})
-- drawn as floor(F * u^3) (skewed: f = 0 gets ~6 % of the rows, half the rows go to the ~600
-- lowest indices); a window start uniform over [{BASE}, {BASE} + {SPAN}) rounded to the minute;
-- 1 occurrence mostly (10 % more, 1 % up to 40 more); a client among 200,000 (skewed, 5 % IPv6).
-- Per fingerprint (hash of f), everything the fingerprint encodes is constant: kind (88 % CSP,
-- then NEL, deprecation, intervention), disposition (1 in 9 report-only), effective directive,
-- blocked class and origin (300 third-party hosts, skewed), document host (12) and path (800),
-- source file / line / column for inline and eval. The CSP policy changes twice over the span
-- (a source added at 1/3 and at 4/5 of it). row_id = cityHash64(dedup key, window start), so
-- the rare same client + fingerprint + minute collapses as a ReplacingMergeTree row would.
INSERT INTO {DB}.reports (row_id, version, project_id, day, window_start, first_seen, last_seen,
  occurrences, fingerprint, dedup_key, message_id, kind, report_type, wire, disposition,
  document_url, document_origin, document_host, document_path, blocked_url, blocked_class,
  blocked_scheme, blocked_host, blocked_domain, blocked_origin, third_party, effective_directive,
  directive_family, violated_directive, source_file, source_host, line_number, column_number,
  sample, policy_hash, original_policy, user_agent, ua_family, ua_major, os_family, device_class,
  client_ip, country, noise, nel_phase, nel_type, server_ip, elapsed_ms)
SELECT cityHash64(g_dedup, g_window) AS g_row, toUInt64(g_occ), g_project, toDate(g_window), g_window,
  g_window + g_first_off, g_window + g_first_off + g_last_off, g_occ, g_fp, g_dedup, hex(g_h),
  g_kind, if(g_wire = 'reporting-api', g_kind, ''), g_wire, g_disp,
  concat(g_doc_origin, g_doc_path, if(g_h % 3 = 0, concat('?ref=', toString(g_h % 1000)), '')),
  g_doc_origin, g_doc_host, g_doc_path,
  g_blocked_url, g_class, g_bscheme, g_bhost, g_bdomain, g_borigin, toUInt8(g_class = 'url'),
  g_dir, g_family, g_dir, g_source, if(g_source = '', '', g_doc_host), g_line, g_col, g_sample,
  if(g_policy = '', toUInt64(0), cityHash64(g_policy)), g_policy,
  g_ua[g_uai], g_uaf[g_uai], g_uam[g_uai], g_os[g_uai], g_dev[g_uai], g_ip,
  ['US','DE','FR','GB','IN','BR','JP','NL'][1 + g_c % 8], g_noise,
  if(g_kind = 'network-error', ['dns','connection','application'][1 + g_hf % 3], ''),
  if(g_kind = 'network-error', ['dns.name_not_resolved','tcp.timed_out','http.error'][1 + g_hf % 3], ''),
  if(g_kind = 'network-error', '192.0.2.10', ''),
  if(g_kind = 'network-error', toUInt32(g_h % 5000), toUInt32(0))
FROM (
SELECT number AS g_n, intHash64(number) AS g_h,
  if(g_h % 50 = 0, toUInt64(2 + intDiv(g_h, 50) % 9), toUInt64({PROJECT})) AS g_project,
  toUInt64(floor({FINGERPRINTS} * pow(((intHash64(number + 1000000007) % 1000000) + 0.5) / 1000000, 3))) AS g_f,
  intHash64(g_f * 7919 + 17) AS g_hf,
  cityHash64(g_project, g_f) AS g_fp,
  toDateTime(intDiv({BASE} + intHash64(number + 2000000011) % {SPAN}, 60) * 60) AS g_window,
  toUInt32(1 + if(g_h % 10 = 0, g_h % 7, 0) + if(g_h % 100 = 0, g_h % 40, 0)) AS g_occ,
  g_h % 30 AS g_first_off, if(g_occ > 1, g_h % 29, 0) AS g_last_off,
  multiIf(g_hf % 100 < 88, 'csp-violation', g_hf % 100 < 94, 'network-error', g_hf % 100 < 98, 'deprecation', 'intervention') AS g_kind,
  if(g_kind = 'csp-violation' AND g_hf % 4 = 0, 'legacy-csp', 'reporting-api') AS g_wire,
  if(g_kind = 'csp-violation', if(g_hf % 9 = 0, 'report', 'enforce'), '') AS g_disp,
  concat('https://', ['www','checkout','m','blog','help','account','app','static','docs','news','cart','shop'][1 + intDiv(g_hf, 7) % 12], '.shop.example') AS g_doc_origin,
  substring(g_doc_origin, 9) AS g_doc_host,
  concat('/p/', toString(intDiv(g_hf, 1000) % 800)) AS g_doc_path,
  if(g_kind = 'csp-violation', ['script-src-elem','script-src-elem','img-src','style-src-elem','connect-src','font-src','frame-src','script-src','script-src-attr','style-src-attr'][1 + intDiv(g_hf, 100) % 10], '') AS g_dir,
  multiIf(g_dir = '', '', g_dir = 'script-src', 'eval', g_dir IN ('script-src-attr', 'style-src-attr'), 'inline', g_dir = 'script-src-elem' AND intDiv(g_hf, 10000) % 5 = 0, 'inline', intDiv(g_hf, 10000) % 23 = 0, 'extension', g_dir = 'img-src' AND intDiv(g_hf, 10000) % 4 = 0, 'data', 'url') AS g_class,
  toUInt64(floor(300 * pow((intDiv(g_hf, 100000) % 10000 + 0.5) / 10000, 2))) AS g_b,
  concat('cdn', toString(g_b), '.vendor', toString(g_b % 17), '.com') AS g_host_b,
  multiIf(g_class = 'url', 'https', g_class = 'data', 'data', g_class = 'extension', 'chrome-extension', '') AS g_bscheme,
  if(g_class = 'url', g_host_b, '') AS g_bhost,
  if(g_class = 'url', concat('vendor', toString(g_b % 17), '.com'), '') AS g_bdomain,
  multiIf(g_class = 'url', concat('https://', g_host_b), g_class IN ('data', 'extension'), concat(g_bscheme, ':'), g_class) AS g_borigin,
  multiIf(g_class = 'url', concat('https://', g_host_b, '/assets/', toString(g_hf % 97), '.js'), g_class = 'data', 'data', g_class = 'extension', concat('chrome-extension://', lower(hex(g_hf % 65536)), '/inject.js'), g_class) AS g_blocked_url,
  multiIf(g_dir LIKE 'script%', 'script', g_dir LIKE 'style%', 'style', g_dir = 'img-src', 'img', g_dir = 'connect-src', 'connect', g_dir = 'font-src', 'font', g_dir = 'frame-src', 'frame', '') AS g_family,
  if(g_class IN ('inline', 'eval') OR g_kind = 'deprecation', concat(g_doc_origin, g_doc_path), '') AS g_source,
  toUInt32(if(g_source = '', 0, 1 + g_hf % 300)) AS g_line,
  toUInt32(if(g_source = '', 0, 1 + intDiv(g_hf, 300) % 80)) AS g_col,
  multiIf(g_class = 'inline' AND g_dir = 'script-src-elem', concat('window.dataLayer.push(', toString(g_f), ')'), g_class = 'inline', concat('color: #', toString(g_f % 1000)), '') AS g_sample,
  if(g_class = 'extension', 'noise_scheme', '') AS g_noise,
  if(g_kind != 'csp-violation', '', if(g_disp = 'report', 'default-src ''self''; script-src ''self'' https://cdn0.vendor0.com; report-uri /csp-ro', concat('default-src ''self''; script-src ''self'' https://cdn0.vendor0.com', if(g_window >= toDateTime({BASE} + intDiv({SPAN}, 3)), ' https://cdn1.vendor1.com', ''), '; img-src ''self'' data:; style-src ''self''', if(g_window >= toDateTime({BASE} + intDiv({SPAN} * 4, 5)), ' https://cdn2.vendor2.com', ''), '; report-uri /csp'))) AS g_policy,
  toUInt64(floor(200000 * pow((intHash64(number + 3000000019) % 1000000 + 0.5) / 1000000, 1.5))) AS g_c,
  if(g_c % 20 = 0, concat('2001:db8:', toString(1000 + g_c % 9000), '::', toString(1 + g_c % 97)), IPv4NumToString(toUInt32(intHash32(g_c)))) AS g_ip,
  cityHash64(g_fp, g_ip) AS g_dedup,
  1 + g_c % 6 AS g_uai,
  ['Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36', 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0', 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15', 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0', 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1', 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36'] AS g_ua,
  ['Chrome','Edge','Safari','Firefox','Mobile Safari','Chrome Mobile'] AS g_uaf,
  ['131','130','17','132','17','131'] AS g_uam,
  ['Linux','Windows','Mac OS X','Windows','iOS','Android'] AS g_os,
  ['desktop','desktop','desktop','desktop','mobile','mobile'] AS g_dev
FROM numbers({ROWS})
)
