#!/usr/bin/env bash
# Fuzzes every target with libFuzzer for FUZZ_SECONDS each (default 45), on the
# stable toolchain: libfuzzer-sys builds libFuzzer itself (needs a C++ compiler), and
# the coverage instrumentation is stable rustc codegen flags, the ones `cargo fuzz
# run --sanitizer none` passes. No cargo-fuzz and no nightly needed.
#
#   fuzz/run.sh                       every target, FUZZ_SECONDS each
#   FUZZ_SECONDS=600 fuzz/run.sh node one target for 10 minutes
#
# New inputs go to fuzz/target/corpus/<target> (not committed); the committed seeds
# in fuzz/corpus/<target> are read, never written. A crash leaves its input in
# fuzz/artifacts/<target>/ and fails the script after every target ran. If libFuzzer
# cannot be built, the script says so loudly and falls back to `replay`: the corpora
# and random mutations of them, without coverage guidance.
set -uo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-45}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wire handshake_responder handshake_initiator records node)
host=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps these flags off build scripts and proc macros.
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
  -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares
  --cfg fuzzing -Cdebug-assertions -Coverflow-checks"

# A lock file that no longer matches the crate's dependencies is a mistake in the
# repository, not a fuzzer that cannot be built: say so rather than fall back.
if ! cargo metadata --locked --format-version 1 >/dev/null 2>&1; then
  echo "fuzz: fuzz/Cargo.lock does not match the dependencies (p2p's or the fuzz crate's);"
  echo "fuzz: update it with: cargo update --workspace --manifest-path fuzz/Cargo.toml"
  exit 1
fi

started=$(date +%s)
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
if ! RUSTFLAGS="$(echo $flags)" cargo build --locked --release --target "$host" "${bins[@]}"; then
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  echo "!!! FUZZING DEGRADED: libFuzzer could not be built. Replaying the corpora and"
  echo "!!! random mutations of them instead, WITHOUT coverage guidance."
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  cargo build --locked --release --no-default-features --bin replay || exit 1
  exec ./target/release/replay "$seconds" "${targets[@]}"
fi
echo "fuzz: built in $(( $(date +%s) - started ))s"

failed=()
for t in "${targets[@]}"; do
  mkdir -p "target/corpus/$t" "artifacts/$t"
  echo "== fuzz $t for ${seconds}s"
  # New inputs go to the first folder; the committed corpus is only read.
  if ! "./target/$host/release/$t" "target/corpus/$t" "corpus/$t" \
      -max_total_time="$seconds" -max_len=16384 -timeout=20 -rss_limit_mb=2048 \
      -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
      2> "target/$t.log"; then
    failed+=("$t")
    tail -40 "target/$t.log"
  fi
  # libFuzzer's last status line: executions, coverage, corpus.
  grep -E '^#[0-9]+' "target/$t.log" | tail -1
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "target/$t.log" | tr '\n' ' '
  echo
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: CRASH in ${failed[*]}; inputs in fuzz/artifacts/ (replay: ./target/$host/release/<target> <input>)"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash"
