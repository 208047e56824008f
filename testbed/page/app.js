// Allowed by `script-src 'self'`; its eval is not (no 'unsafe-eval'): a script-src violation.
try {
  eval("1 + 1");
} catch (error) {
  // EvalError: expected, the violation report is what the test waits for.
}
