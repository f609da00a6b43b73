// Checkpoints in an output dir (llm.c layout): model_%08d.bin (model file, llmc/model.h, fp32 v3),
// state_%08d.bin (optimizer + loader + RNG state), then the marker DONE_%08d once both are complete.
// Every file is written atomically: path.tmp, fflush + fsync, rename, fsync of the directory.
//
// State file: int32[256] header, then nbuf fp32 buffers of num_parameters each (AdamW: m, v).
//   [0] magic 20241123   [1] version 1        [2] step            [3] optimizer id
//   [4] num_parameters low 32 bits            [5] num_parameters high 32 bits
//   [6] number of fp32 buffers
//   [7, 8] loader epoch (low, high)   [9, 10] loader shard (low, high)   [11, 12] loader window (low, high)
//   [13, 14] seed (low, high)
//   [64 .. 64+CHECKPOINT_EXTRA_SLOTS) optimizer-specific scalars (float bits via memcpy); all other slots 0
#ifndef LLMC_CHECKPOINT_H
#define LLMC_CHECKPOINT_H

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/types.h>
#include <sys/stat.h>
#include "utils.h"
#include "model.h"

#define CHECKPOINT_STATE_MAGIC 20241123
#define CHECKPOINT_STATE_VERSION 1
#define CHECKPOINT_HEADER_INTS 256
#define CHECKPOINT_EXTRA_BASE 64
#define CHECKPOINT_EXTRA_SLOTS 64
#define CHECKPOINT_PATH_MAX 4096

typedef struct {
    int step;                 // optimizer steps done
    int optimizer;            // optimizer id (defined by the trainer)
    uint64_t num_parameters;  // elements per buffer
    int num_buffers;
    uint64_t loader_epoch, loader_shard, loader_window;  // DataLoaderState of the train loader
    uint64_t seed;
    int32_t extra[CHECKPOINT_EXTRA_SLOTS];  // optimizer-specific scalars
} StateHeader;

// ---------------------------------------------------------------------------------------------
// paths

static inline void checkpoint_path(char* buf, size_t n, const char* dir, const char* prefix, int step,
                                   const char* suffix) {
    int k = snprintf(buf, n, "%s/%s%08d%s", dir, prefix, step, suffix);
    if (k < 0 || (size_t)k >= n) fatalf("checkpoint path in '%s' is too long", dir);
}
static inline void checkpoint_model_path(char* buf, size_t n, const char* dir, int step) {
    checkpoint_path(buf, n, dir, "model_", step, ".bin");
}
static inline void checkpoint_state_path(char* buf, size_t n, const char* dir, int step) {
    checkpoint_path(buf, n, dir, "state_", step, ".bin");
}
static inline void checkpoint_done_path(char* buf, size_t n, const char* dir, int step) {
    checkpoint_path(buf, n, dir, "DONE_", step, "");
}

// ---------------------------------------------------------------------------------------------
// atomic write: checkpoint_file_open -> fwriteCheck(..., f.fp, f.path) -> checkpoint_file_commit

typedef struct {
    FILE* fp;
    char path[CHECKPOINT_PATH_MAX];
    char tmp[CHECKPOINT_PATH_MAX + 8];
} CheckpointFile;

static inline void checkpoint_file_open(CheckpointFile* f, const char* path) {
    size_t n = strlen(path);
    if (n >= CHECKPOINT_PATH_MAX) fatalf("checkpoint path '%s' is too long", path);
    memcpy(f->path, path, n + 1);
    snprintf(f->tmp, sizeof(f->tmp), "%s.tmp", path);
    f->fp = fopen(f->tmp, "wb");
    if (f->fp == NULL) fatalf("cannot write '%s': %s", f->tmp, strerror(errno));
}

// fsync of the directory holding `path`, so that a rename in it is durable
static inline void checkpoint_fsync_dir_of(const char* path) {
    char dir[CHECKPOINT_PATH_MAX];
    const char* slash = strrchr(path, '/');
    if (slash == NULL) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof(dir)) n = sizeof(dir) - 1;
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY);
    if (fd < 0) fatalf("cannot open directory '%s' to sync it: %s", dir, strerror(errno));
    if (fsync(fd) != 0 && errno != EINVAL) fatalf("fsync failed on directory '%s': %s", dir, strerror(errno));
    close(fd);
}

// flush + fsync + close the tmp file, rename it over the final path, fsync the directory
static inline void checkpoint_file_commit(CheckpointFile* f) {
    if (fflush(f->fp) != 0) fatalf("write failed on '%s': %s", f->tmp, strerror(errno));
    if (fsync(fileno(f->fp)) != 0) fatalf("fsync failed on '%s': %s", f->tmp, strerror(errno));
    if (fclose(f->fp) != 0) fatalf("close failed on '%s': %s", f->tmp, strerror(errno));
    f->fp = NULL;
    if (rename(f->tmp, f->path) != 0) fatalf("cannot rename '%s' to '%s': %s", f->tmp, f->path, strerror(errno));
    checkpoint_fsync_dir_of(f->path);
}

// ---------------------------------------------------------------------------------------------
// state file

static inline void checkpoint_split64(int32_t* slots, uint64_t v) {
    uint32_t lo = (uint32_t)v, hi = (uint32_t)(v >> 32);
    memcpy(&slots[0], &lo, 4);
    memcpy(&slots[1], &hi, 4);
}

// IVON/PoCo: the posterior's scalars as double bits in two slots each; 0 (older files) = not recorded
#define CHECKPOINT_SLOT_ESS 10
#define CHECKPOINT_SLOT_PRIOR_2D 12
#define CHECKPOINT_SLOT_PRIOR_1D 14
static inline void checkpoint_split_double(int32_t* slots, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    checkpoint_split64(slots, bits);
}

static inline uint64_t checkpoint_join64(const int32_t* slots) {
    uint32_t lo, hi;
    memcpy(&lo, &slots[0], 4);
    memcpy(&hi, &slots[1], 4);
    return ((uint64_t)hi << 32) | lo;
}

static inline double checkpoint_join_double(const int32_t* slots) {
    uint64_t bits = checkpoint_join64(slots);
    double v;
    memcpy(&v, &bits, 8);
    return v;
}

static inline void checkpoint_header_serialize(const StateHeader* h, int32_t out[CHECKPOINT_HEADER_INTS]) {
    memset(out, 0, CHECKPOINT_HEADER_INTS * sizeof(int32_t));
    out[0] = CHECKPOINT_STATE_MAGIC;
    out[1] = CHECKPOINT_STATE_VERSION;
    out[2] = h->step;
    out[3] = h->optimizer;
    checkpoint_split64(&out[4], h->num_parameters);
    out[6] = h->num_buffers;
    checkpoint_split64(&out[7], h->loader_epoch);
    checkpoint_split64(&out[9], h->loader_shard);
    checkpoint_split64(&out[11], h->loader_window);
    checkpoint_split64(&out[13], h->seed);
    memcpy(&out[CHECKPOINT_EXTRA_BASE], h->extra, sizeof(h->extra));
}

static inline void checkpoint_header_deserialize(const int32_t in[CHECKPOINT_HEADER_INTS], StateHeader* h) {
    h->step = in[2];
    h->optimizer = in[3];
    h->num_parameters = checkpoint_join64(&in[4]);
    h->num_buffers = in[6];
    h->loader_epoch = checkpoint_join64(&in[7]);
    h->loader_shard = checkpoint_join64(&in[9]);
    h->loader_window = checkpoint_join64(&in[11]);
    h->seed = checkpoint_join64(&in[13]);
    memcpy(h->extra, &in[CHECKPOINT_EXTRA_BASE], sizeof(h->extra));
}

// Writes header + nbuf buffers of n_each floats atomically. h->num_parameters / num_buffers are
// taken from n_each / nbuf.
static inline void checkpoint_write_state(const char* path, const StateHeader* h, const float* const* buffers,
                                          int nbuf, size_t n_each) {
    StateHeader hh = *h;
    hh.num_parameters = n_each;
    hh.num_buffers = nbuf;
    int32_t header[CHECKPOINT_HEADER_INTS];
    checkpoint_header_serialize(&hh, header);
    CheckpointFile f;
    checkpoint_file_open(&f, path);
    fwriteCheck(header, sizeof(int32_t), CHECKPOINT_HEADER_INTS, f.fp, f.tmp);
    for (int b = 0; b < nbuf; b++) fwriteCheck(buffers[b], sizeof(float), n_each, f.fp, f.tmp);
    checkpoint_file_commit(&f);
}

// The header of a state file (magic and version checked), e.g. to learn its optimizer and buffer count
static inline void checkpoint_peek_state(const char* path, StateHeader* h) {
    FILE* fp = fopen(path, "rb");
    if (fp == NULL) fatalf("cannot open state file '%s': %s", path, strerror(errno));
    int32_t header[CHECKPOINT_HEADER_INTS];
    if (fread(header, sizeof(int32_t), CHECKPOINT_HEADER_INTS, fp) != CHECKPOINT_HEADER_INTS)
        fatalf("state file '%s' is truncated: shorter than its %d-int header", path, CHECKPOINT_HEADER_INTS);
    fclose(fp);
    if (header[0] != CHECKPOINT_STATE_MAGIC)
        fatalf("state file '%s' has bad magic %d (want %d)", path, header[0], CHECKPOINT_STATE_MAGIC);
    if (header[1] != CHECKPOINT_STATE_VERSION)
        fatalf("state file '%s' has unsupported version %d (want %d)", path, header[1], CHECKPOINT_STATE_VERSION);
    checkpoint_header_deserialize(header, h);
}

// Reads a state file into h and nbuf buffers of n_each floats (a NULL buffer is skipped). Exits with one line
// naming the file on bad magic / version, a buffer count or size that differs from the caller's, or a wrong size.
static inline void checkpoint_read_state(const char* path, StateHeader* h, float* const* buffers, int nbuf,
                                         size_t n_each) {
    FILE* fp = fopen(path, "rb");
    if (fp == NULL) fatalf("cannot open state file '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0) fatalf("cannot stat state file '%s': %s", path, strerror(errno));
    uint64_t fsize = (uint64_t)st.st_size;
    const uint64_t hbytes = CHECKPOINT_HEADER_INTS * sizeof(int32_t);
    if (fsize < hbytes)
        fatalf("state file '%s' is truncated: %llu bytes, the header alone needs %llu", path,
               (unsigned long long)fsize, (unsigned long long)hbytes);
    int32_t header[CHECKPOINT_HEADER_INTS];
    freadCheck(header, sizeof(int32_t), CHECKPOINT_HEADER_INTS, fp, path);
    if (header[0] != CHECKPOINT_STATE_MAGIC)
        fatalf("state file '%s' has bad magic %d (want %d)", path, header[0], CHECKPOINT_STATE_MAGIC);
    if (header[1] != CHECKPOINT_STATE_VERSION)
        fatalf("state file '%s' has unsupported version %d (want %d)", path, header[1], CHECKPOINT_STATE_VERSION);
    checkpoint_header_deserialize(header, h);
    if (h->num_parameters != (uint64_t)n_each)
        fatalf("state file '%s' holds %llu parameters per buffer, the model has %zu", path,
               (unsigned long long)h->num_parameters, n_each);
    if (h->num_buffers != nbuf)
        fatalf("state file '%s' holds %d buffers, the optimizer needs %d", path, h->num_buffers, nbuf);
    uint64_t want = hbytes + (uint64_t)nbuf * (uint64_t)n_each * sizeof(float);
    if (fsize < want)
        fatalf("state file '%s' is truncated: %llu bytes, its header implies %llu", path, (unsigned long long)fsize,
               (unsigned long long)want);
    if (fsize != want)
        fatalf("state file '%s' has %llu bytes but its header implies %llu", path, (unsigned long long)fsize,
               (unsigned long long)want);
    for (int b = 0; b < nbuf; b++) {
        if (buffers[b] != NULL) freadCheck(buffers[b], sizeof(float), n_each, fp, path);
        else fseekCheck(fp, (long)(n_each * sizeof(float)), SEEK_CUR, path);
    }
    fclose(fp);
}

// ---------------------------------------------------------------------------------------------
// model file

// writes a model file (llmc/model.h format, version 3 fp32) atomically; params = all n weights in table order
static inline void checkpoint_write_model(const char* path, GPT2Config c, const float* params, size_t n) {
    if (n != gpt2_num_parameters(c))
        fatalf("checkpoint_write_model '%s': %zu weights, the config has %zu", path, n, gpt2_num_parameters(c));
    CheckpointFile f;
    checkpoint_file_open(&f, path);
    model_write_header(f.fp, f.tmp, c, MODEL_VERSION_FP32);
    fwriteCheck(params, sizeof(float), n, f.fp, f.tmp);
    checkpoint_file_commit(&f);
}

// ---------------------------------------------------------------------------------------------
// DONE markers

// creates the empty marker DONE_%08d (atomically), written after the model and state files
static inline void checkpoint_write_done(const char* dir, int step) {
    char path[CHECKPOINT_PATH_MAX];
    checkpoint_done_path(path, sizeof(path), dir, step);
    CheckpointFile f;
    checkpoint_file_open(&f, path);
    checkpoint_file_commit(&f);
}

// step of a file name "<prefix>%08d<suffix>", -1 if the name has another form
static inline int checkpoint_parse_name(const char* name, const char* prefix, const char* suffix) {
    size_t np = strlen(prefix), ns = strlen(suffix), n = strlen(name);
    if (n != np + 8 + ns || strncmp(name, prefix, np) != 0 || strcmp(name + np + 8, suffix) != 0) return -1;
    int v = 0;
    for (int i = 0; i < 8; i++) {
        char ch = name[np + i];
        if (ch < '0' || ch > '9') return -1;
        v = v * 10 + (ch - '0');
    }
    return v;
}

// highest step with a DONE_%08d marker in dir, -1 if none (or no such dir); files without a marker and temporaries
// are ignored
static inline int checkpoint_find_latest(const char* dir) {
    DIR* d = opendir(dir);
    if (d == NULL) return -1;
    int best = -1;
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
        int v = checkpoint_parse_name(e->d_name, "DONE_", "");
        if (v > best) best = v;
    }
    closedir(d);
    return best;
}

// unlink that tolerates a missing file
static inline void checkpoint_unlink(const char* path) {
    if (unlink(path) != 0 && errno != ENOENT) fatalf("cannot delete '%s': %s", path, strerror(errno));
}

// Deletes checkpoint `step`: the DONE marker first (a crash in between leaves an incomplete checkpoint, which resume
// ignores), then the model and state files and their temporaries.
static inline void checkpoint_remove(const char* dir, int step) {
    char path[CHECKPOINT_PATH_MAX + 8];
    const char* names[3][2] = {{"DONE_", ""}, {"model_", ".bin"}, {"state_", ".bin"}};
    for (int i = 0; i < 3; i++) {
        checkpoint_path(path, CHECKPOINT_PATH_MAX, dir, names[i][0], step, names[i][1]);
        checkpoint_unlink(path);
        strcat(path, ".tmp");
        checkpoint_unlink(path);
    }
    checkpoint_fsync_dir_of(path);
}

static inline int checkpoint_cmp_desc(const void* a, const void* b) {
    int x = *(const int*)a, y = *(const int*)b;
    return (x < y) - (x > y);
}

// Rolling checkpoints, called once checkpoint `current` is complete (DONE written): of the complete checkpoints
// before `current`, the newest keep - 1 stay (with `current`, keep in all), the older ones are deleted unless major
// (step % major == 0, major > 0). Incomplete ones before `current` (files without a marker, temporaries) are deleted
// too. Checkpoints after `current` (another run's) are left alone. keep <= 0: nothing is deleted.
// Returns the number of checkpoints deleted.
static inline int checkpoint_prune(const char* dir, int current, int keep, int major) {
    if (keep <= 0) return 0;
    DIR* d = opendir(dir);
    if (d == NULL) fatalf("cannot list output dir '%s': %s", dir, strerror(errno));
    int cap = 64, n = 0, no = 0;
    int* done = (int*)mallocCheck((size_t)cap * sizeof(int));
    int* orphans = (int*)mallocCheck((size_t)cap * sizeof(int));
    struct dirent* e;
    while ((e = readdir(d)) != NULL) {
        const char* name = e->d_name;
        int v = checkpoint_parse_name(name, "DONE_", "");
        int is_done = v >= 0;
        if (v < 0) v = checkpoint_parse_name(name, "model_", ".bin");
        if (v < 0) v = checkpoint_parse_name(name, "state_", ".bin");
        if (v < 0) v = checkpoint_parse_name(name, "model_", ".bin.tmp");
        if (v < 0) v = checkpoint_parse_name(name, "state_", ".bin.tmp");
        if (v < 0) v = checkpoint_parse_name(name, "DONE_", ".tmp");
        if (v < 0 || v >= current) continue;
        int** list = is_done ? &done : &orphans;
        int* cnt = is_done ? &n : &no;
        if (*cnt == cap) {
            cap *= 2;
            int* a = (int*)mallocCheck((size_t)cap * sizeof(int));
            int* b = (int*)mallocCheck((size_t)cap * sizeof(int));
            memcpy(a, done, (size_t)n * sizeof(int));
            memcpy(b, orphans, (size_t)no * sizeof(int));
            free(done);
            free(orphans);
            done = a;
            orphans = b;
            list = is_done ? &done : &orphans;
        }
        (*list)[(*cnt)++] = v;
    }
    closedir(d);
    qsort(done, (size_t)n, sizeof(int), checkpoint_cmp_desc);
    int removed = 0;
    for (int i = keep - 1; i < n; i++) {
        if (major > 0 && done[i] % major == 0) continue;
        checkpoint_remove(dir, done[i]);
        removed++;
    }
    // incomplete: a step with files but no marker
    for (int i = 0; i < no; i++) {
        int complete = 0;
        for (int j = 0; j < n && !complete; j++) complete = done[j] == orphans[i];
        if (!complete) checkpoint_remove(dir, orphans[i]);
    }
    free(done);
    free(orphans);
    return removed;
}

#endif // LLMC_CHECKPOINT_H
