# Sourced by the swarm test scripts.

# Times: now; elapsed A B (seconds between two nows); median of numbers.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# write_job FILE NAME SOURCE OUTPUT FORMATS POOL [FILES_PER_WORKER MAX_REPLICAS]:
# a BulkJob of the folder SOURCE into OUTPUT (FORMATS as a YAML list, e.g.
# "txt, report") on POOL; with FILES_PER_WORKER, its scaling rule too
# (scaled back to 0, three attempts per file).
write_job() {
  local file="$1" name="$2" source="$3" output="$4" formats="$5" pool="$6"
  cat >"$file" <<YAML
apiVersion: skep.dev/v1
kind: BulkJob
metadata:
  name: $name
spec:
  source:
    path: $source
  output:
    path: $output
    formats: [$formats]
  scaling:
    pool: $pool
YAML
  if [ $# -ge 8 ]; then
    cat >>"$file" <<YAML
    filesPerWorker: $7
    maxReplicas: $8
    scaleBackTo: 0
  maxAttempts: 3
YAML
  fi
}

# check_results RESULTS FILES TRUTH_DIR CER_OUT: results.jsonl holds exactly
# one succeeded line per file, and the texts match the ground truth
# (`skep-testkit cer`, its report in CER_OUT). Uses the caller's `fail` and
# `$testkit`.
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
