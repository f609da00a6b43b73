# ivon.c build. `make test` sets up, builds and runs every test; `make quickstart` trains the CPU
# quickstart model on the Austen corpus; `make bench` prints CPU speed figures.
CC ?= gcc
CFLAGS ?= -O3 -march=native
# -ffp-contract=off: no FMA contraction, so the IVON arithmetic rounds exactly as written (spec §2.9)
CFLAGS += -std=gnu11 -fno-math-errno -ffp-contract=off -Wall -Wextra
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

.PHONY: all setup setup-test data ref test quickstart compare bench clean train_gpt2_checks

# document-level uncertainty (sample_gpt2 -i, BMA over IVON posterior samples) of Austen's val novel vs the King James
# Bible (Debian bible-kjv, installed by scripts/setup.sh --with-demo) vs shuffled Austen tokens; trains a small d2
# IVON checkpoint in build/demo/ck first (doc/sample.md). Not part of `make test`.
.PHONY: uncertainty-demo
uncertainty-demo: train_gpt2 sample_gpt2
	bash scripts/uncertainty_demo.sh

all: train_gpt2 test_gpt2

train_gpt2: train_gpt2.c $(HEADERS)
	$(CC) $(CFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS)

# GPT-2 BPE encoder (llmc/bpe.h, PCRE2: Debian libpcre2-dev): text file -> token shard
encode_gpt2: encode_gpt2.c $(HEADERS)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS) -lpcre2-8

# generation with a KV cache and per-token uncertainty from the IVON posterior, document uncertainty (doc/sample.md)
sample_gpt2: sample_gpt2.c train_gpt2.c $(HEADERS)
	$(CC) $(CFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS) -lpcre2-8

# posterior evaluation (doc/evaluate.md): BMA NLL / accuracy / ECE against sample counts and temperatures
eval_gpt2: eval_gpt2.c train_gpt2.c $(HEADERS)
	$(CC) $(CFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS)

# Hugging Face GPT-2 export (doc/evaluate.md): model.safetensors, config.json, sigma.safetensors
export_gpt2: export_gpt2.c $(HEADERS)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

# single-threaded build without OpenMP
train_gpt2_noomp: train_gpt2.c $(HEADERS)
	$(CC) $(CFLAGS) -Wno-unknown-pragmas -o $@ $< $(LDLIBS)

# data-parallel CPU trainer: the same source over MPI (Debian: libopenmpi-dev, openmpi-bin), started with
# `mpirun -np N ./train_gpt2mpi ...`
MPICC ?= mpicc
train_gpt2mpi: train_gpt2.c $(HEADERS)
	$(MPICC) $(CFLAGS) $(OMPFLAGS) -DUSE_MPI -o $@ $< $(LDLIBS)

# trainer with the IVON/PoCo invariant checks of every update (h + delta > 0, (h' + delta) >= (h + delta) / 2,
# finite sigma, |dm| <= lr_eff r); exits with an error line on a violation
train_gpt2_checks: $(BIN)/train_gpt2_checks

$(BIN)/train_gpt2_checks: train_gpt2.c $(HEADERS) | $(BIN)
	$(CC) $(CFLAGS) $(OMPFLAGS) -DIVON_CHECKS -o $@ $< $(LDLIBS)

test_gpt2: test_gpt2.c train_gpt2.c $(HEADERS)
	$(CC) $(CFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS)

$(BIN)/test_gpt2_noomp: test_gpt2.c train_gpt2.c $(HEADERS) | $(BIN)
	$(CC) $(CFLAGS) -Wno-unknown-pragmas -o $@ $< $(LDLIBS)

$(BIN)/test_llmc: dev/test/test_llmc.c $(HEADERS) | $(BIN)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

$(BIN)/test_sample: dev/test/test_sample.c sample_gpt2.c train_gpt2.c $(HEADERS) | $(BIN)
	$(CC) $(CFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS) -lpcre2-8

$(BIN)/test_noise: dev/test/test_noise.c $(HEADERS) | $(BIN)
	$(CC) $(CFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS)

# the same noise source built with FMA contraction: the noise must not depend on it
$(BIN)/test_noise_fc: dev/test/test_noise.c $(HEADERS) | $(BIN)
	$(CC) $(CFLAGS) -ffp-contract=fast $(OMPFLAGS) -o $@ $< $(LDLIBS)

$(BIN)/test_optim: dev/test/test_optim.c train_gpt2.c $(HEADERS) | $(BIN)
	$(CC) $(CFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS)

$(BIN)/test_gemm: dev/test/test_gemm.c train_gpt2.c $(HEADERS) | $(BIN)
	$(CC) $(CFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS)

$(BIN)/bench_cpu: dev/bench/bench_cpu.c train_gpt2.c $(HEADERS) | $(BIN)
	$(CC) $(CFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS)

$(BIN):
	mkdir -p $@

# --- CUDA (one GPU per process). `make cuda` builds every variant, `make cuda-check` only compiles them (no GPU
# needed).
NVCC ?= /usr/local/cuda/bin/nvcc
GPU_ARCH ?= -gencode arch=compute_90,code=[sm_90,compute_90]
# no --use_fast_math: the fp32 build is compared tightly against PyTorch
NVCCFLAGS ?= -O3
# PRECISION=FP32 makes train_gpt2cu / test_gpt2cu all-fp32 too (run `make clean` when switching)
PRECISION ?= BF16
ifeq ($(PRECISION),FP32)
PRECISION_FLAGS := -DENABLE_FP32
else ifeq ($(PRECISION),BF16)
PRECISION_FLAGS :=
else
$(error PRECISION must be BF16 or FP32, not '$(PRECISION)')
endif
NVCCFLAGS += -std=c++17 $(GPU_ARCH) -Xcompiler -Wall,-Wextra
# Data parallel (llmc/cuda_dist.h): NCCL always (NCCL_HOME=... if it is not in the CUDA or system paths); MPI when
# mpicc is on PATH (Open MPI: its --showme:compile / --showme:link flags), off with NO_MPI=1 (then -dm tcp|fs only).
# nvcc takes the -I/-D/-L/-l words as they are, -Wl,... through -Xlinker, any other word through -Xcompiler.
# Run `make clean` after changing NO_MPI (the binaries depend on the sources only).
NO_MPI ?= 0
CUDA_MPICC := $(or $(MPICC),mpicc)
CUDA_COMMA := ,
CUDA_DIST_FLAGS := -DUSE_NCCL
CUDA_DIST_LIBS := -lnccl
ifneq ($(NCCL_HOME),)
CUDA_DIST_FLAGS += -I$(NCCL_HOME)/include
CUDA_DIST_LIBS := -L$(NCCL_HOME)/lib -lnccl
endif
ifeq ($(NO_MPI),1)
CUDA_MPI_STATUS := MPI off (NO_MPI=1)
else ifeq ($(shell command -v $(CUDA_MPICC) 2>/dev/null),)
CUDA_MPI_STATUS := MPI off ($(CUDA_MPICC) not found)
else
CUDA_MPI_COMPILE := $(shell $(CUDA_MPICC) --showme:compile 2>/dev/null)
CUDA_MPI_LINK := $(shell $(CUDA_MPICC) --showme:link 2>/dev/null)
ifeq ($(strip $(CUDA_MPI_LINK)),)
CUDA_MPI_STATUS := MPI off ($(CUDA_MPICC) --showme:link printed nothing; Open MPI expected)
else
CUDA_MPI_STATUS := MPI on ($(CUDA_MPICC))
CUDA_DIST_FLAGS += -DUSE_MPI $(foreach w,$(CUDA_MPI_COMPILE),$(if $(filter -I% -D%,$(w)),$(w),-Xcompiler=$(w)))
CUDA_DIST_LIBS += $(foreach w,$(CUDA_MPI_LINK),$(if $(filter -L% -l%,$(w)),$(w),$(if \
  $(filter -Wl$(CUDA_COMMA)%,$(w)),-Xlinker=$(patsubst -Wl$(CUDA_COMMA)%,%,$(w)),-Xcompiler=$(w))))
endif
endif
NVLDLIBS = -lcublas -lcublasLt $(CUDA_DIST_LIBS)
CUDA_SRC := train_gpt2.cu $(HEADERS)
CUDA_BIN := build/cuda

.PHONY: cuda cuda-check train_gpt2fp32cu test_gpt2fp32cu train_gpt2cu_cudnn
CUDA_TARGETS := train_gpt2cu test_gpt2cu $(CUDA_BIN)/train_gpt2fp32cu $(CUDA_BIN)/test_gpt2fp32cu
cuda: $(CUDA_TARGETS)
	@echo "note: USE_CUDNN=1 builds (make train_gpt2cu_cudnn) stop with #error: cuDNN attention is not implemented yet"

# compile-only check of every variant (CI without a GPU); the cuDNN variant must fail with its #error
# and the PTX of the optimizer kernels (both precisions) free of contractible operations (dev/test/check_ptx_rounding.py)
cuda-check: $(CUDA_TARGETS) cuda-lab | $(CUDA_BIN)
	@echo "cuda-check: compiled $(CUDA_TARGETS) with NCCL, $(CUDA_MPI_STATUS); the kernel lab in build/cuda/lab"
	$(NVCC) $(NVCCFLAGS) $(CUDA_DIST_FLAGS) -ptx -o $(CUDA_BIN)/train_gpt2_bf16.ptx train_gpt2.cu
	$(NVCC) $(NVCCFLAGS) -DENABLE_FP32 $(CUDA_DIST_FLAGS) -ptx -o $(CUDA_BIN)/train_gpt2_fp32.ptx train_gpt2.cu
	$(PYTHON) dev/test/check_ptx_rounding.py $(CUDA_BIN)/train_gpt2_bf16.ptx
	$(PYTHON) dev/test/check_ptx_rounding.py $(CUDA_BIN)/train_gpt2_fp32.ptx
	@if $(MAKE) -s train_gpt2cu_cudnn >/dev/null 2>&1; then echo "cuda-check: the USE_CUDNN=1 build should stop with #error"; exit 1; \
	else echo "cuda-check: USE_CUDNN=1 build stops with its #error (not implemented yet), as intended"; fi

train_gpt2cu: $(CUDA_SRC)
	$(NVCC) $(NVCCFLAGS) $(PRECISION_FLAGS) $(CUDA_DIST_FLAGS) -o $@ $< $(NVLDLIBS)

test_gpt2cu: test_gpt2.cu $(CUDA_SRC)
	$(NVCC) $(NVCCFLAGS) $(PRECISION_FLAGS) $(CUDA_DIST_FLAGS) -o $@ $< $(NVLDLIBS)

$(CUDA_BIN)/train_gpt2fp32cu: $(CUDA_SRC) | $(CUDA_BIN)
	$(NVCC) $(NVCCFLAGS) -DENABLE_FP32 $(CUDA_DIST_FLAGS) -o $@ $< $(NVLDLIBS)

$(CUDA_BIN)/test_gpt2fp32cu: test_gpt2.cu $(CUDA_SRC) | $(CUDA_BIN)
	$(NVCC) $(NVCCFLAGS) -DENABLE_FP32 $(CUDA_DIST_FLAGS) -o $@ $< $(NVLDLIBS)

train_gpt2fp32cu: $(CUDA_BIN)/train_gpt2fp32cu
test_gpt2fp32cu: $(CUDA_BIN)/test_gpt2fp32cu

# data-parallel checks on a GPU machine (1-rank NCCL path = plain path bit for bit; 2 ranks with 2+ GPUs)
.PHONY: test-dist-gpu
test-dist-gpu: train_gpt2cu $(CUDA_BIN)/train_gpt2fp32cu data
	bash dev/test/test_dist_gpu.sh

# cuDNN flash attention (USE_CUDNN=1): not implemented yet, the source stops with #error
train_gpt2cu_cudnn: $(CUDA_SRC) | $(CUDA_BIN)
	$(NVCC) $(NVCCFLAGS) $(CUDA_DIST_FLAGS) -DUSE_CUDNN -o $(CUDA_BIN)/$@ $< $(NVLDLIBS) -lcudnn

$(CUDA_BIN):
	mkdir -p $@

# --- CPU backend (dev/cuda_cpu): the same CUDA sources built as CPU programs that take the same flags and files.
# cu2cpp.py rewrites the kernel launches of each .cu file into build/cuda_cpu/src/ (#line keeps the source's names),
# then g++ compiles it with dev/cuda_cpu/include (runtime, cuBLAS/cuBLASLt, NCCL from their documented semantics)
# first on the include path. Thread blocks run as fibers (Boost.Context), blocks on the OpenMP threads.
# `make cuda-cpu` builds build/cuda_cpu/{train,test}_gpt2{,fp32}cu; CUDA_CPU_SCHEDULE=forward|reverse|shuffle[:seed]
# picks the thread order at run time. MPI as for the GPU build (mpirun -np 2 runs the real NCCL code paths).
CUDA_CPU := build/cuda_cpu
CUDA_CPU_INC := $(wildcard dev/cuda_cpu/include/*.h) llmc/sanitize.h
CUDA_CPU_CXX ?= g++
CUDA_CPU_OPT ?= -O2 -march=native
CUDA_CPU_CXXFLAGS = -std=c++17 $(CUDA_CPU_OPT) -fno-math-errno -ffp-contract=off -fopenmp -Wall -Wextra \
                    -I dev/cuda_cpu/include -I . -DUSE_NCCL
CUDA_CPU_LIBS = -lboost_context -lm
ifneq ($(CUDA_MPI_LINK),)
ifneq ($(NO_MPI),1)
CUDA_CPU_CXXFLAGS += -DUSE_MPI $(CUDA_MPI_COMPILE)
CUDA_CPU_LIBS += $(CUDA_MPI_LINK)
endif
endif
CUDA_CPU_DEPS := $(HEADERS) $(CUDA_CPU_INC)
CUDA_CPU_TARGETS := $(CUDA_CPU)/train_gpt2cu $(CUDA_CPU)/train_gpt2fp32cu $(CUDA_CPU)/test_gpt2cu \
                    $(CUDA_CPU)/test_gpt2fp32cu $(CUDA_CPU)/test_exec $(CUDA_CPU)/test_mma $(CUDA_CPU)/test_cublas \
                    $(CUDA_CPU)/test_nccl $(CUDA_CPU)/test_attention $(CUDA_CPU)/test_attention_fp32

.PHONY: cuda-cpu
cuda-cpu: setup $(CUDA_CPU_TARGETS)

# the launches must all be in .cu files (cu2cpp.py rewrites those; llmc headers are used as they are)
$(CUDA_CPU)/src/%.cu: %.cu dev/cuda_cpu/cu2cpp.py
	@mkdir -p $(@D)
	@if grep -l '<<<' llmc/*.h 2>/dev/null; then echo "error: kernel launches in llmc headers: move them to a .cu file" >&2; exit 1; fi
	$(PYTHON) dev/cuda_cpu/cu2cpp.py $< $@

$(CUDA_CPU)/train_gpt2cu: $(CUDA_CPU)/src/train_gpt2.cu $(CUDA_CPU_DEPS)
	$(CUDA_CPU_CXX) $(CUDA_CPU_CXXFLAGS) -x c++ $< -o $@ $(CUDA_CPU_LIBS)
$(CUDA_CPU)/train_gpt2fp32cu: $(CUDA_CPU)/src/train_gpt2.cu $(CUDA_CPU_DEPS)
	$(CUDA_CPU_CXX) $(CUDA_CPU_CXXFLAGS) -DENABLE_FP32 -x c++ $< -o $@ $(CUDA_CPU_LIBS)
$(CUDA_CPU)/test_gpt2cu: $(CUDA_CPU)/src/test_gpt2.cu $(CUDA_CPU)/src/train_gpt2.cu $(CUDA_CPU_DEPS)
	$(CUDA_CPU_CXX) $(CUDA_CPU_CXXFLAGS) -x c++ $< -o $@ $(CUDA_CPU_LIBS)
$(CUDA_CPU)/test_gpt2fp32cu: $(CUDA_CPU)/src/test_gpt2.cu $(CUDA_CPU)/src/train_gpt2.cu $(CUDA_CPU_DEPS)
	$(CUDA_CPU_CXX) $(CUDA_CPU_CXXFLAGS) -DENABLE_FP32 -x c++ $< -o $@ $(CUDA_CPU_LIBS)
$(CUDA_CPU)/test_exec: $(CUDA_CPU)/src/dev/cuda_cpu/test_exec.cu $(CUDA_CPU_INC)
	$(CUDA_CPU_CXX) $(CUDA_CPU_CXXFLAGS) -x c++ $< -o $@ $(CUDA_CPU_LIBS)
# train_gpt2.cu's flash attention kernels alone against an fp64 reference, bf16 and fp32 builds
$(CUDA_CPU)/test_attention: $(CUDA_CPU)/src/dev/cuda_cpu/test_attention.cu $(CUDA_CPU)/src/train_gpt2.cu $(CUDA_CPU_DEPS)
	$(CUDA_CPU_CXX) $(CUDA_CPU_CXXFLAGS) -x c++ $< -o $@ $(CUDA_CPU_LIBS)
$(CUDA_CPU)/test_attention_fp32: $(CUDA_CPU)/src/dev/cuda_cpu/test_attention.cu $(CUDA_CPU)/src/train_gpt2.cu $(CUDA_CPU_DEPS)
	$(CUDA_CPU_CXX) $(CUDA_CPU_CXXFLAGS) -DENABLE_FP32 -x c++ $< -o $@ $(CUDA_CPU_LIBS)
# nvcuda::wmma fragments (mma.h) against a host matmul, and their misuses
$(CUDA_CPU)/test_mma: $(CUDA_CPU)/src/dev/cuda_cpu/test_mma.cu $(CUDA_CPU_INC)
	$(CUDA_CPU_CXX) $(CUDA_CPU_CXXFLAGS) -x c++ $< -o $@ $(CUDA_CPU_LIBS)
# the library headers on their own: cuBLAS/cuBLASLt against a model of their numerics and a double reference over 1-3
# threads (`test_cublas --bench` times the LM-head GEMMs); NCCL on 1-3 forked ranks with its failure paths
$(CUDA_CPU)/test_cublas: dev/cuda_cpu/test_cublas.cpp dev/cuda_cpu/test_util.h $(CUDA_CPU_INC)
	@mkdir -p $(@D)
	$(CUDA_CPU_CXX) -std=c++17 -O3 -march=native -ffp-contract=off -fopenmp -Wall -Wextra -I dev/cuda_cpu/include $< -o $@
$(CUDA_CPU)/test_nccl: dev/cuda_cpu/test_nccl.cpp dev/cuda_cpu/test_util.h $(CUDA_CPU_INC)
	@mkdir -p $(@D)
	$(CUDA_CPU_CXX) -std=c++17 -O2 -Wall -Wextra -I dev/cuda_cpu/include $< -o $@ -pthread

# --- kernel lab (dev/cuda, doc/kernel_lab.md): one program per optimizer kernel family, validated bit for bit
# against the CPU passes of llmc/optim.h and benchmarked over versions and block sizes. `make cuda-lab`: nvcc builds
# in build/cuda/lab/ (dev/cuda/Makefile); `make cuda-lab-cpu`: CPU-backend builds in build/cuda_cpu/dev/cuda/.
LAB_NAMES := adamw ivon_sample ivon_accumulate ivon_update poco_update
LAB_CPU_TARGETS := $(addprefix $(CUDA_CPU)/dev/cuda/,$(LAB_NAMES) $(addsuffix fp32,$(LAB_NAMES)))

.PHONY: cuda-lab cuda-lab-cpu
cuda-lab:
	$(MAKE) -C dev/cuda NVCC="$(NVCC)" GPU_ARCH="$(GPU_ARCH)"

cuda-lab-cpu: $(LAB_CPU_TARGETS)

# keep the rewritten sources (error lines point into them through #line)
.PRECIOUS: $(CUDA_CPU)/src/dev/cuda/%.cu

# the one-command check on a GPU machine (dev/gpu/check.sh): builds, CUDA tests against ref/, the kernel lab in
# validate and bench mode, train_gpt2cu d12 throughput for adamw/ivon/poco; report in $$OUT/gpu_check.md or
# build/gpu_check.md. `make test` runs it on the CPU backend (--cpu-backend, tiny sizes).
.PHONY: gpu-check
gpu-check:
	bash dev/gpu/check.sh

$(CUDA_CPU)/dev/cuda/%fp32: $(CUDA_CPU)/src/dev/cuda/%.cu dev/cuda/common.h $(CUDA_CPU_DEPS)
	@mkdir -p $(@D)
	$(CUDA_CPU_CXX) $(CUDA_CPU_CXXFLAGS) -DENABLE_FP32 -I dev/cuda -x c++ $< -o $@ $(CUDA_CPU_LIBS)
$(CUDA_CPU)/dev/cuda/%: $(CUDA_CPU)/src/dev/cuda/%.cu dev/cuda/common.h $(CUDA_CPU_DEPS)
	@mkdir -p $(@D)
	$(CUDA_CPU_CXX) $(CUDA_CPU_CXXFLAGS) -I dev/cuda -x c++ $< -o $@ $(CUDA_CPU_LIBS)

# --- setup and data (idempotent) ---
setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --with-torch

data: setup
	$(PYTHON) dev/data/prepro_austen.py
	$(PYTHON) dev/data/split_tune.py

# --- PyTorch reference outputs (rebuilt when the reference or the data changes) ---
$(REF)/gpt2_d2_debug_state.bin: train_gpt2.py $(VAL_SHARD)
	$(PYTHON) train_gpt2.py --model d2 --steps 10 $(REF_ARGS) --val $(VAL_SHARD) --out $(REF)

$(REF)/gpt2_d12_debug_state.bin: train_gpt2.py $(VAL_SHARD)
	$(PYTHON) train_gpt2.py --model d12 --steps 3 $(REF_ARGS) --val $(VAL_SHARD) --out $(REF)

# a small d2 debug state (B=2, T=32, 2 steps) for the sanitizer build of test_gpt2cu
$(REF)/small/gpt2_d2_debug_state.bin: train_gpt2.py $(VAL_SHARD)
	$(PYTHON) train_gpt2.py --model d2 --steps 2 --batch 2 --seq 32 --lr 1e-3 --weight-decay 0.1 --seed 42 \
	  --val $(VAL_SHARD) --out $(REF)/small

# IVON / IVON-PoCo reference runs from the d2 initial weights: several micro-batches per step, anchor refreshes
# inside the run, PoCo with every switch flipped in the _alt run
OPT_REF_ARGS := --model d2 --batch 4 --seq 64 --lr 300 --warmup 2 --ess 1e8 --noise-seed 1234 \
                --init $(REF)/gpt2_d2.bin --val $(VAL_SHARD) --out $(REF)
OPT_REF_DEPS := train_gpt2.py ivon_torch.py ivon_noise.py $(REF)/gpt2_d2_debug_state.bin $(VAL_SHARD)
POCO_REF_ARGS := --micro-batches 2 --gamma 0.5 --poco-start 2 --poco-period 2 --poco-mega 2

$(REF)/gpt2_d2_ivon_state.bin: $(OPT_REF_DEPS)
	$(PYTHON) train_gpt2.py --opt ivon $(OPT_REF_ARGS) --steps 5 --micro-batches 3

$(REF)/gpt2_d2_poco_state.bin: $(OPT_REF_DEPS)
	$(PYTHON) train_gpt2.py --opt poco $(OPT_REF_ARGS) --steps 6 $(POCO_REF_ARGS)

$(REF)/gpt2_d2_poco_alt_state.bin: $(OPT_REF_DEPS)
	$(PYTHON) train_gpt2.py --opt poco $(OPT_REF_ARGS) --steps 7 $(POCO_REF_ARGS) --gamma-schedule linear \
	  --momentum 0 --clip-each 0 --shared-noise 0 --mega-noise 0 --prox-in-momentum 1 --tag _alt

OPT_REFS := $(REF)/gpt2_d2_ivon_state.bin $(REF)/gpt2_d2_poco_state.bin $(REF)/gpt2_d2_poco_alt_state.bin

ref: setup-test data
	$(MAKE) $(REF)/gpt2_d2_debug_state.bin $(REF)/gpt2_d12_debug_state.bin $(REF)/small/gpt2_d2_debug_state.bin
	$(MAKE) $(OPT_REFS)

# --- tests ---
TEST_BINS := train_gpt2 train_gpt2_noomp test_gpt2 $(BIN)/test_gpt2_noomp $(BIN)/test_llmc $(BIN)/test_gemm \
             $(BIN)/test_optim $(BIN)/train_gpt2_checks $(BIN)/test_noise $(BIN)/test_noise_fc train_gpt2mpi encode_gpt2 sample_gpt2 $(BIN)/test_sample \
             eval_gpt2 export_gpt2 \
             $(CUDA_CPU_TARGETS) $(LAB_CPU_TARGETS)

# TEST_FULL=1 (`make test-full`): every variant of the CPU-backend suites (thread orders, switch sets, -ge x -rc,
# rendezvous, dist cases) and two more test_gpt2cu --opt runs; `make test` (CI) runs a subset of each (doc/testing.md)
TEST_FULL ?= 0
export TEST_FULL
TEST_FULL_SUITES := $(if $(filter 1,$(TEST_FULL)),\
  "$(CUDA_CPU)/test_gpt2fp32cu --opt $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_ivon_state.bin" \
  "CUDA_CPU_SCHEDULE=shuffle:1 $(CUDA_CPU)/test_gpt2cu --opt $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_ivon_state.bin")

# the bf16 PyTorch comparison under a shuffled schedule and both perturbation controls of the CUDA tests: on the
# B=2, T=32, 2-step debug state in `make test` (both perturbations caught there too), on the 10-step d2 state in full
CUDA_CHECK_REF := $(if $(filter 1,$(TEST_FULL)),$(REF)/gpt2_d2,$(REF)/small/gpt2_d2)

.PHONY: test-full
test-full:
	$(MAKE) test TEST_FULL=1

test: ref
	$(MAKE) -j2 $(TEST_BINS)
	bash dev/test/run_all.sh \
	  "$(BIN)/test_llmc" \
	  "$(BIN)/test_gemm" \
	  "$(BIN)/test_noise" \
	  "$(PYTHON) dev/test/test_noise.py $(BIN)/test_noise $(BIN)/test_noise_fc" \
	  "$(BIN)/test_optim" \
	  "$(PYTHON) ivon_torch.py" \
	  "$(PYTHON) dev/test/test_tokenizer.py --encoder ./encode_gpt2" \
	  "./test_gpt2 $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_debug_state.bin" \
	  "bash dev/test/expect_fail.sh ./test_gpt2 --perturb $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_debug_state.bin" \
	  "OMP_NUM_THREADS=1 $(BIN)/test_gpt2_noomp $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_debug_state.bin" \
	  "./test_gpt2 $(REF)/gpt2_d12.bin $(REF)/gpt2_d12_debug_state.bin" \
	  "./test_gpt2 --opt $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_ivon_state.bin" \
	  "./test_gpt2 --opt $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_poco_state.bin" \
	  "./test_gpt2 --opt $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_poco_alt_state.bin" \
	  "bash dev/test/expect_fail.sh ./test_gpt2 --perturb --opt $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_poco_state.bin" \
	  "bash dev/test/test_train.sh" \
	  "$(BIN)/test_sample $(REF)/gpt2_d2.bin" \
	  "bash dev/test/expect_fail.sh $(BIN)/test_sample --perturb $(REF)/gpt2_d2.bin" \
	  "bash dev/test/test_sample.sh" \
	  "bash dev/test/test_eval.sh" \
	  "bash dev/test/test_bad_inputs.sh" \
	  "bash dev/test/test_crash_resume.sh" \
	  "bash dev/test/test_dist.sh" \
	  "bash dev/test/test_plot_tools.sh" \
	  "$(CUDA_CPU)/test_exec" \
	  "$(CUDA_CPU)/test_mma" \
	  "$(CUDA_CPU)/test_attention" \
	  "$(CUDA_CPU)/test_attention_fp32" \
	  "$(CUDA_CPU)/test_cublas" \
	  "$(CUDA_CPU)/test_nccl" \
	  "$(CUDA_CPU)/test_gpt2fp32cu $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_debug_state.bin" \
	  "CUDA_CPU_SCHEDULE=shuffle:1 $(CUDA_CPU)/test_gpt2cu $(CUDA_CHECK_REF).bin $(CUDA_CHECK_REF)_debug_state.bin" \
	  "bash dev/test/expect_fail.sh $(CUDA_CPU)/test_gpt2fp32cu --perturb=1e-4 $(CUDA_CHECK_REF).bin $(CUDA_CHECK_REF)_debug_state.bin" \
	  "bash dev/test/expect_fail.sh $(CUDA_CPU)/test_gpt2cu --perturb=0.1 $(CUDA_CHECK_REF).bin $(CUDA_CHECK_REF)_debug_state.bin" \
	  "$(CUDA_CPU)/test_gpt2fp32cu --accum 32 --accum-out $(CUDA_CPU)/accum32_fp32.bin $(REF)/small/gpt2_d2.bin $(REF)/small/gpt2_d2_debug_state.bin" \
	  "$(CUDA_CPU)/test_gpt2cu --accum 32 --accum-ref $(CUDA_CPU)/accum32_fp32.bin $(REF)/small/gpt2_d2.bin $(REF)/small/gpt2_d2_debug_state.bin" \
	  "$(CUDA_CPU)/test_gpt2fp32cu --opt $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_poco_state.bin" \
	  "$(CUDA_CPU)/test_gpt2fp32cu --opt $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_poco_alt_state.bin" \
	  $(TEST_FULL_SUITES) \
	  "CUDA_CPU_SCHEDULE=shuffle:1 $(CUDA_CPU)/test_gpt2cu --opt $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_poco_state.bin" \
	  "bash dev/test/expect_fail.sh $(CUDA_CPU)/test_gpt2fp32cu --perturb=1e-2 --opt $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_poco_state.bin" \
	  "bash dev/test/test_cuda_cpu.sh" \
	  "bash dev/test/test_cuda_lab.sh" \
	  "bash dev/gpu/check.sh --cpu-backend" \
	  "bash dev/test/test_dist_cuda_cpu.sh" \
	  "TRAIN_BIN=$(CUDA_CPU)/train_gpt2cu TEST_BIN=$(CUDA_CPU)/test_gpt2cu bash dev/test/test_bad_inputs.sh"

# --- sanitizers: the C suites of `make test` with AddressSanitizer + UndefinedBehaviorSanitizer builds in
# build/asan/ (gcc, OpenMP on). ASan/LSan reports go to build/asan/logs/ (tests that capture a program's
# output would hide them); UBSan reports (gcc prints them to stderr) end the program with exit code 86, which
# no test takes for a pass. Any report fails the target, as does a suite failure. Not part of `make test`.
ASAN := build/asan
SANFLAGS := -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
ASAN_BINS := $(ASAN)/train_gpt2 $(ASAN)/train_gpt2_checks $(ASAN)/test_gpt2 $(ASAN)/test_gpt2_noomp \
             $(ASAN)/test_llmc $(ASAN)/test_gemm $(ASAN)/test_optim $(ASAN)/test_noise $(ASAN)/test_noise_fc \
             $(ASAN)/test_exec_cu $(ASAN)/test_gpt2cu $(ASAN)/sample_gpt2 $(ASAN)/test_sample
# exit code 86 on a report, so that a sanitizer error never passes for a clean `error:` exit 1
# (test_crash_resume.sh is not in the list: its SIGKILL timings assume the plain build's speed; ASan covers the same
# save/resume code through test_train.sh)
ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:exitcode=86:log_path=$(CURDIR)/$(ASAN)/logs/asan \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=86:log_path=$(CURDIR)/$(ASAN)/logs/ubsan

.PHONY: test-asan asan-bins
asan-bins: $(ASAN_BINS)

$(ASAN)/train_gpt2: train_gpt2.c $(HEADERS) | $(ASAN)
	$(CC) $(CFLAGS) $(SANFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS)
$(ASAN)/train_gpt2_checks: train_gpt2.c $(HEADERS) | $(ASAN)
	$(CC) $(CFLAGS) $(SANFLAGS) $(OMPFLAGS) -DIVON_CHECKS -o $@ $< $(LDLIBS)
$(ASAN)/test_gpt2: test_gpt2.c train_gpt2.c $(HEADERS) | $(ASAN)
	$(CC) $(CFLAGS) $(SANFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS)
$(ASAN)/test_gpt2_noomp: test_gpt2.c train_gpt2.c $(HEADERS) | $(ASAN)
	$(CC) $(CFLAGS) $(SANFLAGS) -Wno-unknown-pragmas -o $@ $< $(LDLIBS)
$(ASAN)/test_llmc: dev/test/test_llmc.c $(HEADERS) | $(ASAN)
	$(CC) $(CFLAGS) $(SANFLAGS) -o $@ $< $(LDLIBS)
$(ASAN)/test_gemm: dev/test/test_gemm.c train_gpt2.c $(HEADERS) | $(ASAN)
	$(CC) $(CFLAGS) $(SANFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS)
$(ASAN)/test_optim: dev/test/test_optim.c train_gpt2.c $(HEADERS) | $(ASAN)
	$(CC) $(CFLAGS) $(SANFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS)
$(ASAN)/sample_gpt2: sample_gpt2.c train_gpt2.c $(HEADERS) | $(ASAN)
	$(CC) $(CFLAGS) $(SANFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS) -lpcre2-8
$(ASAN)/test_sample: dev/test/test_sample.c sample_gpt2.c train_gpt2.c $(HEADERS) | $(ASAN)
	$(CC) $(CFLAGS) $(SANFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS) -lpcre2-8
$(ASAN)/test_noise: dev/test/test_noise.c $(HEADERS) | $(ASAN)
	$(CC) $(CFLAGS) $(SANFLAGS) $(OMPFLAGS) -o $@ $< $(LDLIBS)
$(ASAN)/test_noise_fc: dev/test/test_noise.c $(HEADERS) | $(ASAN)
	$(CC) $(CFLAGS) $(SANFLAGS) -ffp-contract=fast $(OMPFLAGS) -o $@ $< $(LDLIBS)
# the CPU backend's builds of the CUDA programs (fiber switches annotated for ASan)
$(ASAN)/test_exec_cu: $(CUDA_CPU)/src/dev/cuda_cpu/test_exec.cu $(CUDA_CPU_INC) | $(ASAN)
	$(CUDA_CPU_CXX) $(CUDA_CPU_CXXFLAGS) $(SANFLAGS) -x c++ $< -o $@ $(CUDA_CPU_LIBS)
$(ASAN)/test_gpt2cu: $(CUDA_CPU)/src/test_gpt2.cu $(CUDA_CPU)/src/train_gpt2.cu $(CUDA_CPU_DEPS) | $(ASAN)
	$(CUDA_CPU_CXX) $(CUDA_CPU_CXXFLAGS) $(SANFLAGS) -x c++ $< -o $@ $(CUDA_CPU_LIBS)
$(ASAN):
	mkdir -p $@

# the suites of `make test` that run C code on d2 (the pure-Python suites and d12 are left out). The
# poco_alt and perturbed --opt runs (about 3 minutes each under ASan) are left out: they run the poco run's code with
# other switches and values; `make test` runs them in the plain build.
test-asan: ref
	$(MAKE) -j2 $(ASAN_BINS)
	rm -rf $(ASAN)/logs && mkdir -p $(ASAN)/logs
	@{ $(ASAN_ENV) bash dev/test/run_all.sh \
	  "$(ASAN)/test_llmc" \
	  "$(ASAN)/test_gemm" \
	  "$(ASAN)/test_noise" \
	  "$(PYTHON) dev/test/test_noise.py $(ASAN)/test_noise $(ASAN)/test_noise_fc" \
	  "$(ASAN)/test_optim" \
	  "$(ASAN)/test_gpt2 $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_debug_state.bin" \
	  "bash dev/test/expect_fail.sh $(ASAN)/test_gpt2 --perturb $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_debug_state.bin" \
	  "OMP_NUM_THREADS=1 $(ASAN)/test_gpt2_noomp $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_debug_state.bin" \
	  "$(ASAN)/test_gpt2 --opt $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_ivon_state.bin" \
	  "$(ASAN)/test_gpt2 --opt $(REF)/gpt2_d2.bin $(REF)/gpt2_d2_poco_state.bin" \
	  "TEST_TRAIN_SHORT=1 TRAIN_BIN=$(ASAN)/train_gpt2 CHECKS=$(ASAN)/train_gpt2_checks bash dev/test/test_train.sh" \
	  "$(ASAN)/test_sample $(REF)/gpt2_d2.bin" \
	  "TRAIN_BIN=$(ASAN)/train_gpt2 SAMPLE_BIN=$(ASAN)/sample_gpt2 TEST_SAMPLE_BIN=$(ASAN)/test_sample bash dev/test/test_sample.sh" \
	  "TRAIN_BIN=$(ASAN)/train_gpt2 TEST_BIN=$(ASAN)/test_gpt2 SAMPLE_BIN=$(ASAN)/sample_gpt2 SAMPLE_TRAIN_BIN=$(ASAN)/train_gpt2 bash dev/test/test_bad_inputs.sh" \
	  "$(ASAN)/test_exec_cu" \
	  "$(ASAN)/test_gpt2cu $(REF)/small/gpt2_d2.bin $(REF)/small/gpt2_d2_debug_state.bin" \
	  || echo "test-asan: suites failed"; } 2>&1 | tee $(ASAN)/test-asan.log
	@rc=0; if grep -q "^test-asan: suites failed" $(ASAN)/test-asan.log; then rc=1; fi; \
	if grep -qE "runtime error:|ERROR: [A-Za-z]+Sanitizer" $(ASAN)/test-asan.log; then \
	  echo "test-asan: sanitizer report in the output above"; rc=1; fi; \
	if [ -n "$$(ls -A $(ASAN)/logs)" ]; then \
	  echo "test-asan: sanitizer reports in $(ASAN)/logs:"; head -n 60 $(ASAN)/logs/*; rc=1; fi; \
	if [ $$rc -eq 0 ]; then echo "test-asan: all suites passed, no sanitizer reports"; fi; exit $$rc

# --- fuzzing: libFuzzer harnesses of the file and flag parsers (dev/fuzz), clang-14 + ASan/UBSan, in build/fuzz/.
# Parser errors longjmp back to the harness (-DLLMC_FATAL_HOOK); crashes, sanitizer reports and leaks fail.
# `make fuzz-smoke`: regressions + FUZZ_SMOKE_SECONDS per harness; `make fuzz FUZZ_SECONDS=3600`: a longer run.
FUZZ_CC ?= clang-14
FUZZ := build/fuzz
FUZZ_NAMES := shard model state tokenizer cli
FUZZ_BINS := $(addprefix $(FUZZ)/fuzz_,$(FUZZ_NAMES))
FUZZ_CFLAGS := -g -O1 -march=native -std=gnu11 -fno-math-errno -ffp-contract=off -Wall -Wextra -Wno-unknown-pragmas \
               -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -DLLMC_FATAL_HOOK
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_SECONDS ?= 600

.PHONY: setup-fuzz fuzz-build fuzz-seeds fuzz-regress fuzz-smoke fuzz
setup-fuzz:
	bash scripts/setup.sh --with-fuzz

fuzz-build: setup-fuzz
	$(MAKE) -j2 $(FUZZ_BINS)

$(FUZZ)/fuzz_%: dev/fuzz/fuzz_%.c dev/fuzz/fuzz_common.h $(HEADERS) | $(FUZZ)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< -lm
$(FUZZ)/fuzz_model: train_gpt2.c

$(FUZZ):
	mkdir -p $@

# seeds cut from the Austen val shard, ref/gpt2_d2.bin (when `make ref` ran) and gpt2_tokenizer.bin
fuzz-seeds: data
	rm -rf $(FUZZ)/seeds
	$(PYTHON) dev/fuzz/make_seeds.py $(FUZZ)/seeds

# replays every saved crash input under dev/fuzz/regressions/<name>/
fuzz-regress: fuzz-build
	bash dev/fuzz/run_fuzz.sh 0

fuzz-smoke: fuzz-build fuzz-seeds
	bash dev/fuzz/run_fuzz.sh $(FUZZ_SMOKE_SECONDS)

fuzz: fuzz-build fuzz-seeds
	bash dev/fuzz/run_fuzz.sh $(FUZZ_SECONDS)

# --- quickstart: d4 on Austen with IVON (the short-run recipe of doc/runs.md), a few minutes on 2 cores; it logs
# the val loss at the mean and of the BMA predictive, their ECE, and a text sample every 100 steps.
# `make compare`: AdamW, IVON and IVON-PoCoMo on the same settings, side by side, and their table.
QUICKSTART_ARGS ?= -e d4 -b 8 -t 128 -x 300 -opt ivon -l 300 -ess 1e8 -b2 0.999 -u 20 -k cosine -q 0.1 -v 50 -m 20 \
                   -s 100 -g 64 -o log_quickstart
quickstart: data train_gpt2
	./train_gpt2 $(QUICKSTART_ARGS)

.PHONY: compare data-limited
compare: data train_gpt2
	bash scripts/quickstart_compare.sh

# the data-limited comparison (doc/runs.md): 400 steps over 64K train tokens, 3 optimizers x 3 seeds (about 50 min)
data-limited: setup-test data train_gpt2
	PYTHON=$(PYTHON) bash scripts/data_limited.sh

bench: $(BIN)/bench_cpu
	$(BIN)/bench_cpu

clean:
	rm -rf train_gpt2 train_gpt2_noomp test_gpt2 train_gpt2cu test_gpt2cu train_gpt2mpi encode_gpt2 sample_gpt2 $(BIN) build

# --- runs, sweeps, plots (issue 9)
# `make paper-table`: lr sweep (seed 1337) and seeds 1337-1339 at each optimizer's best lr on the small CPU
# configuration (scripts/run_cpu_small.sh), then log_runs/paper_table/table.md and PNG plots; finished runs are
# reused. `make plots`: the same table and plots from the runs on disk, without training.
# Knobs (environment): STEPS, LRS_ADAMW, LRS_IVON, LRS_POCO, SEEDS, ROOT, OUT (see scripts/paper_table.sh).
.PHONY: paper-table plots
paper-table: setup-test data train_gpt2
	PYTHON=$(PYTHON) bash scripts/paper_table.sh

plots: setup-test
	PYTHON=$(PYTHON) bash scripts/paper_table.sh --no-train
