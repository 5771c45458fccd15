# Sourced by the swarm test scripts. check_results RESULTS FILES TRUTH_DIR
# CER_OUT: results.jsonl holds exactly one succeeded line per file, and the
# texts match the ground truth (`skep-testkit cer`, its report in CER_OUT).
# Uses the caller's `fail` and `$testkit`.
check_results() {
  local results="$1" files="$2" truth="$3" cer_out="$4" lines unique ok
  lines="$(wc -l <"$results")"
  unique="$(jq -r .path "$results" | sort -u | wc -l)"
  ok="$(jq -r 'select(.status == "succeeded") | .path' "$results" | wc -l)"
  [ "$lines" = "$files" ] || fail "results.jsonl has $lines lines for $files files"
  [ "$unique" = "$files" ] || fail "results.jsonl names $unique distinct files for $files files"
  [ "$ok" = "$files" ] || fail "$ok of $files files succeeded"
  "$testkit" cer --results "$results" --truth-dir "$truth" >"$cer_out" 2>&1 ||
    fail "text does not match the ground truth: $(tail -3 "$cer_out")"
}
