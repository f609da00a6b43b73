#!/usr/bin/env bash
# Bad input, table-driven: every row makes one bad input in a temp dir (flag, value, shard, model, state, tokenizer,
# output dir, test-only environment variable, reference file of test_gpt2), runs the program and passes when it
# exits 1 and its stderr holds exactly one `error:` line, the first line, containing the expected text (which names
# the flag or the file). Prints OK/FAIL per row and `N passed, N failed`.
# Environment: TRAIN_BIN (default ./train_gpt2), TEST_BIN (default ./test_gpt2), PYTHON (default /usr/bin/python3),
# ENCODE_BIN (default ./encode_gpt2): the text encoder's rows; SAMPLE_BIN (default ./sample_gpt2) and SAMPLE_TRAIN_BIN
# (default ./train_gpt2, writes the AdamW checkpoint of those rows): sample_gpt2's rows; EVAL_BIN (default
# ./eval_gpt2) and EXPORT_BIN (default ./export_gpt2): the posterior evaluation and export rows (on checkpoints of $TRAIN).
set -u
cd "$(dirname "$0")/../.."
TRAIN=${TRAIN_BIN:-./train_gpt2}
TESTG=${TEST_BIN:-./test_gpt2}
PY=${PYTHON:-/usr/bin/python3}
TRAIN_SHARD=dev/data/austen/austen_train.bin
VAL_SHARD=dev/data/austen/austen_val.bin
REF_MODEL=ref/gpt2_d2.bin
REF_DEBUG=ref/gpt2_d2_debug_state.bin
REF_OPT=ref/gpt2_d2_ivon_state.bin
TOKENIZER=gpt2_tokenizer.bin
ENCODE=${ENCODE_BIN:-./encode_gpt2}
SAMPLE=${SAMPLE_BIN:-./sample_gpt2}
SAMPLE_TRAIN=${SAMPLE_TRAIN_BIN:-./train_gpt2}
EVAL=${EVAL_BIN:-./eval_gpt2}
EXPORT=${EXPORT_BIN:-./export_gpt2}
pass=0; fail=0
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT

# row "what" "expected text in the error line" command...
row() {
  local what=$1 pat=$2; shift 2
  "$@" > "$tmp/out.txt" 2> "$tmp/err.txt"; local rc=$?
  local first nerr
  first=$(head -n 1 "$tmp/err.txt")
  nerr=$(grep -c '^error:' "$tmp/err.txt")
  if [ "$rc" -eq 1 ] && [ "$nerr" -eq 1 ] && [[ "$first" == error:* ]] && grep -qF -- "$pat" <<< "$first"; then
    echo "OK   $what: $first"; pass=$((pass + 1))
  else
    echo "FAIL $what (exit $rc, want 1 and an error line with '$pat'): $(tail -n 3 "$tmp/err.txt" | tr '\n' ' ')"
    fail=$((fail + 1))
  fi
}

for f in "$TRAIN" "$TESTG" "$ENCODE" "$SAMPLE" "$SAMPLE_TRAIN" "$EVAL" "$EXPORT" "$TRAIN_SHARD" "$VAL_SHARD" "$REF_MODEL" "$REF_DEBUG" "$REF_OPT" "$TOKENIZER"; do
  if [ ! -e "$f" ]; then echo "FAIL missing $f (run make test, which builds it)"; echo "0 passed, 1 failed"; exit 1; fi
done

# --- file makers -----------------------------------------------------------------------------------------------
# shard PATH MAGIC VERSION HEADER_COUNT NTOKENS [TOKEN]: header then NTOKENS tokens (all TOKEN, default 11)
shard() {
  "$PY" - "$@" <<'EOF'
import struct, sys
path, magic, version, count, ntok = sys.argv[1], *map(int, sys.argv[2:6])
tok = int(sys.argv[6]) if len(sys.argv) > 6 else 11
hdr = [0] * 256
hdr[0], hdr[1], hdr[2] = magic, version, count
with open(path, "wb") as f:
    f.write(struct.pack("<256i", *hdr))
    f.write(struct.pack("<%dH" % ntok, *([tok] * ntok)))
EOF
}
# patch PATH OFFSET INT32: overwrite one little-endian int32
patch() {
  "$PY" - "$@" <<'EOF'
import struct, sys
path, off, val = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "r+b") as f:
    f.seek(off); f.write(struct.pack("<i", val))
EOF
}
# patchf PATH OFFSET FLOAT32
patchf() {
  "$PY" - "$@" <<'EOF'
import struct, sys
path, off, val = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with open(path, "r+b") as f:
    f.seek(off); f.write(struct.pack("<f", val))
EOF
}
cp_patch() { cp "$1" "$2"; patch "$2" "$3" "$4"; }
cp_trunc() { head -c "$3" "$1" > "$2"; }
cp_extra() { cp "$1" "$2"; printf 'xxxx' >> "$2"; }

base=(-e d2 -b 1 -t 8 -x 1 -v 0 -s 0)

# --- flags and values ------------------------------------------------------------------------------------------
row "unknown flag"                 "flag -zz: unknown flag"          "$TRAIN" -zz 3
row "argument that is not a flag"  "flag foo: expected a flag"       "$TRAIN" foo 3
row "missing value"                "flag -b: missing value"          "$TRAIN" -x 1 -b
row "non-numeric integer"          "flag -b: 'four' is not an integer" "$TRAIN" -b four
row "non-numeric float"            "flag -l: '1e-3x' is not a number" "$TRAIN" -l 1e-3x
row "NaN float"                    "flag -l: nan is out of range"    "$TRAIN" -l nan
row "value below range"            "flag -t: 0 is out of range"      "$TRAIN" -t 0
row "value above range"            "flag -b: 70000 is out of range"  "$TRAIN" -b 70000
row "integer overflow"             "flag -x: 99999999999 is out of range" "$TRAIN" -x 99999999999
row "negative unsigned"            "flag -seed: '-1' is not a non-negative integer" "$TRAIN" -seed -1
row "bad choice"                   "flag -k: 'sometimes' is not one of" "$TRAIN" -k sometimes
row "unknown optimizer"            "flag -opt: 'sgd' is not one of"  "$TRAIN" -opt sgd
row "empty string value"           "flag -o: empty value"            "$TRAIN" -o ""
row "bad -sl"                      "flag -sl: -1 is out of range"    "$TRAIN" -sl -1
row "bad -sx"                      "flag -sx: -1 is out of range"    "$TRAIN" -sx -1
row "bad -nk"                      "flag -nk: 'x' is not an integer" "$TRAIN" -nk x
row "bad -ge"                      "flag -ge: 3 is out of range"     "$TRAIN" -ge 3
row "-y without -o"                "flag -y"                         "$TRAIN" "${base[@]}" -y 1
row "-n without -o"                "flag -n"                         "$TRAIN" "${base[@]}" -n 5
row "-m 0 with val on"             "flag -m"                         "$TRAIN" "${base[@]}" -v 1 -m 0
row "-d not a multiple of B*T"     "flag -d"                         "$TRAIN" "${base[@]}" -d 12
row "-d beyond the data (-x -1)"   "flag -d: one step needs"         "$TRAIN" "${base[@]}" -x -1 -d 80000000
row "T beyond the model context"   "flag -t: sequence length 2048 exceeds the model's context 1024" "$TRAIN" "${base[@]}" -t 2048
row "BMA with adamw"               "flag -bma"                       "$TRAIN" "${base[@]}" -bma 2
row "AdamW beta1 = 1"              "flag -ab1: beta1 1 must be in [0, 1)" "$TRAIN" "${base[@]}" -ab1 1
row "AdamW eps < 0"                "flag -ae: -1 is out of range"    "$TRAIN" "${base[@]}" -ae -1
row "h0 = 0"                       "flag -h0"                        "$TRAIN" "${base[@]}" -opt ivon -h0 0
row "beta2 > 1"                    "flag -b2"                        "$TRAIN" "${base[@]}" -opt ivon -b2 1.5
row "beta1 = 1"                    "flag -b1"                        "$TRAIN" "${base[@]}" -opt ivon -b1 1
row "PoCo mega batches 0"          "flag -pmb"                       "$TRAIN" "${base[@]}" -opt poco -pmb 0

# --- token shards (-i, -j) -------------------------------------------------------------------------------------
shard "$tmp/magic.bin" 1234 1 100 100
shard "$tmp/version.bin" 20240520 9 100 100
shard "$tmp/negative.bin" 20240520 1 -5 0
shard "$tmp/short_body.bin" 20240520 1 100 50
shard "$tmp/long_body.bin" 20240520 1 100 120
shard "$tmp/few.bin" 20240520 1 8 8
shard "$tmp/vocab.bin" 20240520 1 100 100 60000
head -c 100 "$TRAIN_SHARD" > "$tmp/header_cut.bin"
row "no train file matches"        "no data files match '$tmp/none_*.bin'" "$TRAIN" "${base[@]}" -i "$tmp/none_*.bin"
row "no val file matches"          "no data files match '$tmp/noval.bin'"  "$TRAIN" "${base[@]}" -v 1 -j "$tmp/noval.bin"
row "shard bad magic"              "$tmp/magic.bin' has bad magic"      "$TRAIN" "${base[@]}" -i "$tmp/magic.bin"
row "shard unknown version"        "$tmp/version.bin' has unsupported version 9" "$TRAIN" "${base[@]}" -i "$tmp/version.bin"
row "shard negative token count"   "$tmp/negative.bin' has a negative token count" "$TRAIN" "${base[@]}" -i "$tmp/negative.bin"
row "shard header truncated"       "$tmp/header_cut.bin' is truncated"  "$TRAIN" "${base[@]}" -i "$tmp/header_cut.bin"
row "shard body truncated"         "$tmp/short_body.bin' is truncated"  "$TRAIN" "${base[@]}" -i "$tmp/short_body.bin"
row "shard size disagrees"         "$tmp/long_body.bin': size disagrees with header" "$TRAIN" "${base[@]}" -i "$tmp/long_body.bin"
row "too few tokens for B*T+1"     "$tmp/few.bin' has 8 tokens, fewer than B*T+1" "$TRAIN" "${base[@]}" -i "$tmp/few.bin"
row "B*T beyond the data"          "fewer than B*T+1 = 2000*1024+1"     "$TRAIN" "${base[@]}" -b 2000 -t 1024
row "val shard bad magic"          "$tmp/magic.bin' has bad magic"      "$TRAIN" "${base[@]}" -v 1 -j "$tmp/magic.bin"
row "token outside the vocab"      "$tmp/vocab.bin' has token 60000"    "$TRAIN" "${base[@]}" -i "$tmp/vocab.bin"

# --- model files (-e) ------------------------------------------------------------------------------------------
cp_patch "$REF_MODEL" "$tmp/m_magic.bin" 0 77
cp_patch "$REF_MODEL" "$tmp/m_version.bin" 4 4
cp_patch "$REF_MODEL" "$tmp/m_config.bin" 24 0
cp_trunc "$REF_MODEL" "$tmp/m_trunc.bin" 500
cp_trunc "$REF_MODEL" "$tmp/m_short.bin" 100000
cp_extra "$REF_MODEL" "$tmp/m_long.bin"
cp "$REF_MODEL" "$tmp/m_nan.bin"; patchf "$tmp/m_nan.bin" 4096 nan
row "model file missing"           "flag -e: cannot open model file '$tmp/m_none.bin'"                  "$TRAIN" -e "$tmp/m_none.bin" -x 1 -v 0 -s 0
row "model descriptor out of range" "flag -e: cannot open model file 'd0'"                           "$TRAIN" -e d0 -x 1 -v 0 -s 0
row "model bad magic"              "$tmp/m_magic.bin' has bad magic"    "$TRAIN" -e "$tmp/m_magic.bin" -b 1 -t 8 -x 1 -v 0 -s 0
row "model unknown version"        "$tmp/m_version.bin' has unsupported version 4" "$TRAIN" -e "$tmp/m_version.bin" -b 1 -t 8 -x 1 -v 0 -s 0
row "model impossible config"      "$tmp/m_config.bin' has an impossible config" "$TRAIN" -e "$tmp/m_config.bin" -b 1 -t 8 -x 1 -v 0 -s 0
row "model header truncated"       "$tmp/m_trunc.bin' is truncated"     "$TRAIN" -e "$tmp/m_trunc.bin" -b 1 -t 8 -x 1 -v 0 -s 0
row "model body truncated"         "$tmp/m_short.bin' has 100000 bytes but its header implies" "$TRAIN" -e "$tmp/m_short.bin" -b 1 -t 8 -x 1 -v 0 -s 0
row "model size disagrees"         "$tmp/m_long.bin' has"               "$TRAIN" -e "$tmp/m_long.bin" -b 1 -t 8 -x 1 -v 0 -s 0
row "model non-finite weight"      "$tmp/m_nan.bin' has a non-finite weight at index 768" "$TRAIN" -e "$tmp/m_nan.bin" -b 1 -t 8 -x 1 -v 0 -s 0
row "model T beyond its context"   "flag -t"                            "$TRAIN" -e "$REF_MODEL" -b 1 -t 4096 -x 1 -v 0 -s 0

# --- optimizer state files (-y 1) ------------------------------------------------------------------------------
ck=(-e d2 -b 1 -t 8 -x 2 -n 1 -v 0 -s 0 -seed 5)
"$TRAIN" "${ck[@]}" -o "$tmp/ck" > "$tmp/ck.txt" 2>&1 || echo "FAIL checkpoint run for the state rows: $(tail -n 2 "$tmp/ck.txt")"
state_case() {  # state_case name: a copy of the checkpoint dir whose newest state file is then changed by the caller
  rm -rf "$tmp/s_$1"; cp -r "$tmp/ck" "$tmp/s_$1"; echo "$tmp/s_$1/state_00000002.bin"
}
s=$(state_case magic);   patch "$s" 0 5
row "state bad magic"              "state_00000002.bin' has bad magic"  "$TRAIN" "${ck[@]}" -x 3 -o "$tmp/s_magic" -y 1
s=$(state_case version); patch "$s" 4 7
row "state unknown version"        "state_00000002.bin' has unsupported version 7" "$TRAIN" "${ck[@]}" -x 3 -o "$tmp/s_version" -y 1
s=$(state_case trunc);   head -c 600 "$s" > "$s.x" && mv "$s.x" "$s"
row "state header truncated"       "state_00000002.bin' is truncated"   "$TRAIN" "${ck[@]}" -x 3 -o "$tmp/s_trunc" -y 1
s=$(state_case short);   head -c 100000 "$s" > "$s.x" && mv "$s.x" "$s"
row "state body truncated"         "state_00000002.bin' is truncated: 100000 bytes" "$TRAIN" "${ck[@]}" -x 3 -o "$tmp/s_short" -y 1
s=$(state_case long);    printf 'xxxx' >> "$s"
row "state size disagrees"         "state_00000002.bin' has"            "$TRAIN" "${ck[@]}" -x 3 -o "$tmp/s_long" -y 1
s=$(state_case params);  patch "$s" 16 12345
row "state parameter count"        "state_00000002.bin' holds 12345 parameters" "$TRAIN" "${ck[@]}" -x 3 -o "$tmp/s_params" -y 1
s=$(state_case step);    patch "$s" 8 9
row "state step disagrees"         "state_00000002.bin' holds step 9"   "$TRAIN" "${ck[@]}" -x 3 -o "$tmp/s_step" -y 1
s=$(state_case gone);    rm "$s"
row "state file missing (DONE)"    "state_00000002.bin"                 "$TRAIN" "${ck[@]}" -x 3 -o "$tmp/s_gone" -y 1
s=$(state_case opt)
row "resume with another -opt"     "state_00000002.bin' holds adamw state but -opt is ivon" "$TRAIN" "${ck[@]}" -x 3 -o "$tmp/s_opt" -y 1 -opt ivon
s=$(state_case seed)
row "resume with another -seed"    "flag -seed"                         "$TRAIN" "${ck[@]}" -x 3 -o "$tmp/s_seed" -y 1 -seed 6
s=$(state_case bt)
row "resume with another -b"       "flags -b, -t, -d"                   "$TRAIN" "${ck[@]}" -x 3 -o "$tmp/s_bt" -y 1 -b 2

# --- eval_gpt2 / export_gpt2 (posterior evaluation and export) -----------------------------------------------
# $tmp/ck: the AdamW checkpoint above; $tmp/ick: an IVON one; $tmp/ick_noess: its state without the ess slots
ev=(-b 1 -t 8 -m 1)
adam_m=$tmp/ck/model_00000002.bin; adam_s=$tmp/ck/state_00000002.bin
row "eval: AdamW checkpoint with -S"  "flag -S: BMA needs sigma: state file '$adam_s' holds adamw state" "$EVAL" -c "$tmp/ck" "${ev[@]}" -o "$tmp/e.csv"
row "eval: model without state, -S"   "flag -S: BMA needs sigma: no state file"  "$EVAL" -e "$adam_m" "${ev[@]}" -o "$tmp/e.csv"
row "eval: state file missing"        "cannot open state file '$tmp/none_state.bin'" "$EVAL" -e "$adam_m" -st "$tmp/none_state.bin" "${ev[@]}" -o "$tmp/e.csv"
row "eval: model file missing"        "$tmp/none_model.bin"                      "$EVAL" -e "$tmp/none_model.bin" -S none "${ev[@]}"
row "eval: dir without checkpoint"    "flag -c: no finished checkpoint (DONE_ marker) in '$tmp'" "$EVAL" -c "$tmp" "${ev[@]}"
row "eval: no -c or -e"               "flag -c: a checkpoint dir (-c) or a model file (-e) is required" "$EVAL" "${ev[@]}"
row "eval: -c and -e"                 "flag -c: give a checkpoint dir (-c) or model and state files" "$EVAL" -c "$tmp/ck" -e "$adam_m" "${ev[@]}"
row "eval: unknown flag"              "flag -zz: unknown flag"                   "$EVAL" -c "$tmp/ck" -zz 1
row "eval: missing value"             "flag -m: missing value"                   "$EVAL" -c "$tmp/ck" -m
row "eval: non-integer -b"            "flag -b: 'x' is not an integer"           "$EVAL" -c "$tmp/ck" -b x
row "eval: bad sample list"           "flag -S: '1,x' is not a comma-separated list of sample counts" "$EVAL" -c "$tmp/ck" -S 1,x
row "eval: sample count 0"            "flag -S: '0' is not a comma-separated list" "$EVAL" -c "$tmp/ck" -S 0
row "eval: empty sample entry"        "flag -S: '2,,4' is not a comma-separated list" "$EVAL" -c "$tmp/ck" -S 2,,4
row "eval: negative temperature"      "flag -tau: '1,-1' is not a comma-separated list of temperatures > 0" "$EVAL" -c "$tmp/ck" -tau 1,-1
row "eval: -m 0"                      "flag -m: 0 val batches"                   "$EVAL" -c "$tmp/ck" -S none -m 0
row "eval: T beyond the context"      "flag -t: T = 2048 exceeds the model's 1024" "$EVAL" -c "$tmp/ck" -S none -t 2048
row "export: AdamW with -sigma 1"     "flag -sigma: state file '$adam_s' holds adamw state" "$EXPORT" -c "$tmp/ck" -od "$tmp/x_out" -sigma 1
row "export: no state, -sigma 1"      "flag -sigma: no state file"               "$EXPORT" -e "$adam_m" -od "$tmp/x_out" -sigma 1
row "export: state file missing"      "cannot open state file '$tmp/none_state.bin'" "$EXPORT" -e "$adam_m" -st "$tmp/none_state.bin" -od "$tmp/x_out" -sigma 1
row "export: no -od"                  "flag -od: an output dir is required"      "$EXPORT" -c "$tmp/ck"
row "export: bad -sigma"              "flag -sigma: '2' is not 0 or 1"           "$EXPORT" -c "$tmp/ck" -od "$tmp/x_out" -sigma 2
row "eval: -ess 0"                    "flag -ess: 0 is not -1 or > 0"            "$EVAL" -c "$tmp/ck" -ess 0
row "export: -pr1 < 0"                "flag -pr1: -2 is not -1 or >= 0"          "$EXPORT" -c "$tmp/ck" -od "$tmp/x_out" -pr1 -2
row "export: unknown flag"            "flag -frob: unknown flag"                 "$EXPORT" -frob 1
"$TRAIN" -e d2 -b 1 -t 8 -x 1 -n 1 -v 0 -s 0 -opt ivon -o "$tmp/ick" > "$tmp/ick.txt" 2>&1 ||
  echo "FAIL IVON checkpoint run for the eval rows: $(tail -n 2 "$tmp/ick.txt")"
cp -r "$tmp/ick" "$tmp/ick_noess"
for off in 296 300; do patch "$tmp/ick_noess/state_00000001.bin" $off 0; done  # extra slots 10, 11: ess
row "eval: state without ess"         "state file '$tmp/ick_noess/state_00000001.bin' records no ess" "$EVAL" -c "$tmp/ick_noess" "${ev[@]}"
row "export: state without ess"       "flag -sigma: state file '$tmp/ick_noess/state_00000001.bin' records no ess" "$EXPORT" -c "$tmp/ick_noess" -od "$tmp/x_out" -sigma 1
row "eval: no such checkpoint step"   "$tmp/ick/model_00000007.bin"   "$EVAL" -c "$tmp/ick" -cs 7 "${ev[@]}"
row "export: -od not creatable"       "flag -od: cannot create output dir '$tmp/none/sub'" "$EXPORT" -c "$tmp/ick" -od "$tmp/none/sub"

# --- tokenizer (-tk, read when sampling) -----------------------------------------------------------------------
cp_patch "$TOKENIZER" "$tmp/t_magic.bin" 0 1
cp_patch "$TOKENIZER" "$tmp/t_version.bin" 4 4
cp_trunc "$TOKENIZER" "$tmp/t_head.bin" 300
cp_trunc "$TOKENIZER" "$tmp/t_body.bin" 20000
cp_extra "$TOKENIZER" "$tmp/t_long.bin"
"$PY" - "$tmp/t_vocab.bin" <<'EOF'
import struct, sys
hdr = [0] * 256
hdr[0], hdr[1], hdr[2], hdr[3] = 20240328, 2, 100, 99
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<256i", *hdr))
    for i in range(100): f.write(bytes([1, 65 + i % 26]))
EOF
tk=(-e d2 -b 1 -t 8 -x 1 -v 0 -s 1)
row "tokenizer missing"            "$tmp/t_none.bin"                    "$TRAIN" "${tk[@]}" -tk "$tmp/t_none.bin"
row "tokenizer bad magic"          "$tmp/t_magic.bin' has bad magic"    "$TRAIN" "${tk[@]}" -tk "$tmp/t_magic.bin"
row "tokenizer unknown version"    "$tmp/t_version.bin' has unsupported version 4" "$TRAIN" "${tk[@]}" -tk "$tmp/t_version.bin"
row "tokenizer header truncated"   "$tmp/t_head.bin' is truncated"      "$TRAIN" "${tk[@]}" -tk "$tmp/t_head.bin"
row "tokenizer body truncated"     "$tmp/t_body.bin' is truncated"      "$TRAIN" "${tk[@]}" -tk "$tmp/t_body.bin"
row "tokenizer size disagrees"     "$tmp/t_long.bin': its 50257 tokens end 4 bytes before the 50000 merges" "$TRAIN" "${tk[@]}" -tk "$tmp/t_long.bin"
row "tokenizer vocab too small"    "$tmp/t_vocab.bin' (flag -tk) has 100 tokens"                "$TRAIN" "${tk[@]}" -tk "$tmp/t_vocab.bin"

# --- the text encoder (encode_gpt2: tokenizer merges, text) ---------------------------------------------------
# t_v2: the merges cut off (a version 2 file); t_mids / t_mbytes: the first merge with an id outside the vocab, or
# with a merged token whose bytes are not left + right
"$PY" - "$TOKENIZER" "$tmp" <<'EOF'
import struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
hdr = list(struct.unpack_from("<256i", data, 0))
pos = 1024
for i in range(hdr[2]): pos += 1 + data[pos]
v2 = bytearray(data[:pos]); struct.pack_into("<i", v2, 4, 2); struct.pack_into("<i", v2, 16, 0)
open(sys.argv[2] + "/t_v2.bin", "wb").write(v2)
d = bytearray(data); struct.pack_into("<i", d, pos, 60000); open(sys.argv[2] + "/t_mids.bin", "wb").write(d)
d = bytearray(data); struct.pack_into("<i", d, pos + 8, 65); open(sys.argv[2] + "/t_mbytes.bin", "wb").write(d)
open(sys.argv[2] + "/utf8.txt", "wb").write(b"fine \xc3\x28 broken")
open(sys.argv[2] + "/eot.txt", "wb").write(b"one<|endoftext|>two")
open(sys.argv[2] + "/ok.txt", "wb").write(b"hello world")
EOF
row "encoder: tokenizer without merges" "$tmp/t_v2.bin' has no merges (version 2)" "$ENCODE" -i "$tmp/ok.txt" -o "$tmp/x.bin" -tk "$tmp/t_v2.bin"
row "encoder: merge id outside vocab" "$tmp/t_mids.bin': merge 0 (60000," "$ENCODE" -i "$tmp/ok.txt" -o "$tmp/x.bin" -tk "$tmp/t_mids.bin"
row "encoder: merge bytes disagree"  "$tmp/t_mbytes.bin': merge 0 says"   "$ENCODE" -i "$tmp/ok.txt" -o "$tmp/x.bin" -tk "$tmp/t_mbytes.bin"
row "encoder: invalid UTF-8"         "text file '$tmp/utf8.txt' is not valid UTF-8 at byte 5" "$ENCODE" -i "$tmp/utf8.txt" -o "$tmp/x.bin"
row "encoder: <|endoftext|> in text" "text file '$tmp/eot.txt' contains <|endoftext|> at byte 3: pass -special 1" "$ENCODE" -i "$tmp/eot.txt" -o "$tmp/x.bin"
row "encoder: text file missing"     "$tmp/none.txt"                     "$ENCODE" -i "$tmp/none.txt" -o "$tmp/x.bin"
row "encoder: no -i"                 "flag -i: the text file to encode is required" "$ENCODE" -o "$tmp/x.bin"
row "encoder: bad -special"          "flag -special: '2' is not 0 or 1"  "$ENCODE" -i "$tmp/ok.txt" -o "$tmp/x.bin" -special 2
row "encoder: unknown flag"          "flag -zz: unknown flag"            "$ENCODE" -zz 1
row "encoder: output dir missing"    "$tmp/nodir/x.bin.tmp"              "$ENCODE" -i "$tmp/ok.txt" -o "$tmp/nodir/x.bin"

# --- sample_gpt2: checkpoints without a posterior, prompts, documents, flags ---------------------------------------
# an AdamW checkpoint (1 step); a prompt of 1100 tokens for the d2 model's context of 1024; a document of 3 tokens
"$SAMPLE_TRAIN" -e d2 -b 1 -t 8 -x 1 -v 0 -s 0 -n 1 -o "$tmp/adamw_ck" > /dev/null 2>&1
long_prompt=$(printf ' a%.0s' $(seq 1 1100))
printf '%s' "$long_prompt" > "$tmp/long_prompt.txt"
printf 'one two three' > "$tmp/short.txt"
mkdir -p "$tmp/empty_ck"
cp_trunc "$VAL_SHARD" "$tmp/s_trunc.bin" 2000
sm=(-e "$REF_MODEL")
row "sample: -bma with a model file"     "flag -bma: 4 posterior samples need sigma: no state file" "$SAMPLE" "${sm[@]}" -bma 4
row "sample: -bma with an AdamW checkpoint" "flag -bma: 2 posterior samples need sigma: state file '$tmp/adamw_ck/state_00000001.bin' holds adamw state" "$SAMPLE" -o "$tmp/adamw_ck" -bma 2
row "sample: -tau with a model file"     "flag -tau: a posterior temperature needs sigma: no state file" "$SAMPLE" "${sm[@]}" -tau 0.5
row "sample: prompt longer than the context" "flag -p: the prompt is 1101 tokens with the leading EOT, the model's context is 1024" "$SAMPLE" "${sm[@]}" -p "$long_prompt"
row "sample: prompt file longer than the context" "flag -pf: the prompt is 1101 tokens" "$SAMPLE" "${sm[@]}" -pf "$tmp/long_prompt.txt"
row "sample: prompt file invalid UTF-8"  "flag -pf: prompt file '$tmp/utf8.txt' is not valid UTF-8 at byte 5" "$SAMPLE" "${sm[@]}" -pf "$tmp/utf8.txt"
row "sample: prompt with <|endoftext|>"  "flag -p: the prompt contains <|endoftext|> at byte 3: pass -special 1" "$SAMPLE" "${sm[@]}" -p "one<|endoftext|>two"
row "sample: no -e and no -o"            "flag -e: give a model file (-e) or a checkpoint dir (-o)" "$SAMPLE" -p hi
row "sample: both -e and -o"             "flag -e: give a model file (-e) or a checkpoint dir (-o)" "$SAMPLE" "${sm[@]}" -o "$tmp/adamw_ck"
row "sample: -o without a checkpoint"    "flag -o: no complete checkpoint (DONE_* file) in '$tmp/empty_ck'" "$SAMPLE" -o "$tmp/empty_ck"
row "sample: -cs of a missing step"      "flag -cs: no complete checkpoint of step 7 in '$tmp/adamw_ck'" "$SAMPLE" -o "$tmp/adamw_ck" -cs 7
row "sample: -cs without -o"             "flag -cs: a checkpoint step needs -o DIR" "$SAMPLE" "${sm[@]}" -cs 1
row "sample: model file missing"         "$tmp/m_none.bin"                   "$SAMPLE" -e "$tmp/m_none.bin"
row "sample: model file bad magic"       "$tmp/m_magic.bin' has bad magic"   "$SAMPLE" -e "$tmp/m_magic.bin"
row "sample: -p and -i"                  "flag -p: give at most one of -p, -pf and -i" "$SAMPLE" "${sm[@]}" -p hi -i "$tmp/short.txt"
row "sample: unknown flag"               "flag -zz: unknown flag"            "$SAMPLE" "${sm[@]}" -zz 1
row "sample: missing value"              "flag -g: missing value"            "$SAMPLE" "${sm[@]}" -g
row "sample: -g 0"                       "flag -g: '0' is not a number in [1, 1.04858e+06]" "$SAMPLE" "${sm[@]}" -g 0
row "sample: -topp 0"                    "flag -topp: '0' is not a number"   "$SAMPLE" "${sm[@]}" -topp 0
row "sample: -temp -1"                   "flag -temp: '-1' is not a number"  "$SAMPLE" "${sm[@]}" -temp -1
row "sample: bad -show"                  "flag -show: 'loud' is not one of auto|shade|brackets|plain" "$SAMPLE" "${sm[@]}" -show loud
row "sample: -i shorter than one batch"  "flag -i: '$tmp/short.txt' has 3 tokens, fewer than one batch of B*T+1 = 65" "$SAMPLE" "${sm[@]}" -i "$tmp/short.txt" -t 64
row "sample: -t over the context"        "flag -t: window length 2000 must be in 1..1024" "$SAMPLE" "${sm[@]}" -i "$VAL_SHARD" -t 2000
row "sample: -i text invalid UTF-8"      "text file '$tmp/utf8.txt' is not valid UTF-8 at byte 5" "$SAMPLE" "${sm[@]}" -i "$tmp/utf8.txt"
row "sample: -i shard truncated"         "token shard '$tmp/s_trunc.bin' has 2000 bytes, its header says 115079 tokens" "$SAMPLE" "${sm[@]}" -i "$tmp/s_trunc.bin"
row "sample: -i missing"                 "$tmp/none.txt"                     "$SAMPLE" "${sm[@]}" -i "$tmp/none.txt"
row "sample: tokenizer missing"          "$tmp/t_none.bin"                   "$SAMPLE" "${sm[@]}" -tk "$tmp/t_none.bin"
row "sample: -ess 0"                      "flag -ess: 0 must be > 0"          "$SAMPLE" -o "$tmp/adamw_ck" -ess 0
row "sample: -pr -0.5"                    "flag -pr: -0.5 must be >= 0"       "$SAMPLE" "${sm[@]}" -pr -0.5
row "sample: -jl not writable"          "$tmp/nodir/x.jl"                   "$SAMPLE" "${sm[@]}" -jl "$tmp/nodir/x.jl"

# --- output directory (-o), checked at startup -----------------------------------------------------------------
printf 'x' > "$tmp/plainfile"
row "-o under a regular file"      "flag -o: cannot create output dir '$tmp/plainfile/sub'" "$TRAIN" "${base[@]}" -o "$tmp/plainfile/sub"
row "-o is a regular file"         "flag -o: cannot create output dir '$tmp/plainfile'" "$TRAIN" "${base[@]}" -o "$tmp/plainfile"
if [ "$(id -u)" -ne 0 ]; then
  mkdir -p "$tmp/ro"; chmod 555 "$tmp/ro"
  row "-o not writable"            "flag -o: cannot write in output dir '$tmp/ro'" "$TRAIN" "${base[@]}" -o "$tmp/ro"
  row "-o not creatable"           "flag -o: cannot create output dir '$tmp/ro/sub'" "$TRAIN" "${base[@]}" -o "$tmp/ro/sub"
else
  echo "note: running as root, the permission rows (read-only -o) are left out"
fi

# --- test-only environment variables ---------------------------------------------------------------------------
row "IVON_TEST_NAN_STEP malformed" "environment variable IVON_TEST_NAN_STEP" env IVON_TEST_NAN_STEP=3x "$TRAIN" "${base[@]}"
row "IVON_TEST_NAN_STEP count 0"   "environment variable IVON_TEST_NAN_STEP" env IVON_TEST_NAN_STEP=3:0 "$TRAIN" "${base[@]}"
row "IVON_TEST_SAVE_SLEEP_MS < 0"  "environment variable IVON_TEST_SAVE_SLEEP_MS" env IVON_TEST_SAVE_SLEEP_MS=-5 "$TRAIN" "${base[@]}"

# --- test_gpt2 reference files ---------------------------------------------------------------------------------
cp_patch "$REF_DEBUG" "$tmp/d_magic.bin" 0 3
cp_trunc "$REF_DEBUG" "$tmp/d_trunc.bin" 2000
cp_extra "$REF_DEBUG" "$tmp/d_long.bin"
cp_patch "$REF_OPT" "$tmp/o_magic.bin" 0 3
cp_trunc "$REF_OPT" "$tmp/o_trunc.bin" 5000
row "test_gpt2 debug state missing"    "$tmp/d_none.bin"                   "$TESTG" "$REF_MODEL" "$tmp/d_none.bin"
row "test_gpt2 debug state bad magic"  "$tmp/d_magic.bin' has bad magic"   "$TESTG" "$REF_MODEL" "$tmp/d_magic.bin"
row "test_gpt2 debug state truncated"  "$tmp/d_trunc.bin' has 2000 bytes"  "$TESTG" "$REF_MODEL" "$tmp/d_trunc.bin"
row "test_gpt2 debug state too long"   "$tmp/d_long.bin' has"              "$TESTG" "$REF_MODEL" "$tmp/d_long.bin"
row "test_gpt2 model bad magic"        "$tmp/m_magic.bin' has bad magic"   "$TESTG" "$tmp/m_magic.bin" "$REF_DEBUG"
row "test_gpt2 --opt state bad magic"  "$tmp/o_magic.bin' has bad magic"   "$TESTG" --opt "$REF_MODEL" "$tmp/o_magic.bin"
row "test_gpt2 --opt state truncated"  "$tmp/o_trunc.bin' has 5000 bytes"  "$TESTG" --opt "$REF_MODEL" "$tmp/o_trunc.bin"
row "test_gpt2 unknown option"         "--frobnicate"                      "$TESTG" --frobnicate "$REF_MODEL" "$REF_DEBUG"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
