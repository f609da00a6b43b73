# ivon.c build. `make test` sets up, builds and runs every test; `make quickstart` trains the CPU
# quickstart model on the Austen corpus; `make bench` prints CPU speed figures.
CC ?= gcc
CFLAGS ?= -O3 -march=native
CFLAGS += -std=gnu11 -fno-math-errno -Wall -Wextra
OMPFLAGS ?= -fopenmp
LDLIBS = -lm
# Debian's interpreter has python3-torch / python3-numpy / python3-regex; the first python3 on PATH may not
PYTHON ?= /usr/bin/python3

HEADERS := $(wildcard llmc/*.h)
BIN := dev/test/bin
DATA := dev/data/austen
REF := ref
TRAIN_SHARD := $(DATA)/austen_train.bin
VAL_SHARD := $(DATA)/austen_val.bin

# reference settings for test_gpt2 (written into the debug state; the test reads them from there)
REF_ARGS := --batch 4 --seq 64 --lr 1e-3 --weight-decay 0.1 --seed 42

.PHONY: all setup setup-test data ref test quickstart bench clean

all: train_gpt2 test_gpt2

train_gpt2: train_gpt2.c $(HEADERS)
	$(CC) $(CFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS)

# single-threaded build without OpenMP
train_gpt2_noomp: train_gpt2.c $(HEADERS)
	$(CC) $(CFLAGS) -Wno-unknown-pragmas -o $@ $< $(LDLIBS)

test_gpt2: test_gpt2.c train_gpt2.c $(HEADERS)
	$(CC) $(CFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS)

$(BIN)/test_gpt2_noomp: test_gpt2.c train_gpt2.c $(HEADERS) | $(BIN)
	$(CC) $(CFLAGS) -Wno-unknown-pragmas -o $@ $< $(LDLIBS)

$(BIN)/test_llmc: dev/test/test_llmc.c $(HEADERS) | $(BIN)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

$(BIN)/test_gemm: dev/test/test_gemm.c train_gpt2.c $(HEADERS) | $(BIN)
	$(CC) $(CFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS)

$(BIN)/bench_cpu: dev/bench/bench_cpu.c train_gpt2.c $(HEADERS) | $(BIN)
	$(CC) $(CFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS)

$(BIN):
	mkdir -p $@

# --- setup and data (idempotent) ---
setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --with-torch

data: setup
	$(PYTHON) dev/data/prepro_austen.py

# --- PyTorch reference outputs (rebuilt when the reference or the data changes) ---
$(REF)/gpt2_d2_debug_state.bin: train_gpt2.py $(VAL_SHARD)
	$(PYTHON) train_gpt2.py --model d2 --steps 10 $(REF_ARGS) --val $(VAL_SHARD) --out $(REF)

$(REF)/gpt2_d12_debug_state.bin: train_gpt2.py $(VAL_SHARD)
	$(PYTHON) train_gpt2.py --model d12 --steps 3 $(REF_ARGS) --val $(VAL_SHARD) --out $(REF)

ref: setup-test data
	$(MAKE) $(REF)/gpt2_d2_debug_state.bin $(REF)/gpt2_d12_debug_state.bin

# --- tests ---
TEST_BINS := train_gpt2 train_gpt2_noomp test_gpt2 $(BIN)/test_gpt2_noomp $(BIN)/test_llmc $(BIN)/test_gemm

test: ref
	$(MAKE) $(TEST_BINS)
	bash dev/test/run_all.sh \
	  "$(BIN)/test_llmc" \
	  "$(BIN)/test_gemm" \
	  "$(PYTHON) dev/test/test_tokenizer.py" \
	  "./test_gpt2 $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_debug_state.bin" \
	  "bash dev/test/expect_fail.sh ./test_gpt2 --perturb $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_debug_state.bin" \
	  "OMP_NUM_THREADS=1 $(BIN)/test_gpt2_noomp $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_debug_state.bin" \
	  "./test_gpt2 $(REF)/gpt2_d12.bin $(REF)/gpt2_d12_debug_state.bin" \
	  "bash dev/test/test_train.sh"

# --- quickstart: d4 on Austen, a few minutes on 2 cores ---
QUICKSTART_ARGS ?= -e d4 -b 8 -t 128 -x 300 -l 1e-3 -u 20 -k cosine -q 0.1 -v 50 -m 20 -s 100 -g 64 -o log_quickstart
quickstart: data train_gpt2
	./train_gpt2 $(QUICKSTART_ARGS)

bench: $(BIN)/bench_cpu
	$(BIN)/bench_cpu

clean:
	rm -rf train_gpt2 train_gpt2_noomp test_gpt2 $(BIN) build
